"""CI check of the CUDA kernel sources without a GPU: every ``snntorch_egru/cuda/kernels/*.cu`` must
compile for sm_80 and sm_90 through NVRTC (or nvcc) with no error and no warning, to
PTX and to cubin (ptxas) within the register/spill budget, and the sources must be
reachable from the installed package."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from snntorch_egru.cuda._nvrtc import (
    REGISTER_BUDGET,
    CompileError,
    Resources,
    check_budget,
    find_compilers,
    format_table,
    nvcc_compiler,
    parse_ptxas_info,
    resource_table,
)
from snntorch_egru.cuda._sources import VARIANTS, kernel_dir, kernel_files, kernel_source, variant_options

ROOT = Path(__file__).resolve().parents[1]
COMPILERS = find_compilers()
ARCHS = (80, 90)
needs_compiler = pytest.mark.skipif(not COMPILERS, reason="no NVRTC library and no nvcc found")


def test_sources_found_and_self_contained():
    names = sorted(f.name for f in kernel_files())
    assert names == ["egru_backward.cu", "egru_forward.cu"]
    # the sources are real files of the package (no symlink, no second copy at the top level)
    kdir = ROOT / "snntorch_egru" / "cuda" / "kernels"
    assert kernel_dir() == kdir.resolve()
    assert not kdir.is_symlink() and not (ROOT / "kernels").exists()
    for name in names:
        src = kernel_source(name)
        assert '#include "' not in src  # local headers inlined
        assert src.count("#define EGRU_COMMON_CUH") == 1
        assert 'extern "C" __global__' in src


def test_pyproject_ships_kernels():
    """pyproject.toml lists the kernel sources as package data of snntorch_egru.cuda."""
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert "kernels/*.cu" in cfg["package-data"]["snntorch_egru.cuda"]
    assert "kernels/*.cuh" in cfg["package-data"]["snntorch_egru.cuda"]


@pytest.mark.slow
def test_wheel_ships_kernels_and_loader_finds_them(tmp_path):
    """A wheel built from the tree holds every .cu/.cuh, and the loader of a copy installed from
    that wheel (``pip install --target``) finds and inlines them (no source tree in sight)."""
    import subprocess
    import sys
    import zipfile

    whl_dir, target = tmp_path / "whl", tmp_path / "site"
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            str(ROOT),
            "-w",
            str(whl_dir),
        ],
        capture_output=True,
        text=True,
    )
    if run.returncode != 0:
        pytest.skip(f"cannot build a wheel here: {run.stderr[-500:]}")
    (whl,) = whl_dir.glob("*.whl")
    shipped = {n for n in zipfile.ZipFile(whl).namelist() if n.startswith("snntorch_egru/cuda/kernels/")}
    expected = {f"snntorch_egru/cuda/kernels/{p.name}" for p in (ROOT / "snntorch_egru/cuda/kernels").glob("*.cu*")}
    assert expected and shipped == expected
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(whl)],
        check=True,
        capture_output=True,
    )
    code = (
        "import snntorch_egru.cuda._sources as s; d = s.kernel_dir(); src = s.kernel_source('egru_backward.cu'); "
        "print(d); assert 'EGRU_COMMON_CUH' in src and 'egru_backward(' in src"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(target)
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert pathlib_under(out.stdout.strip(), target)


def pathlib_under(path: str, root: Path) -> bool:
    return Path(path).resolve().is_relative_to(root.resolve())


@needs_compiler
@pytest.mark.parametrize("compiler", COMPILERS, ids=[f"{c.kind}-{c.version}" for c in COMPILERS])
def test_every_kernel_compiles(compiler):
    """All variants with the first compiler found; the default variant with every other one."""
    print(f"\ncompiling with {compiler}")
    variants = VARIANTS if compiler == COMPILERS[0] else VARIANTS[:1]
    n = 0
    for f in kernel_files():
        for real, wstore, units in variants:
            for arch in ARCHS:
                ptx = compiler.compile_ptx(kernel_source(f.name), f.name, arch, variant_options(real, wstore, units))
                entry = f.stem  # egru_forward / egru_backward
                assert f".entry {entry}(" in ptx
                assert f".target sm_{arch}" in ptx
                n += 1
    assert n == len(kernel_files()) * len(variants) * len(ARCHS)


@needs_compiler
def test_compile_check_catches_errors_and_warnings():
    comp = COMPILERS[0]
    with pytest.raises(CompileError, match="error"):
        comp.compile_ptx('extern "C" __global__ void k(float* a) { a[0] = undefined_name; }', "bad.cu", 80)
    with pytest.raises(CompileError, match="warning"):
        comp.compile_ptx('extern "C" __global__ void k(float* a) { float* p; *p = a[0]; }', "warn.cu", 80)


@needs_compiler
def test_variant_macros_reach_the_compiler():
    """The -D options select the variant: double arithmetic appears only in the double build."""
    comp = COMPILERS[0]
    src = kernel_source("egru_forward.cu")
    ptx_f = comp.compile_ptx(src, "f.cu", 80, variant_options("float", 0, 32))
    ptx_d = comp.compile_ptx(src, "f.cu", 80, variant_options("double", 0, 32))
    assert ".f64" not in ptx_f.replace("cvt.f64", "")  # no double arithmetic in the float build
    assert "fma.rn.f64" in ptx_d or "mul.f64" in ptx_d


def test_variant_options_validation():
    assert variant_options("float", 2, 64) == ("-DEGRU_REAL=float", "-DEGRU_WSTORE=2", "-DEGRU_UNITS=64", "-std=c++14")
    with pytest.raises(ValueError, match="real must be 'float' or 'double', got 'half'"):
        variant_options("half", 0, 32)
    with pytest.raises(ValueError, match="wstore must be 0, 1 or 2"):
        variant_options("double", 1, 32)
    with pytest.raises(ValueError, match="units must be 32, 64, 128 or 256, got 48"):
        variant_options("float", 0, 48)


PTXAS_LOG = """ptxas info    : 0 bytes gmem
ptxas info    : Compiling entry function 'egru_forward' for 'sm_90'
ptxas info    : Function properties for egru_forward
    16 bytes stack frame, 12 bytes spill stores, 12 bytes spill loads
