"""Make NeuroBench's own model wrappers and ``ConnectionSparsity`` count EGRU layers.

NeuroBench 2.3 finds what to count through fixed lists of torch layers, so its own
``neurobench.models.TorchModel`` and ``SNNTorchModel`` see no EGRU layer: without this
module they would report the synaptic operations of the other layers only, silently.
:func:`install` (called by :func:`snntorch_egru.registration.register`, i.e. at
``import snntorch_egru``) patches, as soon as NeuroBench is imported (at once if it
already is):

- ``NeuroBenchModel.register_hooks``: after NeuroBench's own hooks, every EGRU module
  (``EGRU``, ``EGRUCell``, and the Norse flavour's ``EGRURecurrent`` /
  ``EGRURecurrentCell``) gets the hooks of :mod:`snntorch_egru.neurobench`, so any
  NeuroBench wrapper counts its events and weight products;
- ``neurobench.metrics.static.ConnectionSparsity``: on a network with EGRU layers it
  returns :class:`snntorch_egru.neurobench.ConnectionSparsity` (EGRU weights counted).

``snntorch.utils.reset``, which NeuroBench's ``SNNTorchModel`` calls before each batch,
already resets EGRU cells once :mod:`snntorch_egru.registration` is active.
:func:`uninstall` restores NeuroBench exactly.

Example::

    >>> import torch, snntorch_egru as se
    >>> from torch.utils.data import DataLoader, TensorDataset
    >>> from neurobench.benchmarks import Benchmark
    >>> from neurobench.models import TorchModel             # NeuroBench's own wrapper
    >>> from neurobench.metrics.workload import SynapticOperations
    >>> class Net(torch.nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.rnn = se.EGRU(4, 16, batch_first=True)
    ...         self.fc = torch.nn.Linear(16, 3)
    ...     def forward(self, x):
    ...         return self.fc(self.rnn(x)[0]).sum(1)
    >>> data = DataLoader(TensorDataset(torch.randn(8, 20, 4), torch.zeros(8)), batch_size=4)
    >>> r = Benchmark(TorchModel(Net()), data, [], [], [[], [SynapticOperations]]).run(quiet=True)
    >>> r["SynapticOperations"]["Dense"] == 20 * (48 * (4 + 16) + 3 * 16)
    True
"""

from __future__ import annotations

import sys
from typing import Any, Callable, Dict

from ._import_hook import PostImportHook

_MODEL = "neurobench.models.neurobench_model"
_SPARSITY = "neurobench.metrics.static.connection_sparsity"
_saved: Dict[str, Any] = {}


def _egru_types() -> tuple:
    from . import norse as _norse
    from .modules import EGRU, EGRUCell

    return (EGRUCell, EGRU, _norse.EGRURecurrentCell, _norse.EGRURecurrent)


def _replace(cls: Any, attr: str, key: str, make: Callable[[Any], Any]) -> None:
    """Set ``cls.<attr>`` to ``make(original)`` once, keeping the original under ``key`` for :func:`uninstall`."""
    if key in _saved:
        return
    original = getattr(cls, attr)
    _saved[key] = (cls, original)
    setattr(cls, attr, make(original))


def _counting_register_hooks(original: Any) -> Any:
    """NeuroBench's ``register_hooks`` followed by the EGRU hooks."""

    def register_hooks(self: Any) -> None:
        original(self)
        if not getattr(self, "_counts_egru", False):  # snntorch_egru.neurobench's wrappers add them themselves
            from .neurobench import add_egru_hooks

            add_egru_hooks(self)

    register_hooks.__doc__ = original.__doc__
    return register_hooks


def _counting_sparsity(original: Any) -> Any:
    """``ConnectionSparsity.__call__`` that counts the EGRU weights of a network holding EGRU layers."""

    def __call__(self: Any, model: Any) -> float:
        types = _egru_types()
        if any(isinstance(m, types) for m in model.__net__().modules()):
            from .neurobench import ConnectionSparsity

            return ConnectionSparsity.__call__(self, model)
        return original(self, model)

    return __call__


def _patch_model(module: Any) -> None:
    _replace(module.NeuroBenchModel, "register_hooks", "register_hooks", _counting_register_hooks)


def _patch_sparsity(module: Any) -> None:
    _replace(module.ConnectionSparsity, "__call__", "connection_sparsity", _counting_sparsity)


_PATCHES: Dict[str, Callable[[Any], None]] = {_MODEL: _patch_model, _SPARSITY: _patch_sparsity}


_hook = PostImportHook(_PATCHES)


def install() -> None:
    """Patch NeuroBench now if it is imported, else as soon as it is (idempotent)."""
    _hook.install()
    for name, patch in _PATCHES.items():
        if name in sys.modules:
            patch(sys.modules[name])


def uninstall() -> None:
    """Restore NeuroBench's original ``register_hooks`` and ``ConnectionSparsity``."""
    _hook.uninstall()
    for key in list(_saved):
        cls, original = _saved.pop(key)
        setattr(cls, "register_hooks" if key == "register_hooks" else "__call__", original)


def is_installed() -> bool:
    """Whether NeuroBench's classes are patched now."""
    return bool(_saved)
