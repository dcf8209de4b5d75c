"""NeuroBench adapter: benchmark EGRU models with NeuroBench's own ``Benchmark`` and metrics.

`NeuroBench <https://neurobench.readthedocs.io>`_ (``neurobench`` 2.3) finds what to
measure through forward hooks on the modules it knows (``nn.ReLU``, snnTorch neurons,
``nn.Linear``, ``nn.Conv*``, ``nn.RNNCellBase``). An EGRU module (:class:`~snntorch_egru.EGRU`,
:class:`~snntorch_egru.EGRUCell`, the Norse flavour's ``EGRURecurrent`` / ``EGRURecurrentCell``)
is none of them, so NeuroBench alone would not see its events or weight products.
``import snntorch_egru`` therefore patches NeuroBench's own wrappers to call
:func:`add_egru_hooks` (:mod:`snntorch_egru._nb_register`); this module also offers:

* :class:`TorchModel` and :class:`SNNTorchModel` wrap a network exactly like NeuroBench's
  wrappers of the same name, and additionally hook every EGRU module inside it:

  - one *activation* hook per EGRU layer, fed with the layer's events ``y`` (and its
    internal state ``c`` as the membrane potential), so NeuroBench's
    ``ActivationSparsity``, ``ActivationSparsityByLayer`` and ``MembraneUpdates``
    count EGRU events;
  - two *connection* hooks per EGRU layer whose layer is an ``nn.Linear`` view of
    ``weight_ih`` (fed with the layer input ``x_t``) and of ``weight_hh`` (fed with the
    previous events ``y_{t-1}``), so NeuroBench's own ``SynapticOperations`` counts the
    input product only for non-zero inputs and the recurrent product only for the
    weight columns of units that fired (``Effective_MACs``; ``Effective_ACs`` when the
    input is binary), and ``Dense`` = ``3H (I + H)`` per layer and step, a GRU layer of
    the same size without its element-wise gate products.

  :class:`SNNTorchModel` also resets every EGRU cell (and every snnTorch neuron, at any
  depth) before each batch with :func:`snntorch_egru.utils.reset`.
* :class:`ConnectionSparsity` is NeuroBench's metric that also counts the EGRU weights
  and biases (thresholds are neuron parameters and are not counted, as for snnTorch
  neurons). ``Footprint`` and ``ParameterCount`` need no adapter: EGRU parameters are
  ordinary ``nn.Parameter`` objects.
* :class:`UnrolledGRU` runs a ``torch.nn.GRU`` as a loop of ``nn.GRUCell`` (same weights,
  same outputs), because NeuroBench 2.3 counts ``GRUCell`` but not ``nn.GRU``: the dense
  baseline a paper prints next to an EGRU.

The numbers agree with :func:`snntorch_egru.metrics.track` on the same run (see the
``NeuroBench`` guide page). Benchmark in eval mode (NeuroBench's wrappers call ``net.eval()``).
Install with ``pip install "snntorch-egru[neurobench]"``; ``import snntorch_egru`` never imports NeuroBench.

Example::

    >>> import torch, snntorch_egru as se
    >>> from torch.utils.data import DataLoader, TensorDataset
    >>> from neurobench.benchmarks import Benchmark
    >>> from neurobench.metrics.workload import ActivationSparsity, SynapticOperations
    >>> from snntorch_egru.neurobench import TorchModel
    >>> class Net(torch.nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.rnn = se.EGRU(4, 16, batch_first=True)
    ...         self.fc = torch.nn.Linear(16, 3)
    ...     def forward(self, x):                         # x: [B, T, I], NeuroBench's layout
    ...         return self.fc(self.rnn(x)[0]).sum(1)
    >>> data = DataLoader(TensorDataset(torch.randn(8, 20, 4), torch.zeros(8)), batch_size=4)
    >>> bench = Benchmark(TorchModel(Net()), data, [], [], [[], [ActivationSparsity, SynapticOperations]])
    >>> r = bench.run(quiet=True)
    >>> 0.0 < r["ActivationSparsity"] < 1.0, r["SynapticOperations"]["Dense"] == 20 * (48 * (4 + 16) + 3 * 16)
    (True, True)
"""