ptxas info    : Used 40 registers, used 1 barriers, 19492 bytes smem, 560 bytes cmem[0]
ptxas info    : Compiling entry function 'egru_backward' for 'sm_80'
ptxas info    : Function properties for egru_backward
    0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
ptxas info    : Used 72 registers, used 1 barriers, 588 bytes cmem[0]
"""


def test_ptxas_report_parsing_and_budget():
    fwd, bwd = parse_ptxas_info(PTXAS_LOG)
    assert fwd == Resources("egru_forward", 90, 40, 12, 12, 16, 19492)
    assert bwd == Resources("egru_backward", 80, 72, 0, 0, 0, 0)
    assert check_budget(fwd) is None  # 24 spill bytes: the forward's allowance
    assert check_budget(bwd) == f"egru_backward sm_80: 72 registers > budget {REGISTER_BUDGET}"
    spilling = Resources("egru_backward", 90, 40, 4, 4, 8, 0)
    assert check_budget(spilling) == "egru_backward sm_90: 8 spill bytes > budget 0"


@needs_compiler
def test_cubin_registers_and_spills_within_budget():
    """Every source x variant, compiled to SASS for sm_80 and sm_90 (ptxas runs): registers
    <= REGISTER_BUDGET and no spills beyond SPILL_BUDGET (the table is printed)."""
    runs = [(COMPILERS[0], VARIANTS)]
    nvcc = nvcc_compiler()
    if nvcc is not None and nvcc != COMPILERS[0]:  # the toolkit's ptxas too (when present): fp32 and fp16 storage
        runs.append((nvcc, [v for v in VARIANTS if v[0] == "float" and v[1] in (0, 1) and v[2] == 32]))
    for comp, variants in runs:
        rows = resource_table(comp, ARCHS, variants)
        print(f"\n{comp}\n{format_table(rows)}")
        assert len(rows) == len(kernel_files()) * len(variants) * len(ARCHS)
        assert {r.arch for _, r, _ in rows} == set(ARCHS)
        over = [bad for *_, bad in rows if bad is not None]
        assert not over, "\n".join(over) + "\n" + format_table(rows)
