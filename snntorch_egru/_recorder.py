"""Event recording (forward hooks) and raster plots of EGRU events.

Public through :mod:`snntorch_egru.interop` (:class:`EventRecorder`, :func:`raster_plot`).
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Tuple

import torch
from torch import nn

from .modules import EGRU, EGRUCell
from .norse import EGRURecurrent, EGRURecurrentCell

__all__ = ["EventRecorder", "raster_plot"]


def _is_snntorch_neuron(m: nn.Module) -> bool:
    try:
        from snntorch._neurons.neurons import SpikingNeuron
    except ImportError:  # pragma: no cover - snntorch is a dependency
        return False
    return isinstance(m, SpikingNeuron)


class EventRecorder:
    """Record the time-first events of every EGRU module (and snnTorch neuron) in a model.

    Forward hooks collect, per module, the graded events ``y`` of
    :class:`~snntorch_egru.EGRUCell` and :class:`~snntorch_egru.norse.EGRURecurrentCell`
    (one step per call, stacked along a new time dimension), the output
    sequences of :class:`~snntorch_egru.EGRU` (its last layer) and
    :class:`~snntorch_egru.norse.EGRURecurrent` (concatenated along time), and the
    spikes of snnTorch neurons (``include_snntorch=True``). Recorded tensors are
    detached. Use it as a context manager; hooks are removed on exit.

    Args:
        model: the network to watch.
        include_snntorch: also record snnTorch neurons' spikes. Default: True.

    Attributes:
        events: ``dict`` module name (as in ``model.named_modules()``) ->
            ``[T, B, H]`` tensor (``[T, H]`` unbatched), time-first.

    Example::

        >>> import torch, snntorch_egru as se
        >>> from snntorch_egru.interop import EventRecorder
        >>> net = torch.nn.Sequential(torch.nn.Linear(3, 8), se.EGRUCell(8, 16, init_hidden=True))
        >>> with EventRecorder(net) as rec:
        ...     for x_t in torch.randn(30, 4, 3):
        ...         _ = net(x_t)
        >>> rec.events["1"].shape
        torch.Size([30, 4, 16])
        >>> rate = (rec.events["1"] != 0).float().mean()   # fraction of units active
    """

    def __init__(self, model: nn.Module, *, include_snntorch: bool = True) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        self.model = model
        self.include_snntorch = bool(include_snntorch)
        self._chunks: Dict[str, List[torch.Tensor]] = {}
        self._handles: List[Any] = []

    def _watched(self) -> List[Tuple[str, nn.Module]]:
        out = []
        for name, m in self.model.named_modules():
            if isinstance(m, (EGRU, EGRUCell, EGRURecurrent, EGRURecurrentCell)) or (
                self.include_snntorch and _is_snntorch_neuron(m)
            ):
                out.append((name or type(m).__name__, m))
        return out

    def start(self) -> "EventRecorder":
        """Install the hooks (called by ``__enter__``)."""
        if self._handles:
            return self
        for name, m in self._watched():
            self._handles.append(m.register_forward_hook(self._hook(name)))
        return self

    def _hook(self, name: str) -> Callable[..., None]:
        def hook(module: nn.Module, args: Any, output: Any) -> None:
            y = output[0] if isinstance(output, tuple) else output
            y = y.detach()
            if isinstance(module, EGRU):
                if module.batch_first and y.dim() == 3:
                    y = y.transpose(0, 1)
            elif not isinstance(module, EGRURecurrent):
                y = y.unsqueeze(0)  # one step
            self._chunks.setdefault(name, []).append(y)

        return hook

    def stop(self) -> None:
        """Remove the hooks (called by ``__exit__``); recorded events stay."""
        for h in self._handles:
            h.remove()
        self._handles.clear()

    def clear(self) -> None:
        """Forget everything recorded so far."""
        self._chunks.clear()

    @property
    def events(self) -> Dict[str, torch.Tensor]:
        return {name: torch.cat(chunks) for name, chunks in self._chunks.items()}

    def __enter__(self) -> "EventRecorder":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def raster_plot(events: torch.Tensor, *, sample: int = 0, ax: Any = None, **scatter_kwargs: Any) -> Tuple[Any, Any]:
    """Raster plot (time vs unit) of EGRU events with ``snntorch.spikeplot.raster``.

    A dot is drawn at ``(t, unit)`` wherever the event is non-zero (EGRU events
    are graded: the unit's state value, not 1).

    Args:
        events: ``[T, B, H]`` (sample ``sample`` is drawn) or ``[T, H]`` events,
            e.g. an EGRU output or :attr:`EventRecorder.events` entry.
        sample: batch index to draw for ``[T, B, H]`` input. Default: 0.
        ax: a matplotlib ``Axes`` to draw into; default a new figure.
        **scatter_kwargs: passed to ``matplotlib``'s ``scatter`` (default ``s=2, c="black"``).

    Returns:
        ``(figure, axes)``.

    Raises:
        ImportError: matplotlib (and pandas, which ``snntorch.spikeplot`` imports)
            are not installed (``pip install snntorch-egru[data]``).

    Example::

        >>> import matplotlib; matplotlib.use("Agg")
        >>> import torch, snntorch_egru as se
        >>> from snntorch_egru.interop import raster_plot
        >>> out, _ = se.EGRU(3, 16)(torch.randn(50, 2, 3))
        >>> fig, ax = raster_plot(out, sample=1)
    """
    if not isinstance(events, torch.Tensor):
        raise TypeError(f"events must be a torch.Tensor [T, B, H] or [T, H], got {type(events).__name__}")
    if events.dim() == 3:
        if isinstance(sample, bool) or not isinstance(sample, int) or not 0 <= sample < events.shape[1]:
            raise ValueError(
                f"sample must be an int in [0, {events.shape[1]}) for events of shape "
                f"{list(events.shape)}, got {sample!r}"
            )
        events = events[:, sample]
    elif events.dim() != 2:
        raise ValueError(f"events must have shape [T, B, H] or [T, H], got {list(events.shape)}")
    try:
        import matplotlib.pyplot as plt
        from snntorch import spikeplot
    except ImportError as err:
        raise ImportError(
            f"raster_plot needs matplotlib and pandas (for snntorch.spikeplot): pip install snntorch-egru[data] ({err})"
        ) from err
    if ax is None:
        fig, ax = plt.subplots()
    else:
        fig = ax.figure
    kwargs = {"s": 2, "c": "black"}
    kwargs.update(scatter_kwargs)
    spikeplot.raster(events.detach() != 0, ax, **kwargs)
    ax.set_xlabel("time step")
    ax.set_ylabel("unit")
    return fig, ax
