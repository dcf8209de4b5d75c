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
from typing import Any, ClassVar, Dict, Tuple, Type

import numpy as np
import torch

from ..functional import TRACE_DECAY
from ._function import KernelConfig
from ._sources import kernel_source, variant_options

__all__ = ["CupyLauncher", "get_kernel", "module_options", "LAUNCH_MODES", "DENSE_MIN_BATCH", "DENSE_MIN_BATCH_BWD"]

BLOCK = 256
LAUNCH_MODES = ("auto", "persistent", "step")
#: Batch size from which ``dense="auto"`` computes the forward recurrent products with cuBLAS
#: (per step) instead of per-sample gathers: with B samples at activity s nearly every
#: row of W_hh^T is needed by some sample once B * s >~ 2 (a guess; tune on the device).
DENSE_MIN_BATCH = 32
#: The same switch for the backward recurrent product ``dy = q_t W_hh``. Its sparse form reads
#: one row of W_hh^T per (sample, unit in G) and G (fired or inside the surrogate support) is
#: typically 50-100 % of the units, so the per-sample rows cost B * |G| / H times the dense
#: GEMM's weight traffic: dense wins at much smaller batches than in the forward. 8 is a guess
#: from that byte count, to be measured on the device (benchmarks/gpu/quick_check.sh).
DENSE_MIN_BATCH_BWD = 8
_MODULES: Dict[Tuple[str, str, int, int], object] = {}
#: Per-process caches of per-call host work (issue 16, item 3): device index -> (multiprocessor
#: count, cooperative-launch support); (device, stream handle) -> CuPy ExternalStream;
#: (kernel handle, SMs) -> co-resident blocks; (device, stream handle) -> grid-barrier counter
#: (one per stream, so launches on different streams never share it; zeroed before each use,
#: stream-ordered).
_DEVICE_INFO: Dict[int, Tuple[int, int]] = {}
_STREAMS: Dict[Tuple[int, int], object] = {}
_CORESIDENT: Dict[Tuple[int, int], int] = {}
_BARRIERS: Dict[Tuple[str, int], torch.Tensor] = {}
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


def _scalars(cfg: KernelConfig, rt: Any, surrogate: bool) -> list:
    """The kernels' scalar arguments after the tensors, in their order (the backward also takes the
    surrogate's ``gamma`` and ``eps``)."""
    named = [
        ("zo_p", rt(cfg.zoneout_p)),
        ("zo_keep", rt(1.0 - cfg.zoneout_p)),
        ("reset_mode", np.int32(cfg.reset_mode)),
    ]
    if surrogate:
        named += [("gamma", rt(cfg.gamma)), ("eps", rt(cfg.eps))]
    return named + [("tr_decay", rt(TRACE_DECAY)), ("tr_gain", rt(1.0 - TRACE_DECAY))]


class _Args:
    """A kernel's ``(parameter name, value)`` list, built once per call; each launch copies it
    and replaces only the arguments that change (the step range, the phases)."""

    __slots__ = ("named", "_pos")

    def __init__(self, named: list):
        self.named = named
        self._pos = {n: i for i, (n, _) in enumerate(named)}

    def at(self, **changes) -> list:
        out = list(self.named)
        for name, value in changes.items():
            out[self._pos[name]] = (name, value)
        return out


def _barrier(device: torch.device) -> torch.Tensor:
    """The zeroed grid-barrier counter of the current stream on ``device`` (cached, re-zeroed)."""
    stream = torch.cuda.current_stream(device).cuda_stream if device.type == "cuda" else 0
    key = (str(device), int(stream))
    buf = _BARRIERS.get(key)
    if buf is None:
        buf = _BARRIERS[key] = torch.zeros(1, dtype=torch.int32, device=device)
    else:
        buf.zero_()  # a memset on the same stream as the launch that follows
    return buf