from __future__ import annotations

from typing import Any, Callable, List, Optional, Tuple

import torch
from torch import nn

try:
    from neurobench.blocks.layer import RECURRENT_CELLS, RECURRENT_LAYERS, STATELESS_LAYERS
    from neurobench.hooks.layer import LayerHook as _NBLayerHook  # noqa: F401 - used by ._nb_hooks, checked here
    from neurobench.hooks.neuron import NeuronHook as _NBNeuronHook  # noqa: F401 - (one error message)
    from neurobench.metrics.static import ConnectionSparsity as _NBConnectionSparsity
    from neurobench.models import SNNTorchModel as _NBSNNTorchModel
    from neurobench.models import TorchModel as _NBTorchModel
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        'snntorch_egru.neurobench needs NeuroBench 2.3: pip install "snntorch-egru[neurobench]" '
        f"(neurobench>=2.3,<2.4); importing it failed with: {exc}"
    ) from exc

from . import utils as _utils
from ._nb_hooks import _ONE_LAYER, _EventHook, _Observer, _ProductHook
from .modules import EGRU, EGRUCell
from .norse import EGRURecurrent, EGRURecurrentCell

__all__ = ["TorchModel", "SNNTorchModel", "ConnectionSparsity", "UnrolledGRU", "add_egru_hooks", "egru_modules"]

_EGRU_TYPES = (EGRU, EGRUCell, EGRURecurrent, EGRURecurrentCell)

# ------------------------------------------------------------------------------------------
# model wrappers


def egru_modules(net: nn.Module) -> List[Tuple[str, nn.Module]]:
    """``(name, module)`` of every EGRU module in ``net`` (``EGRU``, ``EGRUCell``, Norse flavour), at any depth.

    Example::

        >>> import torch, snntorch_egru as se
        >>> from snntorch_egru.norse import EGRURecurrent
        >>> from snntorch_egru.neurobench import egru_modules
        >>> [n for n, _ in egru_modules(torch.nn.Sequential(EGRURecurrent(2, 3), torch.nn.Linear(3, 1)))]
        ['0']
    """
    return [(name, m) for name, m in net.named_modules() if isinstance(m, _EGRU_TYPES)]


def add_egru_hooks(model: Any) -> None:
    """Add the EGRU hooks to a NeuroBench model wrapper whose NeuroBench hooks are registered.

    :mod:`snntorch_egru.registration` calls this from NeuroBench's own
    ``NeuroBenchModel.register_hooks``, so ``neurobench.models.TorchModel`` and ``SNNTorchModel``
    count EGRU layers too; this module's wrappers call it themselves.

    Example::

        >>> import torch, snntorch_egru as se
        >>> from neurobench.models import TorchModel as NBTorchModel
        >>> from snntorch_egru.neurobench import add_egru_hooks
        >>> model = NBTorchModel(torch.nn.Sequential(se.EGRUCell(3, 4), torch.nn.Linear(4, 2)))
        >>> model.register_hooks()                  # NeuroBench's hooks, and (registered) the EGRU ones
        >>> len(model.connection_hooks)             # Linear + weight_ih + weight_hh
        3
    """
    if any(isinstance(h, (_EventHook, _ProductHook)) for h in model.activation_hooks + model.connection_hooks):
        return  # already added
    # NeuroBench's generic hook would record an EGRU's (y, c) / (out, state) tuple as the
    # activation (the user may have called add_activation_module(EGRUCell)): replace it.
    for hook in [h for h in model.activation_hooks if isinstance(h.layer, _EGRU_TYPES)]:
        hook.close()
        model.activation_hooks.remove(hook)
    for name, m in egru_modules(model.__net__()):
        events, products = _Observer(m, name).hooks
        model.activation_hooks.extend(events)
        model.connection_hooks.extend(products)


