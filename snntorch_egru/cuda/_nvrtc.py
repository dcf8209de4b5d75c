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
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence

__all__ = [
    "Compiler",
    "find_compilers",
    "nvcc_compiler",
    "CompileError",
    "Resources",
    "parse_ptxas_info",
    "REGISTER_BUDGET",
    "SPILL_BUDGET",
    "check_budget",
    "resource_table",
    "format_table",
]

#: Registers per thread allowed for every kernel variant (256-thread blocks: 64 registers
#: still give 4 co-resident blocks per SM; the plain builds use 32-48).
REGISTER_BUDGET = 64
#: Spill bytes (stores + loads) allowed per kernel. The backward's hot loop is the recurrent
#: product: no spill at all. The forward may spill a few bytes in its prologue/epilogue
#: (ptxas does so for fp16/bf16 storage on sm_90: 12 bytes, outside the step loop).
SPILL_BUDGET = {"egru_backward": 0, "egru_forward": 24}


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

    def compile_cubin(self, source: str, name: str, arch: int, options: Sequence[str] = ()) -> tuple:
        """Compile ``source`` to SASS for ``sm_<arch>`` (ptxas runs) and return
        ``(cubin bytes, [Resources of every kernel])``. Raises :class:`CompileError`."""
        if self.kind == "nvrtc":
            cubin, log = _nvrtc_compile(self.path, source, name, arch, options, cubin=True)
        else:
            cubin, log = _nvcc_compile(self.path, source, name, arch, options, cubin=True)
        res = parse_ptxas_info(log)
        if not res:
            raise CompileError(f"{self}: no ptxas resource report for {name} sm_{arch}:\n{log}")
        return cubin, res


@dataclass(frozen=True)
class Resources:
    """ptxas resource usage of one kernel in one cubin."""

    kernel: str
    arch: int
    registers: int
    spill_stores: int
    spill_loads: int
    stack: int
    smem: int


_PTXAS_ENTRY = re.compile(r"Compiling entry function '(\w+)' for 'sm_(\d+)'")
_PTXAS_PROPS = re.compile(r"Function properties for (\w+)")
_PTXAS_SPILL = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")
_PTXAS_USED = re.compile(r"Used (\d+) registers(?:.*?(\d+) bytes smem)?")


def parse_ptxas_info(log: str) -> List[Resources]:
    """The kernels' resource usage from a ``ptxas -v`` log (NVRTC ``--ptxas-options=-v`` or nvcc)."""
    out: List[Resources] = []
    cur: dict = {}
    for line in log.splitlines():
        if m := _PTXAS_ENTRY.search(line):
            cur = {"kernel": m.group(1), "arch": int(m.group(2)), "stack": 0, "spill_stores": 0, "spill_loads": 0}
        elif (m := _PTXAS_SPILL.search(line)) and cur:
            cur.update(stack=int(m.group(1)), spill_stores=int(m.group(2)), spill_loads=int(m.group(3)))
        elif (m := _PTXAS_USED.search(line)) and cur:
            out.append(Resources(registers=int(m.group(1)), smem=int(m.group(2) or 0), **cur))
            cur = {}
    return out


def check_budget(res: Resources) -> Optional[str]:
    """``None`` when ``res`` is within :data:`REGISTER_BUDGET` / :data:`SPILL_BUDGET`, else why not."""
    spill = res.spill_stores + res.spill_loads
    limit = SPILL_BUDGET.get(res.kernel, 0)
    if res.registers > REGISTER_BUDGET:
        return f"{res.kernel} sm_{res.arch}: {res.registers} registers > budget {REGISTER_BUDGET}"
    if spill > limit:
        return f"{res.kernel} sm_{res.arch}: {spill} spill bytes > budget {limit}"
    return None


def _nvrtc_candidates() -> List[str]:
    found: List[str] = []
    roots = [p for p in sys.path if p and os.path.isdir(p)]
    patterns = [
        "nvidia/cuda_nvrtc/lib/libnvrtc.so*",
        "nvidia/cu1*/lib/libnvrtc.so*",
        "nvidia/cuda_nvrtc/bin/nvrtc64_*.dll",
        "nvidia/cu1*/bin/nvrtc64_*.dll",
    ]
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


