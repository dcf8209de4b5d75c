"""Model-wide state helpers for EGRU cells and snnTorch neurons.

``snntorch.utils.reset(net)`` only looks at the *direct* children of ``net`` and
only at snnTorch's own classes; :func:`reset` here walks the whole module tree
and handles :class:`~snntorch_egru.EGRUCell` as well as every snnTorch neuron.

Example::

    >>> import torch, snntorch as snn, snntorch_egru as se
    >>> net = torch.nn.Sequential(torch.nn.Sequential(se.EGRUCell(3, 8, init_hidden=True)),
    ...                           snn.Leaky(beta=0.9, init_hidden=True))
    >>> _ = net(torch.randn(2, 3))
    >>> _ = se.utils.reset(net)          # nested cells are reset too
    >>> _ = se.utils.detach_hidden(net)  # cut the autograd history, keep the values
    >>> [type(m).__name__ for m in se.utils.stateful_modules(net)]
    ['EGRUCell', 'Leaky']
"""

from __future__ import annotations

from typing import Any, List, cast

import torch
from torch import nn

__all__ = ["reset", "detach_hidden", "detach_state", "stateful_modules", "clamp_thresholds_"]


def _is_stateful(m: nn.Module) -> bool:
    from .modules import EGRUCell

    if isinstance(m, EGRUCell):
        return True
    try:
        from snntorch._neurons.neurons import SpikingNeuron  # snnTorch's base class of all neurons
    except ImportError:  # pragma: no cover - snntorch is a core dependency
        return False
    return isinstance(m, SpikingNeuron)


def stateful_modules(module: nn.Module) -> List[nn.Module]:
    """Every EGRU cell and snnTorch neuron inside ``module`` (itself included), at any depth.

    Args:
        module: any ``torch.nn.Module``.

    Returns:
        The stateful modules, in ``module.modules()`` order.

    Example::

        >>> import torch, snntorch as snn, snntorch_egru as se
        >>> net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Sequential(se.EGRUCell(4, 8)),
        ...                           snn.Leaky(beta=0.9))
        >>> [type(m).__name__ for m in se.utils.stateful_modules(net)]
        ['EGRUCell', 'Leaky']
    """
    return [m for m in module.modules() if _is_stateful(m)]


def reset(module: nn.Module) -> nn.Module:
    """Zero the stored state of every EGRU cell and snnTorch neuron in ``module``, nested ones too.

    Call it before each new batch of sequences.

    Args:
        module: the model (any ``torch.nn.Module``).

    Returns:
        ``module`` itself.

    Example::

        >>> import torch, snntorch_egru as se
        >>> net = torch.nn.Sequential(se.EGRUCell(3, 8, init_hidden=True))
        >>> _ = net(torch.randn(2, 3))
        >>> _ = se.utils.reset(net)
        >>> net[0].c.abs().sum().item()
        0.0
    """
    for m in stateful_modules(module):
        cast(Any, m).reset_mem()  # an EGRUCell or an snnTorch neuron: both define reset_mem
    return module


def detach_hidden(module: nn.Module) -> nn.Module:
    """Detach the stored state of every EGRU cell and snnTorch neuron in ``module`` (truncated BPTT).

    The values are kept; only the autograd history is cut. snnTorch's own
    ``detach_hidden`` classmethods act on every instance of a class in the
    process; this acts on the given model only.

    Args:
        module: the model (any ``torch.nn.Module``; nested cells and neurons are found too).

    Returns:
        ``module`` itself, so calls chain.

    Example::

        >>> import torch, snntorch_egru as se
        >>> cell = se.EGRUCell(3, 8, init_hidden=True)
        >>> y = cell(torch.randn(2, 3))
        >>> before = cell.c.requires_grad
        >>> after = se.utils.detach_hidden(torch.nn.ModuleList([cell]))[0].c.requires_grad
        >>> before, after
        (True, False)
    """
    for m in stateful_modules(module):
        for name, buf in list(m._buffers.items()):
            if name in m._non_persistent_buffers_set and isinstance(buf, torch.Tensor):
                m._buffers[name] = buf.detach()
        # snnTorch neurons may also keep states as plain tensor attributes.
        for name in ("mem", "syn", "spk"):
            v = m.__dict__.get(name)
            if isinstance(v, torch.Tensor):
                m.__dict__[name] = v.detach()
    return module


def detach_state(state: Any) -> Any:
    """Detach every tensor in a (nested) state: a tensor, tuple, NamedTuple, list or dict.

    Containers keep their type (an :class:`~snntorch_egru.EGRUState` stays one);
    anything that is not a tensor or container is returned unchanged.

    Args:
        state: the state to detach, e.g. the second output of :class:`~snntorch_egru.EGRU`.

    Returns:
        The same structure with every tensor detached (truncated BPTT).

    Example::

        >>> import torch, snntorch_egru as se
        >>> out, state = se.EGRU(3, 8)(torch.randn(5, 2, 3))
        >>> state = se.utils.detach_state(state)
        >>> type(state).__name__, state.y.requires_grad
        ('EGRUState', False)
    """
    if isinstance(state, torch.Tensor):
        return state.detach()
    if isinstance(state, tuple) and hasattr(state, "_fields"):
        return type(state)(*(detach_state(s) for s in state))
    if isinstance(state, (list, tuple)):
        return type(state)(detach_state(s) for s in state)
    if isinstance(state, dict):
        return {k: detach_state(v) for k, v in state.items()}
    return state


@torch.no_grad()
def clamp_thresholds_(module: nn.Module, low: float = 0.0, high: float = 1.0) -> nn.Module:
    """Project every EGRU threshold in ``module`` into ``[low, high]`` in place.

    An alternative to the forward-pass clamp (``threshold_clamp=True``): call it
    after ``optimizer.step()`` to keep the stored parameters themselves in range.
    Thresholds of snnTorch neurons are left alone.

    Args:
        module: model holding :class:`~snntorch_egru.EGRUCell`, :class:`~snntorch_egru.EGRU` or
            Norse-flavour (:mod:`snntorch_egru.norse`) modules.
        low: lower bound. Default: 0.0.
        high: upper bound. Default: 1.0.

    Returns:
        ``module`` itself.

    Example::

        >>> import torch, snntorch_egru as se
        >>> cell = se.EGRUCell(3, 4)
        >>> with torch.no_grad():
        ...     _ = cell.threshold.copy_(torch.tensor([-0.5, 0.25, 0.75, 1.5]))
        >>> _ = se.utils.clamp_thresholds_(cell)
        >>> cell.threshold.tolist()
        [0.0, 0.25, 0.75, 1.0]
    """
    from .modules import EGRU, EGRUCell
    from .norse import EGRURecurrent, EGRURecurrentCell

    # Only EGRU thresholds: snnTorch neurons also call their parameter ``threshold``.
    for m in module.modules():
        if isinstance(m, (EGRUCell, EGRURecurrentCell, EGRURecurrent)):
            m.threshold.clamp_(low, high)
        elif isinstance(m, EGRU):
            for k in range(m.num_layers):
                getattr(m, f"threshold_l{k}").clamp_(low, high)
    return module
