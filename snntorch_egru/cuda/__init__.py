"""GPU backend ``"cupy"``: fused, event-driven EGRU kernels compiled at run time.

The CUDA C sources in ``kernels/`` (shipped inside the package) are compiled
with NVRTC through CuPy on first use and cached per variant (float32/float64,
fp16/bf16 weight storage, block shape). No build step at install time.

* forward (``kernels/egru_forward.cu``): the whole time loop in one persistent
  launch (grid-wide barriers between steps; one launch per step as fallback);
  per sample only the rows of ``weight_hh^T`` belonging to units that fired in
  the previous step are read;
* backward (``kernels/egru_backward.cu``): the sparse BPTT recurrences, with the
  recurrent product restricted to units that fired or lie inside the surrogate's
  support; weight, bias and input gradients come from dense GEMMs over the
  kernel's gate gradients; threshold/bias gradients are deterministic
  reductions (no atomics).

Select it with ``EGRU(..., backend="cupy")``; ``backend="auto"`` uses it for CUDA
tensors whenever CuPy is installed. Install CuPy with
``pip install snntorch-egru[cuda12]`` (CUDA 12) or ``[cuda13]`` (CUDA 13).

Supported spike functions: the paper's triangle
(:class:`~snntorch_egru.surrogate.EGRUSurrogate`, the default) and the plain
Heaviside (``surrogate_disable=True``). Dtypes: float32 and float64 compute;
float16/bfloat16 models store the recurrent weights in half precision and
accumulate in float32.

Example::

    >>> import torch, snntorch_egru as se
    >>> rnn = se.EGRU(8, 32, backend="cupy")
    >>> if torch.cuda.is_available() and se.cuda.cupy_available():
    ...     out, state = rnn.cuda()(torch.randn(20, 4, 8, device="cuda"))
"""

from __future__ import annotations

from typing import Optional

import torch

from ..backends import LayerCall, get_backend
from ..functional import EGRUStepOutput
from ..surrogate import kernel_params as _surrogate_params
from ._function import IMPL_CUPY, Launcher, registered_launcher, use_launcher
from ._probe import cupy_available

__all__ = ["cupy_available", "run", "supports", "available", "kernel_launcher", "INSTALL_HINT"]

INSTALL_HINT = (
    "install CuPy for your CUDA version with `pip install snntorch-egru[cuda12]` (CUDA 12.x) or "
    "`pip install snntorch-egru[cuda13]` (CUDA 13.x)"
)

_SUPPORTED_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)


def supports(call: LayerCall) -> Optional[str]:
    """``None`` if the kernels can run ``call``; otherwise the reason (a sentence).

    Args:
        call: the layer call (see :class:`snntorch_egru.backends.LayerCall`).

    Example::

        >>> import torch
        >>> from snntorch_egru import cuda
        >>> from snntorch_egru.backends import LayerCall
        >>> from snntorch_egru.surrogate import EGRUSurrogate
        >>> H, z = 4, torch.zeros(2, 4)
        >>> call = LayerCall(torch.zeros(3, 2, 1), z, z, z, torch.zeros(3 * H, 1), torch.zeros(3 * H, H),
        ...                  None, None, torch.zeros(H), EGRUSurrogate())
        >>> cuda.supports(call) is None   # CPU tensors: never
        False
    """
    params = call.kernel_params if call.kernel_params is not None else _surrogate_params(call.spike_fn)
    if params is None:
        return (
            "the 'cupy' backend supports spike_grad=None / snntorch_egru.surrogate.pseudo_derivative(...) "
            f"(the paper's triangle) or surrogate_disable=True, got spike_fn {call.spike_fn!r}; "
            "use backend='reference' for other surrogates"
        )
    if call.x.dtype not in _SUPPORTED_DTYPES:
        return f"the 'cupy' backend supports float32/float64/float16/bfloat16 inputs, got {call.x.dtype}"
    if not cupy_available():
        return f"the 'cupy' backend needs CuPy, which is not installed; {INSTALL_HINT}"
    if not torch.cuda.is_available():
        return (
            "the 'cupy' backend needs an NVIDIA GPU and a CUDA build of PyTorch, but "
            f"torch.cuda.is_available() is False; on a GPU machine {INSTALL_HINT}"
        )
    if not call.x.is_cuda:
        return (
            f"the 'cupy' backend runs on CUDA tensors, got x on {call.x.device}; move the module and its "
            f"inputs to the GPU (module.cuda(), x.cuda()) or use backend='auto'/'reference' on the CPU"
        )
    return None