def _launch(kern, grid: int, named: list, cooperative: bool = False) -> None:
    """Launch ``kern`` with ``grid`` blocks of :data:`BLOCK` threads on the current CuPy stream
    (``cuLaunchCooperativeKernel`` when ``cooperative``: all blocks co-resident)."""
    args = tuple([v for _, v in named])
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
            :data:`DENSE_MIN_BATCH` in the forward, :data:`DENSE_MIN_BATCH_BWD` in the
            backward), ``"on"`` or ``"off"``. Dense mode always
            launches per step. Environment override: ``SNNTORCH_EGRU_CUPY_DENSE``.
    """

    mode: str = "auto"
    dense: str = "auto"

    #: Errors of a persistent attempt that make the launcher fall back to step mode.
    _fallback_errors: ClassVar[Tuple[Type[BaseException], ...]] = (Exception,)

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
                RuntimeWarning,
                stacklevel=4,
            )
            return False

    def _dense(self, B: int, backward: bool = False) -> bool:
        """Whether the recurrent products of this call run as dense GEMMs (cuBLAS) per step."""
        d = os.environ.get("SNNTORCH_EGRU_CUPY_DENSE", self.dense)
        if d not in ("auto", "on", "off"):
            raise ValueError(f"dense must be 'auto', 'on' or 'off', got {d!r}")
        from .. import _engine

        if _engine._FORCE_DENSE:  # inside snntorch_egru.sparse.force_dense(): the bench's "dense EGRU"
            return True
        return d == "on" or (d == "auto" and B >= (DENSE_MIN_BATCH_BWD if backward else DENSE_MIN_BATCH))

    def _setup(self, ref: torch.Tensor, store: torch.dtype):
        cp = _cupy()
        dev = ref.device.index if ref.device.index is not None else torch.cuda.current_device()
        real = "double" if ref.dtype == torch.float64 else "float"
        wstore = {torch.float16: 1, torch.bfloat16: 2}.get(store, 0)
        mode = os.environ.get("SNNTORCH_EGRU_CUPY_LAUNCH", self.mode)
        if mode not in LAUNCH_MODES:
            raise ValueError(f"launch mode must be one of {LAUNCH_MODES}, got {mode!r}")
        info = _DEVICE_INFO.get(dev)
        if info is None:  # device queries once per device and process
            sms = torch.cuda.get_device_properties(dev).multi_processor_count
            try:
                coop = cp.cuda.runtime.deviceGetAttribute(cp.cuda.runtime.cudaDevAttrCooperativeLaunch, dev)
            except AttributeError:
                coop = 1
            info = _DEVICE_INFO[dev] = (sms, int(coop))
        if mode == "auto":
            mode = "persistent" if info[1] else "step"
        handle = int(torch.cuda.current_stream(dev).cuda_stream)
        stream = _STREAMS.get((dev, handle))
        if stream is None:
            with warnings.catch_warnings():  # ExternalStream is deprecated (not removed) in CuPy 14
                warnings.simplefilter("ignore")
                stream = _STREAMS[(dev, handle)] = cp.cuda.ExternalStream(handle, dev)
        return cp, dev, real, wstore, mode, info[0], stream

    @staticmethod
    def _coresident(kernel, sms: int) -> int:
        key = (int(kernel.kernel.ptr), sms)
        if key not in _CORESIDENT:
            cp = _cupy()
            per_sm = cp.cuda.driver.occupancyMaxActiveBlocksPerMultiprocessor(kernel.kernel.ptr, BLOCK, 0)
            _CORESIDENT[key] = max(1, per_sm) * sms
        return _CORESIDENT[key]

    def forward(self, cfg: KernelConfig, t: dict) -> None:
        gi = t["gi"]
        T, B, H3 = gi.shape
        H = H3 // 3
        cp, dev, real, wstore, mode, sms, stream = self._setup(gi, t["whh_t"].dtype)
        units = _choose_units(B, H, sms)
        rt = np.float64 if real == "double" else np.float32
        nitems = B * ((H + units - 1) // units)

        gh = gi.new_empty((B, H3)) if self._dense(B) else None
        named = [("gi", _ptr(gi))] + [(k, _ptr(t[k])) for k in "whh_t bhh theta y0 c0 tr0 zmask".split()]
        named += _scalars(cfg, rt, surrogate=False)
        named += [(k, _ptr(t[k])) for k in "y c o tr s_r s_z s_n s_hn".split()]
        named += [(k, np.int32(v)) for k, v in (("T", T), ("B", B), ("H", H), ("t_begin", 0), ("t_end", T))]
        args = _Args(named + [("gh", _ptr(gh)), ("barrier", _ptr(None))])

        with cp.cuda.Device(dev), stream:
            if gh is not None:  # dense mode
                kern = self._kernel("egru_forward", real, wstore, units)
                w = t["whh_t"].to(gi.dtype)  # [H, 3H]
                for step in range(T):
                    torch.mm(t["y0"] if step == 0 else t["y"][step - 1], w, out=gh)  # same stream
                    self._run(kern, nitems, args.at(t_begin=np.int32(step), t_end=np.int32(step + 1)))
                return

            def persistent() -> None:
                kern = self._kernel("egru_forward", real, wstore, units)
                grid = min(nitems, self._coresident(kern, sms))
                self._run(kern, grid, args.at(barrier=_ptr(_barrier(gi.device))), cooperative=True)

            if mode == "persistent" and self._persistent(("egru_forward", dev, real, wstore, units), persistent):
                return
            kern = self._kernel("egru_forward", real, wstore, units)
            for step in range(T):
                self._run(kern, nitems, args.at(t_begin=np.int32(step), t_end=np.int32(step + 1)))

    def backward(self, cfg: KernelConfig, t: dict) -> None:
        y = t["y"]
        T, B, H = y.shape
        cp, dev, real, wstore, mode, sms, stream = self._setup(y, t["whh_t"].dtype)
        rt = np.float64 if real == "double" else np.float32
        nitems1 = B * ((H + BLOCK - 1) // BLOCK)
        nblocks2 = min(B * ((H + BLOCK // 32 - 1) // (BLOCK // 32)), 65535)  # items (b, tile of 8 rows)

        named = [(k, _ptr(t[k])) for k in "whh_t theta c0 zmask".split()] + _scalars(cfg, rt, surrogate=True)
        named += [(k, _ptr(t[k])) for k in "y c o s_r s_z s_n s_hn g_y g_c g_o g_tr ga gqn dy dc tb dth".split()]
        named += [(k, np.int32(v)) for k, v in (("T", T), ("B", B), ("H", H), ("t_begin", T), ("t_end", 0))]
        args = _Args(named + [("phases", np.int32(3)), ("barrier", _ptr(None))])
        one, two = np.int32(1), np.int32(2)

        def step_args(step: int, phases: np.int32) -> list:
            return args.at(t_begin=np.int32(step + 1), t_end=np.int32(step), phases=phases)

        with cp.cuda.Device(dev), stream:
            if self._dense(B, backward=True):
                kern = self._kernel("egru_backward", real, wstore, 32)
                w = t["whh_t"].to(y.dtype)  # [H, 3H] = W_eff^T
                w_rz, w_n = w[:, : 2 * H].t(), w[:, 2 * H :].t()
                for step in range(T - 1, -1, -1):
                    self._run(kern, nitems1, step_args(step, one))
                    if step >= 1:  # dy = q_t W_eff with q_t = [a_r, a_z | q_n]
                        torch.mm(t["ga"][step, :, : 2 * H], w_rz, out=t["dy"])
                        t["dy"].addmm_(t["gqn"][step], w_n)
                return

            def persistent() -> None:
                kern = self._kernel("egru_backward", real, wstore, 32)
                grid = min(max(nitems1, nblocks2), self._coresident(kern, sms))
                self._run(kern, grid, args.at(barrier=_ptr(_barrier(y.device))), cooperative=True)

            if mode == "persistent" and self._persistent(("egru_backward", dev, real, wstore, 32), persistent):
                return
            kern = self._kernel("egru_backward", real, wstore, 32)
            for step in range(T - 1, -1, -1):
                self._run(kern, nitems1, step_args(step, one))
                if step >= 1:
                    self._run(kern, nblocks2, step_args(step, two))
