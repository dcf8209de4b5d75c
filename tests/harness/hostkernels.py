"""Builder, ctypes binding and launcher of the host-compiled CUDA kernels.

* :func:`find_cxx` -- a C++20 compiler (``$CXX``, ``g++``, ``clang++``) or ``None``;
* :func:`build` -- compiles ``host_runtime.cpp`` with ``snntorch_egru/cuda/kernels/*.cu`` for one variant
  (``EGRU_REAL``/``EGRU_WSTORE``/``EGRU_UNITS``, optional sanitizer), cached under
  ``build/egru-host/`` (git-ignored) by a hash of every source, flag and the compiler version;
* :class:`HostKernels` -- the shared library (``egru_host_launch``);
* :class:`HostLauncher` -- :class:`~snntorch_egru.cuda._cupy.CupyLauncher` with the device
  queries and the final launch replaced: same argument lists, grid sizing and modes;
  optionally records every launch for the sanitizer replay executable.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import os
import shutil
import struct
import subprocess
import tempfile
import threading
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from snntorch_egru.cuda import _cupy

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
KERNELS = ROOT / "snntorch_egru" / "cuda" / "kernels"
SLOTS = 8  # co-resident blocks of the host build (EGRU_HOST_SLOTS)
SANITIZERS = {
    None: [],
    "thread": ["-fsanitize=thread", "-Wno-tsan"],
    "address": ["-fsanitize=address,undefined", "-fno-sanitize-recover=undefined", "-fno-omit-frame-pointer"],
}
_LOCK = threading.Lock()


def build_dir() -> Path:
    """``$EGRU_HOST_BUILD_DIR``, else ``<repo>/build/egru-host`` (git-ignored), else a tmp dir."""
    env = os.environ.get("EGRU_HOST_BUILD_DIR")
    if env:
        return Path(env)
    d = ROOT / "build" / "egru-host"
    try:
        d.mkdir(parents=True, exist_ok=True)
        return d
    except OSError:
        return Path(tempfile.gettempdir()) / f"egru-host-{os.getuid()}"


_CXX: Dict[str, Optional[Tuple[str, str]]] = {}


def find_cxx() -> Optional[Tuple[str, str]]:
    """``(compiler, version line)`` of the first C++20 compiler that builds a threaded test
    program, or ``None``."""
    if "c" in _CXX:
        return _CXX["c"]
    found = None
    for cand in [os.environ.get("CXX"), "g++", "clang++"]:
        if not cand or not shutil.which(cand):
            continue
        with tempfile.TemporaryDirectory() as tmp:
            src = Path(tmp) / "t.cpp"
            src.write_text(
                "#include <bit>\n#include <thread>\nint main(){std::thread t([]{}); t.join();"
                " return std::bit_cast<int>(0.0f);}\n"
            )
            proc = subprocess.run(
                [cand, "-std=c++20", "-pthread", str(src), "-o", str(Path(tmp) / "t")], capture_output=True, text=True
            )
            if proc.returncode == 0:
                ver = subprocess.run([cand, "--version"], capture_output=True, text=True).stdout.splitlines()
                found = (shutil.which(cand), ver[0] if ver else "?")
                break
    _CXX["c"] = found
    return found


IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require(ok: bool, what: str) -> None:
    """Skip the calling test when ``ok`` is false -- but fail it in CI (``CI=true``), where the
    harness must run."""
    if ok:
        return
    import pytest

    if IN_CI:
        pytest.fail(f"{what} -- CI (CI=true) must run the CPU kernel harness")
    pytest.skip(what)


def require_cxx() -> None:
    require(
        find_cxx() is not None,
        "no C++20 compiler (g++ >= 10 or clang++ >= 12; or set CXX): the CPU kernel harness cannot run",
    )


_SAN_OK: Dict[str, bool] = {}


def sanitizer_works(kind: str) -> bool:
    """Whether the compiler builds and runs a threaded program with sanitizer ``kind``."""
    if kind not in _SAN_OK:
        cxx = find_cxx()
        ok = False
        if cxx is not None:
            with tempfile.TemporaryDirectory() as tmp:
                src = Path(tmp) / "t.cpp"
                src.write_text(
                    "#include <thread>\nint main(){int x=0; std::thread t([&]{x=1;}); t.join(); return x-1;}\n"
                )
                exe = Path(tmp) / "t"
                b = subprocess.run(
                    [cxx[0], "-std=c++20", "-pthread", *SANITIZERS[kind], str(src), "-o", str(exe)], capture_output=True
                )
                ok = b.returncode == 0 and subprocess.run([str(exe)], capture_output=True).returncode == 0
        _SAN_OK[kind] = ok
    return _SAN_OK[kind]


def _hash_sources(kernels: Path, flags: Sequence[str], cxx: Tuple[str, str]) -> str:
    h = hashlib.sha256()
    for p in sorted(HERE.glob("*.h")) + [HERE / "host_runtime.cpp"] + sorted(kernels.glob("*.cu*")):
        h.update(p.name.encode())
        h.update(p.read_bytes())
    h.update("\0".join(flags).encode())
    h.update(cxx[1].encode())
    return h.hexdigest()[:16]


def build(
    real: str = "double",
    wstore: int = 0,
    units: int = 32,
    *,
    sanitize: Optional[str] = None,
    replay: bool = False,
    kernels: Optional[Path] = None,
    opt: str = "-O1",
    barrier_test: bool = False,
) -> Path:
    """Compile the harness for one kernel variant; returns the ``.so`` (or, with ``replay``,
    the launch-replay executable). Cached by source hash; raises ``RuntimeError`` with the
    compiler log on failure and when no C++20 compiler exists."""
    cxx = find_cxx()
    if cxx is None:
        raise RuntimeError("no C++20 compiler found (set CXX, or install g++ >= 10 / clang++ >= 12)")
    kernels = Path(kernels) if kernels is not None else KERNELS
    flags = [
        opt,
        "-g",
        "-std=c++20",
        "-pthread",
        "-fexceptions",
        "-Wall",
        "-Wno-unknown-pragmas",
        "-Wno-unused-parameter",
        f"-DEGRU_REAL={real}",
        f"-DEGRU_WSTORE={wstore}",
        f"-DEGRU_UNITS={units}",
        f"-DEGRU_HOST_SLOTS={SLOTS}",
        *SANITIZERS[sanitize],
    ]
    flags += ["-DEGRU_HOST_MAIN"] if replay else ["-shared", "-fPIC"]
    flags += ["-DEGRU_HOST_BARRIER_TEST"] if barrier_test else []
    key = _hash_sources(kernels, flags, cxx)
    name = (
        f"egru_{real}_w{wstore}_u{units}{'_' + sanitize if sanitize else ''}{'_replay' if replay else ''}"
        f"{'_bt' if barrier_test else ''}"
    )
    out = build_dir() / f"{name}-{key}{'' if replay else '.so'}"
    with _LOCK:
        if out.exists():
            return out
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(out.name + f".tmp{os.getpid()}")
        cmd = [cxx[0], *flags, "-I", str(HERE), "-I", str(kernels), str(HERE / "host_runtime.cpp"), "-o", str(tmp)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"host build failed: {' '.join(cmd)}\n{proc.stdout}{proc.stderr}")
        os.replace(tmp, out)
    return out


def kernel_params(name: str, kernels: Optional[Path] = None) -> List[Tuple[str, str]]:
    """``(name, kind)`` of every parameter of ``extern "C" __global__`` kernel ``name``,
    kind ``ptr`` / ``int`` / ``real``, parsed from the ``.cu`` source."""
    from kernel_cases import kernel_params as parse

    return parse(name, ((Path(kernels) if kernels else KERNELS) / f"{name}.cu").read_text())


class HostLaunchRefused(RuntimeError):
    """The launch was refused before any thread ran (like a CUDA launch error)."""


class HostKernelError(RuntimeError):
    """A kernel failed while running (hang, warp-intrinsic misuse...): never a reason to fall back."""


class HostKernels:
    """One host-compiled variant (shared library); :meth:`launch` runs a kernel."""

    _loaded: Dict[str, "HostKernels"] = {}

    def __init__(self, path: Path, kernels: Optional[Path] = None):
        self.path = path
        self.lib = ctypes.CDLL(str(path))
        self.lib.egru_host_launch.restype = ctypes.c_int
        self.lib.egru_host_launch.argtypes = [
            ctypes.c_char_p,
            ctypes.c_int,
            ctypes.c_int,
            ctypes.c_int,
            ctypes.POINTER(ctypes.c_uint64),
            ctypes.c_char_p,
            ctypes.c_int,
        ]
        self.params = {n: kernel_params(n, kernels) for n in ("egru_forward", "egru_backward")}
        for n, ps in self.params.items():
            got = self.lib.egru_host_nargs(n.encode())
            assert got == len(ps), f"{n}: compiled with {got} parameters, source parses {len(ps)}"
        self.slots = self.lib.egru_host_slots()

    @classmethod
    def get(cls, real: str, wstore: int, units: int, **kw) -> "HostKernels":
        path = build(real, wstore, units, **kw)
        key = str(path)
        if key not in cls._loaded:
            cls._loaded[key] = cls(path, kw.get("kernels"))
        return cls._loaded[key]

    @staticmethod
    def encode(named: list, params: List[Tuple[str, str]], real: str) -> List[int]:
        """The 64-bit argument words; checks names and C types against the kernel signature."""
        names = [n for n, _ in named]
        want = [n for n, _ in params]
        if names != want:
            raise AssertionError(f"launcher arguments {names} differ from the kernel parameters {want}")
        rt = np.float64 if real == "double" else np.float32
        words = []
        for (n, v), (_, kind) in zip(named, params):
            expect = {"ptr": np.uint64, "int": np.int32, "real": rt}[kind]
            if type(v) is not expect:
                raise AssertionError(f"argument {n}: {kind} must be passed as {expect.__name__}, got {type(v)}")
            if kind == "ptr":
                words.append(int(v))
            elif kind == "int":
                words.append(int(v) & 0xFFFFFFFFFFFFFFFF)
            else:
                words.append(struct.unpack("<Q", struct.pack("<d", float(v)))[0])
        return words

    def launch(self, name: str, grid: int, words: List[int], cooperative: bool) -> None:
        arr = (ctypes.c_uint64 * len(words))(*words)
        err = ctypes.create_string_buffer(4096)
        rc = self.lib.egru_host_launch(name.encode(), grid, int(cooperative), len(words), arr, err, len(err))
        if rc != 0:
            refused = rc == 2
            raise (HostLaunchRefused if refused else HostKernelError)(
                f"host launch of {name} (grid {grid}, cooperative={cooperative}) failed: "
                f"{err.value.decode(errors='replace')}"
            )


@dataclass
class _HostKernelRef:
    name: str
    real: str
    wstore: int
    units: int
    host: HostKernels


@dataclass
class HostLauncher(_cupy.CupyLauncher):
    """:class:`CupyLauncher` running the host-compiled kernels on CPU tensors.

    Args:
        mode, dense: as for :class:`CupyLauncher` (environment overrides apply too).
        sms: multiprocessor count reported to the launcher (drives ``_choose_units``).
        coresident: co-resident block limit reported to the launcher (grid cap of persistent
            launches; above :data:`SLOTS` the cooperative launch fails like on a GPU).
        kernels: directory of the kernel sources (default: the package's ``snntorch_egru/cuda/kernels/``).
        sanitize: ``None``, or build the shared library with ``"address"`` (needs the ASan
            runtime preloaded; use the replay executable instead).
        record: directory; every launch is also written there (inputs and outputs of every
            buffer) for :func:`replay`.
    """

    sms: int = 4
    coresident: int = SLOTS
    _fallback_errors = (HostLaunchRefused,)  # on a GPU, execution errors surface later, not at launch
    kernels: Optional[Path] = None
    sanitize: Optional[str] = None
    record: Optional[Path] = None
    launches: list = field(default_factory=list)
    kernels_used: list = field(default_factory=list)

    def _setup(self, ref: torch.Tensor, store: torch.dtype):
        if ref.device.type != "cpu":
            raise ValueError(f"HostLauncher runs on CPU tensors, got {ref.device}")
        real = "double" if ref.dtype == torch.float64 else "float"
        wstore = {torch.float16: 1, torch.bfloat16: 2}.get(store, 0)
        mode = os.environ.get("SNNTORCH_EGRU_CUPY_LAUNCH", self.mode)
        if mode not in _cupy.LAUNCH_MODES:
            raise ValueError(f"launch mode must be one of {_cupy.LAUNCH_MODES}, got {mode!r}")
        if mode == "auto":
            mode = "persistent"  # the host "device" supports cooperative launches
        fake_cp = types.SimpleNamespace(cuda=types.SimpleNamespace(Device=lambda d: contextlib.nullcontext()))
        return fake_cp, 0, real, wstore, mode, self.sms, contextlib.nullcontext()

    def _coresident(self, kernel, sms: int) -> int:  # type: ignore[override]
        return self.coresident

    def forward(self, cfg, t):  # remembers the tensors for recording
        self._t = t
        return super().forward(cfg, t)

    def backward(self, cfg, t):
        self._t = t
        return super().backward(cfg, t)

    def _kernel(self, name: str, real: str, wstore: int, units: int):
        host = HostKernels.get(real, wstore, units, kernels=self.kernels, sanitize=self.sanitize)
        ref = _HostKernelRef(name, real, wstore, units, host)
        self.kernels_used.append(ref)
        return ref

    def _run(self, kern, grid: int, named: list, cooperative: bool = False) -> None:
        words = HostKernels.encode(named, kern.host.params[kern.name], kern.real)
        if cooperative and grid > kern.host.slots:  # like cudaErrorCooperativeLaunchTooLarge
            kern.host.launch(kern.name, grid, words, cooperative)  # raises
        self.launches.append((kern.name, grid, cooperative, dict(named)))
        if self.record is not None:
            bufs = self._buffers(named)
            before = {p: t.clone() for p, t in bufs.items()}
        kern.host.launch(kern.name, grid, words, cooperative)
        if self.record is not None:
            self._write_record(kern, grid, cooperative, named, bufs, before)

    # ---- recording for the sanitizer replay
    def _buffers(self, named: list) -> Dict[int, torch.Tensor]:
        by_ptr = {v.data_ptr(): v for v in self._t.values() if isinstance(v, torch.Tensor)}
        out = {}
        for n, v in named:
            if not isinstance(v, np.uint64) or int(v) == 0:
                continue
            p = int(v)
            if n == "barrier":
                out[p] = torch.from_numpy(np.ctypeslib.as_array((ctypes.c_uint32 * 1).from_address(p)))
            elif p in by_ptr:
                out[p] = by_ptr[p]
            else:
                raise NotImplementedError(f"recording: argument {n} is not a launcher tensor (dense mode?)")
        return out

    def _write_record(self, kern, grid, cooperative, named, bufs, before) -> None:
        rec = Path(self.record)
        rec.mkdir(parents=True, exist_ok=True)
        ptrs = list(bufs)
        parts = [
            b"EGRULAUNCH1\n",
            struct.pack("<I", len(kern.name)),
            kern.name.encode(),
            struct.pack("<iii", grid, int(cooperative), len(named)),
        ]
        for n, v in named:
            if isinstance(v, np.uint64) and int(v) in bufs:
                parts.append(struct.pack("<BQ", 1, ptrs.index(int(v))))
            else:
                parts.append(struct.pack("<BQ", 0, HostKernels.encode([(n, v)], [(n, _kind(v))], kern.real)[0]))
        parts.append(struct.pack("<I", len(ptrs)))
        for p in ptrs:
            b0 = before[p].contiguous().view(torch.uint8).numpy().tobytes()
            b1 = bufs[p].contiguous().view(torch.uint8).numpy().tobytes()
            parts += [struct.pack("<Q", len(b0)), b0, b1]
        (rec / f"launch_{len(list(rec.glob('launch_*.bin'))):04d}.bin").write_bytes(b"".join(parts))


def _kind(v) -> str:
    return "ptr" if isinstance(v, np.uint64) else ("int" if isinstance(v, np.int32) else "real")


def replay(exe: Path, record: Path, timeout: float = 600, env: Optional[dict] = None) -> subprocess.CompletedProcess:
    """Run the replay executable over every recorded launch in ``record``."""
    files = sorted(str(p) for p in Path(record).glob("launch_*.bin"))
    assert files, f"no launch records in {record}"
    e = dict(os.environ, **(env or {}))
    return subprocess.run([str(exe), *files], capture_output=True, text=True, timeout=timeout, env=e)
