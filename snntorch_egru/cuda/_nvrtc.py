"""Driver-free compilation of the kernel sources (NVRTC through ctypes, or nvcc).

Used by the CI compile check and by ``python -m snntorch_egru.cuda``: it needs
no GPU, no CUDA driver and no CuPy, only an NVRTC shared library (the
``nvidia-cuda-nvrtc-cu12`` / ``nvidia-cuda-nvrtc`` wheels, or a CUDA toolkit)
or, failing that, ``nvcc``.
"""

from __future__ import annotations

import ctypes
import glob
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence

__all__ = ["Compiler", "find_compilers", "CompileError"]


class CompileError(RuntimeError):
    """A kernel source failed to compile (or compiled with warnings)."""


@dataclass(frozen=True)
class Compiler:
    """One way of compiling CUDA C to PTX: an NVRTC library or an nvcc binary."""

    kind: str  # "nvrtc" or "nvcc"
    path: str
    version: str

    def __str__(self) -> str:
        return f"{self.kind} {self.version} ({self.path})"

    def compile_ptx(self, source: str, name: str, arch: int, options: Sequence[str] = ()) -> str:
        """Compile ``source`` for ``compute_<arch>`` and return the PTX.

        Raises :class:`CompileError` with the compiler log on any error or warning.
        """
        if self.kind == "nvrtc":
            return _nvrtc_compile(self.path, source, name, arch, options)
        return _nvcc_compile(self.path, source, name, arch, options)


def _nvrtc_candidates() -> List[str]:
    found: List[str] = []
    roots = [p for p in sys.path if p and os.path.isdir(p)]
    patterns = ["nvidia/cuda_nvrtc/lib/libnvrtc.so*", "nvidia/cu1*/lib/libnvrtc.so*",
                "nvidia/cuda_nvrtc/bin/nvrtc64_*.dll", "nvidia/cu1*/bin/nvrtc64_*.dll"]
    for root in roots:
        for pat in patterns:
            found.extend(sorted(glob.glob(os.path.join(root, pat))))
    cuda_home = os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH") or "/usr/local/cuda"
    found.extend(sorted(glob.glob(os.path.join(cuda_home, "lib64", "libnvrtc.so*"))))
    out, seen = [], set()
    for f in found:
        base = os.path.basename(f)
        if "builtins" in base or ".alt." in base:
            continue
        real = os.path.realpath(f)
        if real not in seen:
            seen.add(real)
            out.append(f)
    return out


def _load_nvrtc(path: str) -> ctypes.CDLL:
    lib = ctypes.CDLL(path)
    lib.nvrtcGetErrorString.restype = ctypes.c_char_p
    return lib


def _nvrtc_version(path: str) -> Optional[str]:
    try:
        lib = _load_nvrtc(path)
        major, minor = ctypes.c_int(), ctypes.c_int()
        if lib.nvrtcVersion(ctypes.byref(major), ctypes.byref(minor)) != 0:
            return None
        return f"{major.value}.{minor.value}"
    except OSError:
        return None


def _nvrtc_compile(path: str, source: str, name: str, arch: int, options: Sequence[str]) -> str:
    lib = _load_nvrtc(path)
    prog = ctypes.c_void_p()
    rc = lib.nvrtcCreateProgram(ctypes.byref(prog), source.encode(), name.encode(), 0, None, None)
    if rc != 0:
        raise CompileError(f"nvrtcCreateProgram failed: {lib.nvrtcGetErrorString(rc).decode()}")
    try:
        opts = [f"--gpu-architecture=compute_{arch}", *options]
        arr = (ctypes.c_char_p * len(opts))(*[o.encode() for o in opts])
        rc = lib.nvrtcCompileProgram(prog, len(opts), arr)
        size = ctypes.c_size_t()
        lib.nvrtcGetProgramLogSize(prog, ctypes.byref(size))
        buf = ctypes.create_string_buffer(size.value)
        lib.nvrtcGetProgramLog(prog, buf)
        log = buf.value.decode(errors="replace").strip()
        if rc != 0 or "warning" in log.lower() or "error" in log.lower():
            raise CompileError(f"NVRTC ({path}) failed on {name} for compute_{arch} with {opts}:\n{log}")
        lib.nvrtcGetPTXSize(prog, ctypes.byref(size))
        ptx = ctypes.create_string_buffer(size.value)
        lib.nvrtcGetPTX(prog, ptx)
        return ptx.value.decode()
    finally:
        lib.nvrtcDestroyProgram(ctypes.byref(prog))


def _nvcc_compile(path: str, source: str, name: str, arch: int, options: Sequence[str]) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / name
        src.write_text(source)
        out = Path(tmp) / "out.ptx"
        cmd = [path, f"-arch=sm_{arch}", "--ptx", "-Werror", "all-warnings", *options, str(src), "-o", str(out)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        log = (proc.stdout + proc.stderr).strip()
        if proc.returncode != 0 or "warning" in log.lower():
            raise CompileError(f"nvcc failed on {name} for sm_{arch}: {' '.join(cmd)}\n{log}")
        return out.read_text()


def find_compilers() -> List[Compiler]:
    """Every usable NVRTC library (one per CUDA major version found), else nvcc, else ``[]``."""
    comps: List[Compiler] = []
    majors = set()
    for path in _nvrtc_candidates():
        ver = _nvrtc_version(path)
        if ver is None or ver.split(".")[0] in majors:
            continue
        majors.add(ver.split(".")[0])
        comps.append(Compiler("nvrtc", path, ver))
    if comps:
        return comps
    cuda_home = os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH") or "/usr/local/cuda"
    nvcc = shutil.which("nvcc") or (os.path.join(cuda_home, "bin", "nvcc")
                                    if os.path.exists(os.path.join(cuda_home, "bin", "nvcc")) else None)
    if nvcc:
        try:
            ver = subprocess.run([nvcc, "--version"], capture_output=True, text=True).stdout.strip().splitlines()[-1]
        except (OSError, IndexError):
            ver = "unknown"
        comps.append(Compiler("nvcc", nvcc, ver))
    return comps