class _EGRUHooksMixin:
    """Adds EGRU hooks to a NeuroBench model wrapper's ``register_hooks``."""

    _counts_egru = True  # NeuroBench's patched register_hooks leaves the EGRU hooks to this class
    __net__: Callable[[], nn.Module]  # provided by the NeuroBench model class it is mixed into

    def egru_modules(self) -> List[Tuple[str, nn.Module]]:
        """``(name, module)`` of every EGRU module (``EGRU``, ``EGRUCell``, Norse flavour) in the network."""
        return egru_modules(self.__net__())

    def register_hooks(self) -> None:
        super().register_hooks()  # type: ignore[misc]
        add_egru_hooks(self)

    def _reset_egru_cells(self) -> None:
        for _, m in self.egru_modules():
            if isinstance(m, EGRUCell):
                m.reset_mem()


class TorchModel(_EGRUHooksMixin, _NBTorchModel):
    """NeuroBench's ``TorchModel`` that also measures the EGRU layers inside the network.

    Use it exactly like ``neurobench.models.TorchModel``: ``net(batch)`` receives the
    whole batch ``[B, T, features]`` and returns the predictions. Every
    :class:`~snntorch_egru.EGRU` and :class:`~snntorch_egru.EGRUCell` in ``net`` (at any
    depth) is hooked as described in :mod:`snntorch_egru.neurobench`; every EGRU cell's
    stored state is zeroed before each batch. The network is put in eval mode.

    Args:
        net: the trained ``torch.nn.Module``.

    Example::

        >>> import torch, snntorch_egru as se
        >>> from snntorch_egru.neurobench import TorchModel
        >>> class Net(torch.nn.Module):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.rnn = se.EGRU(4, 8, num_layers=2, batch_first=True)
        ...     def forward(self, x):
        ...         return self.rnn(x)[0][:, -1]
        >>> model = TorchModel(Net())
        >>> [name for name, _ in model.egru_modules()]
        ['rnn']
        >>> model(torch.randn(3, 10, 4)).shape
        torch.Size([3, 8])
    """

    def __init__(self, net: nn.Module) -> None:
        if not isinstance(net, nn.Module):
            raise TypeError(f"net must be a torch.nn.Module, got {type(net).__name__}")
        super().__init__(net)

    def __call__(self, batch: torch.Tensor) -> Any:
        self._reset_egru_cells()
        return super().__call__(batch)


class SNNTorchModel(_EGRUHooksMixin, _NBSNNTorchModel):
    """NeuroBench's ``SNNTorchModel`` that also measures and resets the EGRU cells in the network.

    As in NeuroBench, ``net(x_t)`` is called once per time step on ``batch[:, t]`` and
    must return ``(spikes, anything)``; the stacked first outputs ``[B, T, ...]`` are the
    predictions (with ``custom_forward=True``, ``net(batch)`` is called once instead).
    Before each batch, :func:`snntorch_egru.utils.reset` zeroes every
    :class:`~snntorch_egru.EGRUCell` and snnTorch neuron at any depth
    (``snntorch.utils.reset``, which NeuroBench uses, sees neither EGRU cells nor nested
    neurons). EGRU layers are hooked as described in :mod:`snntorch_egru.neurobench`.

    Args:
        net: the trained network.
        custom_forward: ``net`` consumes the whole ``[B, T, ...]`` batch itself. Default: False.

    Example::

        >>> import torch, snntorch as snn, snntorch_egru as se
        >>> from snntorch_egru.neurobench import SNNTorchModel
        >>> net = torch.nn.Sequential(se.EGRUCell(4, 8, init_hidden=True), torch.nn.Linear(8, 2),
        ...                           snn.Leaky(beta=0.9, init_hidden=True, output=True))
        >>> model = SNNTorchModel(net)
        >>> x = torch.randn(3, 10, 4)                    # NeuroBench's layout [B, T, features]
        >>> model(x).shape                               # [B, T, outputs]
        torch.Size([3, 10, 2])
        >>> c_after = net[0].c.clone()
        >>> _ = model(x)                                 # the EGRU cell starts from zero again
        >>> torch.equal(net[0].c, c_after)
        True
    """

    def __init__(self, net: nn.Module, custom_forward: bool = False) -> None:
        if not isinstance(net, nn.Module):
            raise TypeError(f"net must be a torch.nn.Module, got {type(net).__name__}")
        if not isinstance(custom_forward, bool):
            raise TypeError(f"custom_forward must be a bool, got {type(custom_forward).__name__}")
        super().__init__(net, custom_forward=custom_forward)

    def __call__(self, data: torch.Tensor) -> torch.Tensor:
        _utils.reset(self.net)
        return super().__call__(data)


