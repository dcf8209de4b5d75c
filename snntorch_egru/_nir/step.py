"""Step modules built from NIR nodes: EGRU, LIF and CubaLIF (stateful), Affine/Linear, Conv, Flatten."""

from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

import nir  # the third-party NIR package
import numpy as np
import torch
from torch import nn

from .. import functional as F
from .._checks import tensor_of_shape
from .._layer_setup import recurrent_layout
from ..state import EGRUState
from ..surrogate import heaviside
from .node import EGRU


def _param(a: np.ndarray) -> nn.Parameter:
    return nn.Parameter(torch.as_tensor(np.array(a, dtype=np.float32)), requires_grad=False)


def _state_tensor(state: Any, key: str, like: Tuple[int, ...], where: str) -> torch.Tensor:
    """``state[key]``, checked to be a tensor of exactly the expected shape (no silent broadcast)."""
    if not isinstance(state, dict):
        raise TypeError(f"{where}: state must be a dict with key(s) {key!r}, got {type(state).__name__}")
    if key not in state:
        raise ValueError(
            f"{where}: state lacks {key!r} (got keys {sorted(state)}); pass state=None to start from zeros"
        )
    why, after = " (batch and features of the input)", "; a state is not broadcast across the batch"
    return tensor_of_shape(f"{where}: state[{key!r}]", state[key], like, why, after)


def _check_state_keys(state: Dict[str, Any], expected: Any, where: str) -> None:
    unknown = sorted(set(state) - set(expected))
    if unknown:
        raise ValueError(
            f"{where}: unknown state key(s) {unknown}; expected {sorted(expected)} (the keys of the "
            "state this module returned), or state=None to start from zeros"
        )


def _time_constant(name: str, value: Any, where: str) -> np.ndarray:
    tau = np.asarray(value, dtype=np.float64)
    if tau.size == 0 or not np.all(np.isfinite(tau)) or not np.all(tau > 0):
        bad = tau[~(np.isfinite(tau) & (tau > 0))].reshape(-1)[:3].tolist() if tau.size else "an empty array"
        raise ValueError(f"{where}: {name} must be finite and > 0 (a time constant), got {bad}")
    return tau


def _finite(name: str, value: Any, where: str) -> np.ndarray:
    a = np.asarray(value, dtype=np.float64)
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{where}: {name} must be finite, got NaN or inf")
    return a