def _nvrtc_compile(path: str, source: str, name: str, arch: int, options: Sequence[str], cubin: bool = False):
    lib = _load_nvrtc(path)
    prog = ctypes.c_void_p()
    rc = lib.nvrtcCreateProgram(ctypes.byref(prog), source.encode(), name.encode(), 0, None, None)
    if rc != 0:
        raise CompileError(f"nvrtcCreateProgram failed: {lib.nvrtcGetErrorString(rc).decode()}")
    try:
        opts = (
            [f"--gpu-architecture=sm_{arch}", "--ptxas-options=-v"] if cubin else [f"--gpu-architecture=compute_{arch}"]
        ) + list(options)
        arr = (ctypes.c_char_p * len(opts))(*[o.encode() for o in opts])
        rc = lib.nvrtcCompileProgram(prog, len(opts), arr)
        size = ctypes.c_size_t()
        lib.nvrtcGetProgramLogSize(prog, ctypes.byref(size))
        buf = ctypes.create_string_buffer(size.value)
        lib.nvrtcGetProgramLog(prog, buf)
        log = buf.value.decode(errors="replace").strip()
        diag = "\n".join(ln for ln in log.splitlines() if not ln.lstrip().startswith("ptxas info"))
        if rc != 0 or "warning" in diag.lower() or "error" in diag.lower():
            raise CompileError(f"NVRTC ({path}) failed on {name} for {opts[0]} with {opts}:\n{log}")
        if cubin:
            lib.nvrtcGetCUBINSize(prog, ctypes.byref(size))
            buf = ctypes.create_string_buffer(size.value)
            lib.nvrtcGetCUBIN(prog, buf)
            return buf.raw, log
        lib.nvrtcGetPTXSize(prog, ctypes.byref(size))
        ptx = ctypes.create_string_buffer(size.value)
        lib.nvrtcGetPTX(prog, ptx)
        return ptx.value.decode()
    finally:
        lib.nvrtcDestroyProgram(ctypes.byref(prog))


def _nvcc_compile(path: str, source: str, name: str, arch: int, options: Sequence[str], cubin: bool = False):
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / name
        src.write_text(source)
        out = Path(tmp) / ("out.cubin" if cubin else "out.ptx")
        kind = ["-cubin", "-Xptxas", "-v"] if cubin else ["--ptx"]
        cmd = [path, f"-arch=sm_{arch}", *kind, "-Werror", "all-warnings", *options, str(src), "-o", str(out)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        log = (proc.stdout + proc.stderr).strip()
        diag = "\n".join(ln for ln in log.splitlines() if not ln.lstrip().startswith("ptxas info"))
        if proc.returncode != 0 or "warning" in diag.lower():
            raise CompileError(f"nvcc failed on {name} for sm_{arch}: {' '.join(cmd)}\n{log}")
        return (out.read_bytes(), log) if cubin else out.read_text()


def nvcc_compiler() -> Optional[Compiler]:
    """nvcc from ``PATH`` / ``$CUDA_HOME``, or ``None``."""
    cuda_home = os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH") or "/usr/local/cuda"
    nvcc = shutil.which("nvcc") or (
        os.path.join(cuda_home, "bin", "nvcc") if os.path.exists(os.path.join(cuda_home, "bin", "nvcc")) else None
    )
    if not nvcc:
        return None
    try:
        ver = subprocess.run([nvcc, "--version"], capture_output=True, text=True).stdout.strip().splitlines()[-1]
    except (OSError, IndexError):
        ver = "unknown"
    return Compiler("nvcc", nvcc, ver)


def resource_table(
    compiler: Compiler, archs: Sequence[int] = (80, 90), variants: Optional[Sequence] = None
) -> List[tuple]:
    """``(variant, Resources, problem or None)`` of every kernel source x variant (default: all of
    ``VARIANTS``) x arch, compiled to cubin."""
    from ._sources import VARIANTS, kernel_files, kernel_source, variant_options

    rows = []
    for f in kernel_files():
        for v in VARIANTS if variants is None else variants:
            for arch in archs:
                _, res = compiler.compile_cubin(kernel_source(f.name), f.name, arch, variant_options(*v))
                rows += [(v, r, check_budget(r)) for r in res]
    return rows


def format_table(rows: List[tuple]) -> str:
    """Markdown table of :func:`resource_table` rows."""
    lines = [
        "| kernel | real | wstore | units | arch | registers | spill st/ld (B) | stack (B) | smem (B) | budget |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for (real, wstore, units), r, bad in rows:
        lines.append(
            f"| {r.kernel} | {real} | {('real', 'fp16', 'bf16')[wstore]} | {units} | sm_{r.arch} | "
            f"{r.registers} | {r.spill_stores}/{r.spill_loads} | {r.stack} | {r.smem} | "
            f"{'ok' if bad is None else 'OVER: ' + bad} |"
        )
    return "\n".join(lines)


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
    nvcc = nvcc_compiler()
    return [nvcc] if nvcc else []