# ------------------------------------------------------------------------------------------
# static metric


def _connection_tensors(m: nn.Module) -> List[torch.Tensor]:
    """The tensors NeuroBench's ConnectionSparsity counts for one module (EGRU modules added)."""
    if isinstance(m, _ONE_LAYER):
        names = ["weight_ih", "weight_hh"] + (["bias_ih", "bias_hh"] if m.bias else [])
    elif isinstance(m, EGRU):
        names = [
            f"{n}_l{k}"
            for k in range(m.num_layers)
            for n in ["weight_ih", "weight_hh"] + (["bias_ih", "bias_hh"] if m.bias else [])
        ]
    elif isinstance(m, STATELESS_LAYERS):
        return [m.weight]
    elif isinstance(m, RECURRENT_LAYERS):
        base = ["weight_ih", "weight_hh"] + (["bias_ih", "bias_hh"] if m.bias else [])
        base += ["weight_hr"] if getattr(m, "proj_size", 0) > 0 else []
        sfx = ["", "_reverse"] if m.bidirectional else [""]
        names = [f"{n}_l{k}{s}" for k in range(m.num_layers) for s in sfx for n in base]
    elif isinstance(m, RECURRENT_CELLS):
        names = ["weight_ih", "weight_hh"] + (["bias_ih", "bias_hh"] if m.bias else [])
    else:
        return []
    return [getattr(m, n) for n in names]


class ConnectionSparsity(_NBConnectionSparsity):
    """NeuroBench's connection sparsity, counting EGRU layers too.

    Fraction of zero entries among the connection tensors of the network, rounded to 4
    decimals, by NeuroBench's rule: ``weight`` of ``nn.Linear``/``nn.Conv*``, weights and
    biases of ``nn.RNNCellBase``/``nn.RNNBase`` leaves, and here also the weights and
    biases of every :class:`~snntorch_egru.EGRU` / :class:`~snntorch_egru.EGRUCell` layer
    (like a ``GRUCell``; thresholds are neuron parameters and, as snnTorch thresholds,
    not counted). On a network without EGRU layers it equals NeuroBench's metric. The
    result key is ``"ConnectionSparsity"``, as with NeuroBench's class.

    Example::

        >>> import torch, snntorch_egru as se
        >>> from snntorch_egru.neurobench import ConnectionSparsity, TorchModel
        >>> net = torch.nn.Sequential(se.EGRUCell(4, 8, bias=False), torch.nn.Linear(8, 2))
        >>> with torch.no_grad():
        ...     net[0].weight_hh[:, :4] = 0.0              # prune half of the recurrent weights
        >>> ConnectionSparsity()(TorchModel(net)) == round(96 / (96 + 192 + 16), 4)
        True
    """

    def __call__(self, model: Any) -> float:
        net = model.__net__()
        zeros = total = 0

        def visit(module: nn.Module) -> None:
            nonlocal zeros, total
            children = list(module.children())
            if isinstance(module, _EGRU_TYPES) or not children:
                for t in _connection_tensors(module):
                    zeros += int((t == 0).sum())
                    total += t.numel()
                return
            for child in children:
                visit(child)

        visit(net)
        if total == 0:
            raise ValueError(
                "ConnectionSparsity: the network has no connection layer (nn.Linear, nn.Conv*, "
                f"torch RNN layers or cells, EGRU, EGRUCell); got {type(net).__name__}"
            )
        return round(zeros / total, 4)