def run(call: LayerCall, launcher: Optional[Launcher] = None) -> EGRUStepOutput:
    """Run one layer with the CUDA kernels (or with ``launcher``, e.g. the emulator).

    Args:
        call: the layer call (see :class:`snntorch_egru.backends.LayerCall`).
        launcher: object with ``forward(cfg, tensors)`` / ``backward(cfg, tensors)``;
            default: the CuPy kernels. Tests pass the CPU emulator here: the call then runs through the
            same operator, autograd formula and gradient products as on the GPU, on any device.

    Returns:
        ``EGRUStepOutput`` of ``[T, B, H]`` sequences, differentiable like the reference.

    Raises:
        RuntimeError: CuPy or CUDA missing (the message says how to install), or
            an unsupported spike function / dtype.

    Example::

        >>> import torch
        >>> from snntorch_egru import cuda
        >>> from snntorch_egru.backends import LayerCall
        >>> from snntorch_egru.surrogate import EGRUSurrogate
        >>> from snntorch_egru.cuda._emulator import EmulatorLauncher
        >>> T, B, I, H = 3, 2, 5, 6
        >>> z = torch.zeros(B, H)
        >>> call = LayerCall(torch.randn(T, B, I), z, z, z, torch.randn(3 * H, I), torch.randn(3 * H, H),
        ...                  None, None, torch.full((H,), 0.1), EGRUSurrogate())
        >>> y, c, o, trace = cuda.run(call, launcher=EmulatorLauncher())  # kernels' algorithm on the CPU
        >>> y.shape
        torch.Size([3, 2, 6])
    """
    if launcher is None:
        return get_backend("cupy").run(call)  # the operator with the CuPy kernels (registered by _op)
    if _surrogate_params(call.spike_fn) is None:
        raise RuntimeError(f"unsupported spike_fn {call.spike_fn!r} for the EGRU kernels")
    with use_launcher(launcher):  # the same operator, its launcher swapped (forward and backward)
        return get_backend("cupy").run(call)


def available(call: LayerCall) -> bool:
    """Whether ``backend="auto"`` runs ``call`` with the CuPy kernels (CUDA tensors, CuPy, a supported
    spike function and dtype).

    Example::

        >>> import torch
        >>> from snntorch_egru import cuda
        >>> from snntorch_egru.backends import LayerCall
        >>> from snntorch_egru.surrogate import EGRUSurrogate
        >>> z = torch.zeros(2, 4)
        >>> cuda.available(LayerCall(torch.zeros(3, 2, 1), z, z, z, torch.zeros(12, 1), torch.zeros(12, 4),
        ...                          None, None, torch.zeros(4), EGRUSurrogate()))
        False
    """
    return call.x.is_cuda and supports(call) is None


_CUPY_LAUNCHER: list = []


def kernel_launcher(impl: int) -> Launcher:
    """The launcher behind the operator's ``impl``: the CuPy kernels (``IMPL_CUPY``, made on first use) or one
    registered for a test (the emulator).

    Example::

        >>> from snntorch_egru import cuda
        >>> from snntorch_egru.cuda._emulator import EmulatorLauncher
        >>> from snntorch_egru.cuda._function import launcher_impl
        >>> emu = EmulatorLauncher()
        >>> cuda.kernel_launcher(launcher_impl(emu)) is emu
        True
    """
    if impl == IMPL_CUPY:
        if not _CUPY_LAUNCHER:
            from ._cupy import CupyLauncher

            _CUPY_LAUNCHER.append(CupyLauncher())
        return _CUPY_LAUNCHER[0]
    return registered_launcher(impl)