class EGRUStep(nn.Module):
    """One EGRU node as a module: ``forward(x [B, I], state=None) -> (out [B, H], EGRUState)``.

    Calls :func:`snntorch_egru.functional.egru_step` (the package's single
    implementation of the math) with a plain Heaviside.

    Example::

        >>> import numpy as np, torch
        >>> from snntorch_egru.nir import EGRU, EGRUStep
        >>> r = np.random.default_rng(0).standard_normal
        >>> f = lambda *s: r(s).astype(np.float32)
        >>> step = EGRUStep(EGRU(f(6, 3), f(6, 2), f(6), f(6), np.full(2, 0.1, np.float32)))
        >>> y, s = step(torch.randn(4, 3))
        >>> y.shape, s.c.shape
        (torch.Size([4, 2]), torch.Size([4, 2]))
    """

    weight_ih: torch.Tensor
    weight_hh: torch.Tensor
    bias_ih: torch.Tensor
    bias_hh: torch.Tensor
    threshold: torch.Tensor

    def __init__(self, node: EGRU) -> None:
        super().__init__()
        for name in F.LAYER_TENSOR_NAMES:
            setattr(self, name, _param(getattr(node, name)))
        # W_hh in the layers' storage: the exported layer's GEMM layout, so an imported graph gives bit for
        # bit the layer's numbers (BLAS rounds a transposed operand differently, e.g. MKL on AVX-512)
        self.weight_hh.data = recurrent_layout(self.weight_hh.data)
        self.reset = node.reset
        self.zoneout = node.zoneout
        self.output = node.output
        self.spike_fn = heaviside()

    def forward(self, x: torch.Tensor, state: Optional[EGRUState] = None) -> Tuple[torch.Tensor, EGRUState]:
        H = self.threshold.shape[0]
        if state is None:
            z = x.new_zeros(*x.shape[:-1], H)
            state = EGRUState(z, z, z)
        else:
            if not isinstance(state, EGRUState):
                raise TypeError(f"EGRU step: state must be an EGRUState (or None), got {type(state).__name__}")
            want = tuple(x.shape[:-1]) + (H,)
            for name in ("y", "c", "trace"):
                t = getattr(state, name)
                if not isinstance(t, torch.Tensor) or tuple(t.shape) != want:
                    got = list(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
                    raise ValueError(
                        f"EGRU step: state.{name} must have shape {list(want)} (batch of the input, "
                        f"hidden size), got {got}; a state is not broadcast across the batch"
                    )
        params = (self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh, self.threshold)
        s = F.egru_step(x, *state, *params, spike_fn=self.spike_fn, reset=self.reset, zoneout_p=self.zoneout)
        new = EGRUState(s.y, s.c, s.trace)
        return (s.y if self.output == "y" else s.trace), new


class _SpikingStep(nn.Module):
    """The firing rule shared by :class:`LIFStep` and :class:`CubaLIFStep` (buffers set by their ``__init__``)."""

    v_leak: torch.Tensor
    v_threshold: torch.Tensor
    v_reset: torch.Tensor

    def _fire(self, v: torch.Tensor, dtype: torch.dtype) -> Tuple[torch.Tensor, torch.Tensor]:
        """Spikes ``s = [v > v_threshold]`` and ``v`` set to ``v_reset`` where it spiked."""
        s = (v - self.v_threshold > 0).to(dtype)
        return s, torch.where(s > 0, self.v_reset.expand_as(v), v)


class LIFStep(_SpikingStep):
    """NIR ``LIF`` discretised with forward Euler, as snnTorch does (``dt = 1e-4`` by default).

    ``v = v' + dt/tau (v_leak - v' + r x)``; spike ``s = [v > v_threshold]``; where it
    spikes ``v = v_reset``. State: ``{"v": v}``. With snnTorch's parameters
    (``tau = dt/(1-beta)``, ``r = tau/dt``) this is ``snn.Leaky`` with zero reset.

    Example::

        >>> import numpy as np, nir, torch
        >>> from snntorch_egru.nir import LIFStep
        >>> tau = np.full(2, 1e-4 / (1 - 0.9), np.float32)          # beta = 0.9
        >>> lif = LIFStep(nir.LIF(tau=tau, r=tau / 1e-4, v_leak=np.zeros(2, np.float32),
        ...                       v_threshold=np.ones(2, np.float32)), dt=1e-4)
        >>> s, state = lif(torch.tensor([[0.6, 1.2]]))
        >>> s, state["v"]
        (tensor([[0., 1.]]), tensor([[0.6000, 0.0000]]))
    """

    decay: torch.Tensor
    gain: torch.Tensor

    def __init__(self, node: nir.LIF, dt: float) -> None:
        super().__init__()
        tau = _time_constant("tau", node.tau, "LIF")
        for name in ("r", "v_leak", "v_threshold", "v_reset"):
            _finite(name, getattr(node, name), "LIF")
        self.register_buffer("decay", torch.as_tensor((dt / tau).astype(np.float32)))
        self.register_buffer("gain", torch.as_tensor((np.asarray(node.r) * dt / tau).astype(np.float32)))
        self.register_buffer("v_leak", torch.as_tensor(np.asarray(node.v_leak, dtype=np.float32)))
        self.register_buffer("v_threshold", torch.as_tensor(np.asarray(node.v_threshold, dtype=np.float32)))
        self.register_buffer("v_reset", torch.as_tensor(np.asarray(node.v_reset, dtype=np.float32)))

    def forward(self, x: torch.Tensor, state: Optional[Dict[str, torch.Tensor]] = None):
        if state is None:
            v = torch.zeros_like(x)
        else:
            v = _state_tensor(state, "v", tuple(x.shape), "LIF step")
            _check_state_keys(state, ("v",), "LIF step")
        v = v + self.decay * (self.v_leak - v) + self.gain * x
        s, v = self._fire(v, x.dtype)
        return s, {"v": v}


class CubaLIFStep(_SpikingStep):
    """NIR ``CubaLIF`` discretised as snnTorch's ``Synaptic`` (current first, then membrane).

    ``i = i' + dt/tau_syn (w_in x - i')``; ``v = v' + dt/tau_mem (v_leak - v' + r i)``;
    ``s = [v > v_threshold]``; where it spikes ``v = v_reset``. State ``{"i", "v"}``.

    Example::

        >>> import numpy as np, nir, torch
        >>> from snntorch_egru.nir import CubaLIFStep
        >>> ts = np.full(1, 1e-4 / (1 - 0.5), np.float32)           # alpha = 0.5
        >>> tm = np.full(1, 1e-4 / (1 - 0.9), np.float32)           # beta = 0.9
        >>> node = nir.CubaLIF(tau_syn=ts, tau_mem=tm, r=tm / 1e-4, v_leak=np.zeros(1, np.float32),
        ...                    v_threshold=np.ones(1, np.float32), w_in=ts / 1e-4)
        >>> cuba = CubaLIFStep(node, dt=1e-4)
        >>> s, state = cuba(torch.tensor([[0.8]]))
        >>> s, state = cuba(torch.tensor([[0.0]]), state)            # i = 0.4, v = 0.72 + 0.4
        >>> s
        tensor([[1.]])
    """

    syn_decay: torch.Tensor
    syn_gain: torch.Tensor
    mem_decay: torch.Tensor
    mem_gain: torch.Tensor

    def __init__(self, node: nir.CubaLIF, dt: float) -> None:
        super().__init__()
        ts = _time_constant("tau_syn", node.tau_syn, "CubaLIF")
        tm = _time_constant("tau_mem", node.tau_mem, "CubaLIF")
        for name in ("r", "v_leak", "v_threshold", "v_reset", "w_in"):
            _finite(name, getattr(node, name), "CubaLIF")
        f32 = lambda a: torch.as_tensor(np.asarray(a).astype(np.float32))  # noqa: E731
        self.register_buffer("syn_decay", f32(dt / ts))
        self.register_buffer("syn_gain", f32(np.asarray(node.w_in) * dt / ts))
        self.register_buffer("mem_decay", f32(dt / tm))
        self.register_buffer("mem_gain", f32(np.asarray(node.r) * dt / tm))
        self.register_buffer("v_leak", f32(node.v_leak))
        self.register_buffer("v_threshold", f32(node.v_threshold))
        self.register_buffer("v_reset", f32(node.v_reset))

    def forward(self, x: torch.Tensor, state: Optional[Dict[str, torch.Tensor]] = None):
        if state is None:
            state = {"i": torch.zeros_like(x), "v": torch.zeros_like(x)}
        else:
            for key in ("i", "v"):
                _state_tensor(state, key, tuple(x.shape), "CubaLIF step")
            _check_state_keys(state, ("i", "v"), "CubaLIF step")
        i = state["i"] - self.syn_decay * state["i"] + self.syn_gain * x
        v = state["v"] + self.mem_decay * (self.v_leak - state["v"]) + self.mem_gain * i
        s, v = self._fire(v, x.dtype)
        return s, {"i": i, "v": v}


def _affine(node: nir.NIRNode) -> nn.Module:
    w = np.asarray(node.weight)
    if w.ndim != 2:
        raise ValueError(f"{type(node).__name__} weight must be 2-D [out, in], got shape {list(w.shape)}")
    bias = isinstance(node, nir.Affine)
    m = nn.Linear(w.shape[1], w.shape[0], bias=bias)
    with torch.no_grad():
        m.weight.copy_(torch.as_tensor(w.astype(np.float32)))
        if m.bias is not None:  # bias=True made one
            b = np.asarray(node.bias)
            if b.shape != (w.shape[0],):
                raise ValueError(f"Affine bias must have shape [{w.shape[0]}], got {list(b.shape)}")
            m.bias.copy_(torch.as_tensor(b.astype(np.float32)))
    return m


def _conv(node: nir.NIRNode) -> nn.Module:
    w = np.asarray(node.weight)
    cls = nn.Conv1d if isinstance(node, nir.Conv1d) else nn.Conv2d

    def tup(v: Any) -> Any:
        v = np.atleast_1d(v)
        if cls is nn.Conv2d:
            return tuple(int(a) for a in (v if v.size == 2 else np.repeat(v[:1], 2)))
        return int(v[0])

    pad = node.padding
    pad = pad.decode() if isinstance(pad, bytes) else pad
    pad = pad if isinstance(pad, str) else tup(pad)
    m = cls(
        w.shape[1] * int(node.groups),
        w.shape[0],
        w.shape[2:] if cls is nn.Conv2d else w.shape[2],
        stride=tup(node.stride),
        padding=pad,
        dilation=tup(node.dilation),
        groups=int(node.groups),
        bias=True,
    )
    with torch.no_grad():
        m.weight.copy_(torch.as_tensor(w.astype(np.float32)))
        assert m.bias is not None  # bias=True
        m.bias.copy_(torch.as_tensor(np.asarray(node.bias).astype(np.float32)))
    return m


def _flatten(node: nir.Flatten) -> nn.Module:
    s, e = int(node.start_dim), int(node.end_dim)
    return nn.Flatten(s + 1 if s >= 0 else s, e + 1 if e >= 0 else e)