# ------------------------------------------------------------------------------------------
# dense baseline


class UnrolledGRU(nn.Module):
    """A ``torch.nn.GRU`` run as a loop of ``nn.GRUCell`` steps, so NeuroBench can count it.

    NeuroBench 2.3 counts the synaptic operations of ``nn.GRUCell`` (the six weight
    products and the element-wise products of the gates) but fails on ``nn.GRU``.
    This module holds one ``GRUCell`` per layer with the GRU's weights (copied) and
    returns what the GRU returns, shaped like it.

    Args:
        gru: a unidirectional ``torch.nn.GRU`` without projections.

    Inputs: ``x, h0``
        - **x**: ``[T, B, I]`` (``[B, T, I]`` with ``batch_first``; ``[T, I]`` unbatched).
        - **h0**: ``[num_layers, B, H]`` initial hidden state, or ``None`` for zeros.

    Outputs: ``out, h_n`` as ``torch.nn.GRU``.

    Example::

        >>> import torch
        >>> from snntorch_egru.neurobench import UnrolledGRU
        >>> gru = torch.nn.GRU(4, 8, num_layers=2, batch_first=True)
        >>> x = torch.randn(3, 10, 4)
        >>> torch.allclose(UnrolledGRU(gru)(x)[0], gru(x)[0], atol=1e-6)
        True
    """

    def __init__(self, gru: nn.GRU) -> None:
        super().__init__()
        if not isinstance(gru, nn.GRU):
            raise TypeError(f"gru must be a torch.nn.GRU, got {type(gru).__name__}")
        if gru.bidirectional or getattr(gru, "proj_size", None):
            raise ValueError("gru must be unidirectional without projections (bidirectional=False)")
        self.input_size, self.hidden_size = gru.input_size, gru.hidden_size
        self.num_layers, self.batch_first = gru.num_layers, gru.batch_first
        ref = gru.weight_ih_l0
        self.cells = nn.ModuleList(
            nn.GRUCell(
                gru.input_size if k == 0 else gru.hidden_size,
                gru.hidden_size,
                bias=gru.bias,
                device=ref.device,
                dtype=ref.dtype,
            )
            for k in range(gru.num_layers)
        )
        with torch.no_grad():
            for k, cell in enumerate(self.cells):
                for n in ("weight_ih", "weight_hh") + (("bias_ih", "bias_hh") if gru.bias else ()):
                    getattr(cell, n).copy_(getattr(gru, f"{n}_l{k}"))

    def forward(self, x: torch.Tensor, h0: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, torch.Tensor]:
        if not isinstance(x, torch.Tensor) or x.dim() not in (2, 3) or x.shape[-1] != self.input_size:
            got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(
                f"x must be [T, B, {self.input_size}] ([B, T, {self.input_size}] with "
                f"batch_first, [T, {self.input_size}] unbatched), got {got}"
            )
        unbatched = x.dim() == 2
        if unbatched:
            x = x.unsqueeze(1)
            h0 = None if h0 is None else h0.unsqueeze(1)
        elif self.batch_first:
            x = x.transpose(0, 1)
        B = x.shape[1]
        if h0 is None:
            h0 = x.new_zeros(self.num_layers, B, self.hidden_size)
        elif tuple(h0.shape) != (self.num_layers, B, self.hidden_size):
            raise ValueError(f"h0 must be [{self.num_layers}, {B}, {self.hidden_size}], got {tuple(h0.shape)}")
        layer_in, finals = x, []
        for k, cell in enumerate(self.cells):
            h, outs = h0[k], []
            for x_t in layer_in:
                h = cell(x_t, h)  # the state is always passed: NeuroBench's GRUCell count needs it
                outs.append(h)
            layer_in = torch.stack(outs) if outs else x.new_zeros(0, B, self.hidden_size)
            finals.append(h)
        out, h_n = layer_in, torch.stack(finals)
        if unbatched:
            return out.squeeze(1), h_n.squeeze(1)
        return (out.transpose(0, 1) if self.batch_first else out), h_n
