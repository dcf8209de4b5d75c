"""The kernel launch of the ``snntorch_egru::egru_layer`` operator (``_op``): checks, then a launcher.

Everything that is not the sequential time loop happens in PyTorch: the input projection for all
steps (one GEMM) and the transposed recurrent weights here; after the backward loop the weight,
bias, input and initial-state gradients in :func:`snntorch_egru._grad.grad_products` (dense GEMMs
/ reductions over the gate gradients the kernel wrote; deterministic). A *launcher* runs the two
loops: the CuPy launcher (``_cupy.CupyLauncher``) on the GPU, or another one registered in the
launcher table below, such as the emulator (``_emulator.EmulatorLauncher``), which executes the
kernels' index scheme in PyTorch on any device. The operator carries the launcher's number
(``impl``), so a test that passes the emulator runs the very operator, autograd formula and
gradient products a GPU run takes (``snntorch_egru.cuda.run(call, launcher=...)``).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Dict, Iterator, List, Optional, Protocol

import torch

from .._checks import RESET_CODES
from .._engine import real_dtype

__all__ = [
    "KernelConfig",
    "Launcher",
    "RESET_CODES",
    "check_tensor",
    "kernel_forward",
    "kernel_backward",
    "IMPL_TORCH",
    "IMPL_CUPY",
    "launcher_impl",
    "registered_launcher",
    "requested_impl",
    "use_launcher",
]

_STORE_CODES = {torch.float16: 1, torch.bfloat16: 2}


@dataclass(frozen=True)
class KernelConfig:
    """Scalars of one layer call (everything the kernels take besides pointers)."""

    reset_mode: int
    zoneout_p: float
    gamma: float
    eps: float


class Launcher(Protocol):
    def forward(self, cfg: KernelConfig, t: dict) -> None: ...

    def backward(self, cfg: KernelConfig, t: dict) -> None: ...


def check_tensor(
    name: str, x: Optional[torch.Tensor], shape: tuple, dtype: torch.dtype, device: torch.device, optional: bool = False
) -> None:
    """Check one kernel argument before launch: presence, shape, dtype, device, contiguity.

    Raises ``TypeError`` (not a tensor / wrong dtype) or ``ValueError`` (shape,
    device, layout), naming the argument, what was expected and what was given.
    """
    if x is None:
        if optional:
            return
        raise TypeError(f"kernel argument {name} must be a tensor of shape {list(shape)}, got None")
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"kernel argument {name} must be a torch.Tensor, got {type(x).__name__}")
    if tuple(x.shape) != tuple(shape):
        raise ValueError(f"kernel argument {name} must have shape {list(shape)}, got {list(x.shape)}")
    if x.dtype != dtype:
        raise TypeError(f"kernel argument {name} must have dtype {dtype}, got {x.dtype}")
    if x.device != device:
        raise ValueError(f"kernel argument {name} must be on device {device}, got {x.device}")
    if not x.is_contiguous():
        raise ValueError(f"kernel argument {name} must be contiguous (row-major), got strides {x.stride()}")


def check_forward_args(t: dict, T: int, B: int, H: int, real: torch.dtype, store: torch.dtype) -> None:
    """Shapes, dtypes, devices and contiguity of every forward-kernel argument."""
    dev = t["gi"].device
    check_tensor("gi", t["gi"], (T, B, 3 * H), real, dev)
    check_tensor("whh_t", t["whh_t"], (H, 3 * H), store, dev)
    check_tensor("bhh", t["bhh"], (3 * H,), real, dev, optional=True)
    check_tensor("theta", t["theta"], (H,), real, dev)
    for k in ("y0", "c0", "tr0"):
        check_tensor(k, t[k], (B, H), real, dev)
    check_tensor("zmask", t["zmask"], (T, B, H), real, dev, optional=True)
    for k in ("y", "c", "o", "tr"):
        check_tensor(k, t[k], (T, B, H), real, dev)
    saved = [t[k] is None for k in ("s_r", "s_z", "s_n", "s_hn")]
    if any(saved) and not all(saved):
        raise ValueError("kernel arguments s_r, s_z, s_n, s_hn must be all tensors or all None")
    for k in ("s_r", "s_z", "s_n", "s_hn"):
        check_tensor(k, t[k], (T, B, H), real, dev, optional=True)


def check_backward_args(t: dict, T: int, B: int, H: int, real: torch.dtype, store: torch.dtype) -> None:
    """Shapes, dtypes, devices and contiguity of every backward-kernel argument."""
    dev = t["y"].device
    check_tensor("whh_t", t["whh_t"], (H, 3 * H), store, dev)
    check_tensor("theta", t["theta"], (H,), real, dev)
    check_tensor("c0", t["c0"], (B, H), real, dev)
    check_tensor("zmask", t["zmask"], (T, B, H), real, dev, optional=True)
    for k in ("y", "c", "o", "s_r", "s_z", "s_n", "s_hn"):
        check_tensor(k, t[k], (T, B, H), real, dev)
    for k in ("g_y", "g_c", "g_o", "g_tr"):
        check_tensor(k, t[k], (T, B, H), real, dev, optional=True)
    check_tensor("ga", t["ga"], (T, B, 3 * H), real, dev)
    check_tensor("gqn", t["gqn"], (T, B, H), real, dev)
    for k in ("dy", "dc", "tb", "dth"):
        check_tensor(k, t[k], (B, H), real, dev)


def _c(x: Optional[torch.Tensor], dtype: torch.dtype) -> Optional[torch.Tensor]:
    return None if x is None else x.detach().to(dtype).contiguous()


def kernel_forward(
    launcher: Launcher, cfg: KernelConfig, x, y0, c0, tr0, w_ih, w_eff, b_ih, b_hh, theta, zo_mask, need_saved: bool
) -> dict:
    """Prepare the forward-kernel tensors (input projection, ``W_eff^T``), check them, launch.

    ``w_eff`` is the effective (DropConnect-masked) recurrent weight ``[3H, H]``. Returns
    the launcher's tensor dict (``y, c, o, tr`` and, with ``need_saved``, ``s_r, s_z, s_n, s_hn``)."""
    T, B, _ = x.shape
    H = w_eff.shape[1]
    real = real_dtype(x.dtype)
    store = x.dtype if x.dtype in _STORE_CODES else real
    gi = torch.nn.functional.linear(x.detach().to(real), w_ih.detach().to(real), _c(b_ih, real))
    t = {
        "gi": gi.contiguous(),
        "whh_t": w_eff.detach().to(real).t().contiguous().to(store),
        "bhh": _c(b_hh, real),
        "theta": _c(theta, real),
        "y0": _c(y0, real),
        "c0": _c(c0, real),
        "tr0": _c(tr0, real),
        "zmask": _c(zo_mask, real),
    }
    for k in ("y", "c", "o", "tr"):
        t[k] = gi.new_empty((T, B, H))
    for k in ("s_r", "s_z", "s_n", "s_hn"):
        t[k] = gi.new_empty((T, B, H)) if need_saved else None
    check_forward_args(t, T, B, H, real, store)
    launcher.forward(cfg, t)
    return t


