"""Compiling (CuPy RawModule / NVRTC, cached per variant) and launching the kernels.

Kernels run on PyTorch's current CUDA stream (``cupy.cuda.ExternalStream``) on
the tensors' raw ``data_ptr()``s: no copies, no host synchronisation.

Every variant is compiled once, as ordinary (non-relocatable) device code: the
kernels use no cooperative-groups API, only their own grid barrier, so the
persistent mode merely *launches* cooperatively
(``cuLaunchCooperativeKernel``, CuPy's ``enable_cooperative_groups=True`` at
launch time). Compiling with CuPy's ``enable_cooperative_groups`` would force
``-rdc`` and a link against a CUDA toolkit's ``libcudadevrt.a``, which pip-only
installs (torch wheel + ``cupy-cuda12x``) do not have, and raise register use.
If a persistent launch still fails (device limits, driver), the launcher falls
back to one launch per step with one ``RuntimeWarning``.

The device queries (:meth:`CupyLauncher._setup`, :meth:`CupyLauncher._coresident`)
and the final launch (:meth:`CupyLauncher._kernel`, :meth:`CupyLauncher._run`)
are methods, so the CPU execution harness (``tests/harness``) runs this very
launch logic with host-compiled kernels.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from typing import ClassVar, Dict, Tuple

import numpy as np
import torch

from ..functional import TRACE_DECAY
from ._function import KernelConfig
from ._sources import kernel_source, variant_options

__all__ = ["CupyLauncher", "get_kernel", "module_options", "LAUNCH_MODES"]

BLOCK = 256
LAUNCH_MODES = ("auto", "persistent", "step")
#: Batch size from which ``dense="auto"`` computes the recurrent products with cuBLAS
#: (per step) instead of per-sample gathers: with B samples at activity s nearly every
#: row of W_hh^T is needed by some sample once B * s >~ 2 (tune on the device).
DENSE_MIN_BATCH = 32
_MODULES: Dict[Tuple[str, str, int, int], object] = {}
#: Persistent variants that failed to launch in this process: key -> reason (no retry, one warning).
_PERSISTENT_FAILED: Dict[tuple, str] = {}


def _cupy():
    import cupy  # noqa: F401  (imported lazily: CPU installs never need it)

    return cupy


def module_options(real: str, wstore: int, units: int) -> dict:
    """Keyword arguments of ``cupy.RawModule`` for one variant: the NVRTC ``-D`` options only.

    Deliberately no ``enable_cooperative_groups`` (it would compile relocatable device code
    and need a CUDA toolkit's ``libcudadevrt.a``); cooperative launches are requested at
    launch time (:func:`_launch`).
    """
    return {"options": variant_options(real, wstore, units)}


def get_kernel(name: str, real: str, wstore: int, units: int):
    """The compiled ``cupy.RawKernel`` for one variant (compiled once per process, then
    cached; CuPy keeps one binary per device)."""
    key = (name, real, wstore, units)
    if key not in _MODULES:
        cp = _cupy()
        src = kernel_source(f"{name}.cu")
        mod = cp.RawModule(code=src, **module_options(real, wstore, units))
        _MODULES[key] = mod.get_function(name)
    return _MODULES[key]


def _ptr(x) -> np.uint64:
    return np.uint64(0 if x is None else x.data_ptr())


def _launch(kern, grid: int, named: list, cooperative: bool = False) -> None:
    """Launch ``kern`` with ``grid`` blocks of :data:`BLOCK` threads on the current CuPy stream
    (``cuLaunchCooperativeKernel`` when ``cooperative``: all blocks co-resident)."""
    args = tuple(v for _, v in named)
    if cooperative:
        kern((grid,), (BLOCK,), args, enable_cooperative_groups=True)
    else:
        kern((grid,), (BLOCK,), args)


def _choose_units(B: int, H: int, sms: int) -> int:
    """Units per forward block: small chunks (more blocks) when B * H is small."""
    for units in (256, 128, 64):
        if B * ((H + units - 1) // units) >= 4 * sms:
            return units
    return 32


@dataclass
class CupyLauncher:
    """Launches ``egru_forward`` / ``egru_backward`` on the current PyTorch stream.

    Args:
        mode: ``"persistent"`` (one cooperative launch for all steps with
            grid-wide barriers), ``"step"`` (one launch per step and phase) or
            ``"auto"`` (persistent when the device supports cooperative launches).
            Environment override: ``SNNTORCH_EGRU_CUPY_LAUNCH``.
        dense: ``"auto"`` (dense recurrent products for batches of at least
            :data:`DENSE_MIN_BATCH`), ``"on"`` or ``"off"``. Dense mode always
            launches per step. Environment override: ``SNNTORCH_EGRU_CUPY_DENSE``.
    """

    mode: str = "auto"
    dense: str = "auto"

    #: Errors of a persistent attempt that make the launcher fall back to step mode.
    _fallback_errors: ClassVar[Tuple[type, ...]] = (Exception,)

    # ---- the device-specific pieces (the CPU harness overrides exactly these)
    def _kernel(self, name: str, real: str, wstore: int, units: int):
        """The compiled kernel of one variant."""
        return get_kernel(name, real, wstore, units)

    def _run(self, kern, grid: int, named: list, cooperative: bool = False) -> None:
        """Launch ``kern`` (``named``: ``(parameter name, value)`` in kernel-parameter order)."""
        _launch(kern, grid, named, cooperative)

    def _persistent(self, key: tuple, launch) -> bool:
        """Run one persistent (cooperative) launch; on failure warn once and return False,
        so that the caller runs the same work in step mode instead."""
        if key in _PERSISTENT_FAILED:
            return False
        try:
            launch()
            return True
        except self._fallback_errors as e:  # compile, occupancy query or cooperative launch failed
            _PERSISTENT_FAILED[key] = f"{type(e).__name__}: {e}"
            warnings.warn(
                f"snntorch_egru 'cupy' backend: the persistent (cooperative) launch of {key[0]} failed "
                f"({type(e).__name__}: {e}); falling back to launch mode 'step' (one launch per step) for "
                "this variant in this process. Set SNNTORCH_EGRU_CUPY_LAUNCH=step to choose it explicitly.",
                RuntimeWarning, stacklevel=4)
            return False

    def _dense(self, B: int) -> bool:
        d = os.environ.get("SNNTORCH_EGRU_CUPY_DENSE", self.dense)
        if d not in ("auto", "on", "off"):
            raise ValueError(f"dense must be 'auto', 'on' or 'off', got {d!r}")
        return d == "on" or (d == "auto" and B >= DENSE_MIN_BATCH)

    def _setup(self, ref: torch.Tensor, store: torch.dtype):
        cp = _cupy()
        dev = ref.device.index if ref.device.index is not None else torch.cuda.current_device()
        real = "double" if ref.dtype == torch.float64 else "float"
        wstore = {torch.float16: 1, torch.bfloat16: 2}.get(store, 0)
        mode = os.environ.get("SNNTORCH_EGRU_CUPY_LAUNCH", self.mode)
        if mode not in LAUNCH_MODES:
            raise ValueError(f"launch mode must be one of {LAUNCH_MODES}, got {mode!r}")
        props = torch.cuda.get_device_properties(dev)
        if mode == "auto":
            try:
                coop = cp.cuda.runtime.deviceGetAttribute(
                    cp.cuda.runtime.cudaDevAttrCooperativeLaunch, dev)
            except AttributeError:
                coop = 1
            mode = "persistent" if coop else "step"
        with warnings.catch_warnings():  # ExternalStream is deprecated (not removed) in CuPy 14
            warnings.simplefilter("ignore")
            stream = cp.cuda.ExternalStream(torch.cuda.current_stream(dev).cuda_stream, dev)
        return cp, dev, real, wstore, mode, props.multi_processor_count, stream

    @staticmethod
    def _coresident(kernel, sms: int) -> int:
        cp = _cupy()
        per_sm = cp.cuda.driver.occupancyMaxActiveBlocksPerMultiprocessor(kernel.kernel.ptr, BLOCK, 0)
        return max(1, per_sm) * sms

    def forward(self, cfg: KernelConfig, t: dict) -> None:
        gi = t["gi"]
        T, B, H3 = gi.shape
        H = H3 // 3
        cp, dev, real, wstore, mode, sms, stream = self._setup(gi, t["whh_t"].dtype)
        units = _choose_units(B, H, sms)
        rt = np.float64 if real == "double" else np.float32
        nitems = B * ((H + units - 1) // units)

        def args(t0: int, t1: int, barrier) -> list:  # (name, value) in kernel-parameter order
            return [("gi", _ptr(gi)), ("whh_t", _ptr(t["whh_t"])), ("bhh", _ptr(t["bhh"])),
                    ("theta", _ptr(t["theta"])), ("y0", _ptr(t["y0"])), ("c0", _ptr(t["c0"])),
                    ("tr0", _ptr(t["tr0"])), ("zmask", _ptr(t["zmask"])), ("zo_p", rt(cfg.zoneout_p)),
                    ("zo_keep", rt(1.0 - cfg.zoneout_p)), ("reset_mode", np.int32(cfg.reset_mode)),
                    ("tr_decay", rt(TRACE_DECAY)), ("tr_gain", rt(1.0 - TRACE_DECAY)),
                    ("y", _ptr(t["y"])), ("c", _ptr(t["c"])), ("o", _ptr(t["o"])), ("tr", _ptr(t["tr"])),
                    ("s_r", _ptr(t["s_r"])), ("s_z", _ptr(t["s_z"])), ("s_n", _ptr(t["s_n"])),
                    ("s_hn", _ptr(t["s_hn"])), ("T", np.int32(T)), ("B", np.int32(B)), ("H", np.int32(H)),
                    ("t_begin", np.int32(t0)), ("t_end", np.int32(t1)), ("gh", _ptr(gh)),
                    ("barrier", _ptr(barrier))]

        gh = None
        with cp.cuda.Device(dev), stream:
            if self._dense(B):
                kern = self._kernel("egru_forward", real, wstore, units)
                w = t["whh_t"].to(gi.dtype)  # [H, 3H]
                gh = gi.new_empty((B, H3))
                for step in range(T):
                    torch.mm(t["y0"] if step == 0 else t["y"][step - 1], w, out=gh)  # same stream
                    self._run(kern, nitems, args(step, step + 1, None))
                return

            def persistent() -> None:
                kern = self._kernel("egru_forward", real, wstore, units)
                grid = min(nitems, self._coresident(kern, sms))
                barrier = torch.zeros(1, dtype=torch.int32, device=gi.device)
                self._run(kern, grid, args(0, T, barrier), cooperative=True)

            if mode == "persistent" and self._persistent(("egru_forward", dev, real, wstore, units), persistent):
                return
            kern = self._kernel("egru_forward", real, wstore, units)
            for step in range(T):
                self._run(kern, nitems, args(step, step + 1, None))

    def backward(self, cfg: KernelConfig, t: dict) -> None:
        y = t["y"]
        T, B, H = y.shape
        cp, dev, real, wstore, mode, sms, stream = self._setup(y, t["whh_t"].dtype)
        rt = np.float64 if real == "double" else np.float32
        nitems1 = B * ((H + BLOCK - 1) // BLOCK)
        nblocks2 = min((B * H + BLOCK // 32 - 1) // (BLOCK // 32), 65535)

        def args(t0: int, t1: int, phases: int, barrier) -> list:  # (name, value) in parameter order
            named = [("whh_t", _ptr(t["whh_t"])), ("theta", _ptr(t["theta"])), ("c0", _ptr(t["c0"])),
                     ("zmask", _ptr(t["zmask"])), ("zo_p", rt(cfg.zoneout_p)), ("zo_keep", rt(1.0 - cfg.zoneout_p)),
                     ("reset_mode", np.int32(cfg.reset_mode)), ("gamma", rt(cfg.gamma)), ("eps", rt(cfg.eps)),
                     ("tr_decay", rt(TRACE_DECAY)), ("tr_gain", rt(1.0 - TRACE_DECAY))]
            named += [(k, _ptr(t[k])) for k in ("y", "c", "o", "s_r", "s_z", "s_n", "s_hn", "g_y", "g_c", "g_o",
                                                 "g_tr", "ga", "gqn", "dy", "dc", "tb", "dth")]
            named += [("T", np.int32(T)), ("B", np.int32(B)), ("H", np.int32(H)), ("t_begin", np.int32(t0)),
                      ("t_end", np.int32(t1)), ("phases", np.int32(phases)), ("barrier", _ptr(barrier))]
            return named

        with cp.cuda.Device(dev), stream:
            if self._dense(B):
                kern = self._kernel("egru_backward", real, wstore, 32)
                w = t["whh_t"].to(y.dtype)  # [H, 3H] = W_eff^T
                w_rz, w_n = w[:, :2 * H].t(), w[:, 2 * H:].t()
                for step in range(T - 1, -1, -1):
                    self._run(kern, nitems1, args(step + 1, step, 1, None))
                    if step >= 1:  # dy = q_t W_eff with q_t = [a_r, a_z | q_n]
                        torch.mm(t["ga"][step, :, :2 * H], w_rz, out=t["dy"])
                        t["dy"].addmm_(t["gqn"][step], w_n)
                return

            def persistent() -> None:
                kern = self._kernel("egru_backward", real, wstore, 32)
                grid = min(max(nitems1, nblocks2), self._coresident(kern, sms))
                barrier = torch.zeros(1, dtype=torch.int32, device=y.device)
                self._run(kern, grid, args(T, 0, 3, barrier), cooperative=True)

            if mode == "persistent" and self._persistent(("egru_backward", dev, real, wstore, 32), persistent):
                return
            kern = self._kernel("egru_backward", real, wstore, 32)
            for step in range(T - 1, -1, -1):
                self._run(kern, nitems1, args(step + 1, step, 1, None))
                if step >= 1:
                    self._run(kern, nblocks2, args(step + 1, step, 2, None))