def kernel_backward(
    launcher: Launcher, cfg: KernelConfig, whh_t, theta, c0, zmask, y, c, o, s_r, s_z, s_n, s_hn, g_y, g_c, g_o, g_tr
):
    """Check and launch the backward kernel; returns ``(ga, gqn, dc, tb, dth)`` for
    :func:`snntorch_egru._grad.grad_products` (the gradient products shared by every launcher)."""
    T, B, H = y.shape
    real = y.dtype
    t = {
        "whh_t": whh_t,
        "theta": theta,
        "c0": c0,
        "zmask": zmask,
        "y": y,
        "c": c,
        "o": o,
        "s_r": s_r,
        "s_z": s_z,
        "s_n": s_n,
        "s_hn": s_hn,
        "g_y": _c(g_y, real),
        "g_c": _c(g_c, real),
        "g_o": _c(g_o, real),
        "g_tr": _c(g_tr, real),
        "ga": y.new_empty((T, B, 3 * H)),
        "gqn": y.new_empty((T, B, H)),
        "dy": y.new_zeros((B, H)),
        "dc": y.new_zeros((B, H)),
        "tb": y.new_zeros((B, H)),
        "dth": y.new_zeros((B, H)),
    }
    check_backward_args(t, T, B, H, real, whh_t.dtype)
    launcher.backward(cfg, t)
    return t["ga"], t["gqn"], t["dc"], t["tb"], t["dth"]


# ------------------------------------------------------------------------------------------
# the launcher table: the operator's ``impl`` argument names one of these

#: ``impl`` of the operator's own launchers: the CPU launcher (``sparse``/``_cpu_backward``; pure torch ops on
#: any device, the native helper on the CPU) and the CuPy kernels. Launchers registered by
#: :func:`launcher_impl` (the emulator, the tests' harnesses) get the numbers from 2 on.
IMPL_TORCH, IMPL_CUPY = 0, 1

_LAUNCHERS: List[Any] = [None, None]  # index = impl; 0 and 1 are the operator's own
_IMPL_OF: Dict[int, int] = {}  # id(launcher) -> impl (the table keeps the launcher alive)
_REQUESTED: List[int] = []  # innermost use_launcher() last


def launcher_impl(launcher: Any) -> int:
    """The ``impl`` number of ``launcher`` (registered on first use; the table keeps a reference)."""
    impl = _IMPL_OF.get(id(launcher))
    if impl is None or _LAUNCHERS[impl] is not launcher:
        _LAUNCHERS.append(launcher)
        impl = _IMPL_OF[id(launcher)] = len(_LAUNCHERS) - 1
    return impl


@contextlib.contextmanager
def use_launcher(launcher: Any) -> Iterator[int]:
    """Within the block, the ``"cupy"`` backend runs its calls with ``launcher`` (e.g. the emulator, on any
    device); the operator records it, so the backward of those calls uses it too."""
    _REQUESTED.append(launcher_impl(launcher))
    try:
        yield _REQUESTED[-1]
    finally:
        _REQUESTED.pop()


def registered_launcher(impl: int) -> Any:
    """The launcher registered as ``impl`` (2 and up; ``snntorch_egru.cuda.kernel_launcher`` also knows the
    CuPy kernels)."""
    if not 2 <= impl < len(_LAUNCHERS):
        raise ValueError(f"impl must name a registered kernel launcher (1 to {len(_LAUNCHERS) - 1}), got {impl}")
    return _LAUNCHERS[impl]


def requested_impl() -> Optional[int]:
    """The ``impl`` of the innermost :func:`use_launcher` block, or ``None`` outside one."""
    return _REQUESTED[-1] if _REQUESTED else None
