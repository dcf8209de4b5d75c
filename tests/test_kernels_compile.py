"""CI check of the CUDA kernel sources without a GPU: every ``kernels/*.cu`` must
compile for sm_80 and sm_90 through NVRTC (or nvcc) with no error and no warning, to
PTX and to cubin (ptxas) within the register/spill budget, and the sources must be
reachable from the installed package."""

from __future__ import annotations

from pathlib import Path

import pytest

from snntorch_egru.cuda._nvrtc import (REGISTER_BUDGET, CompileError, Resources, check_budget, find_compilers,
                                      format_table, nvcc_compiler, parse_ptxas_info, resource_table)
from snntorch_egru.cuda._sources import VARIANTS, kernel_dir, kernel_files, kernel_source, variant_options

ROOT = Path(__file__).resolve().parents[1]
COMPILERS = find_compilers()
ARCHS = (80, 90)
needs_compiler = pytest.mark.skipif(not COMPILERS, reason="no NVRTC library and no nvcc found")


def test_sources_found_and_self_contained():
    names = sorted(f.name for f in kernel_files())
    assert names == ["egru_backward.cu", "egru_forward.cu"]
    # the package sees exactly the files of the top-level kernels/ directory
    assert sorted(p.name for p in (ROOT / "kernels").glob("*.cu")) == names
    assert (kernel_dir() / "egru_forward.cu").read_text() == (ROOT / "kernels" / "egru_forward.cu").read_text()
    for name in names:
        src = kernel_source(name)
        assert '#include "' not in src  # local headers inlined
        assert src.count("#define EGRU_COMMON_CUH") == 1
        assert f'extern "C" __global__' in src


def test_wheel_ships_kernels():
    """pyproject.toml lists the kernel sources as package data of snntorch_egru.cuda.kernels."""
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert "*.cu" in cfg["package-data"]["snntorch_egru.cuda.kernels"]
    assert "*.cuh" in cfg["package-data"]["snntorch_egru.cuda.kernels"]
    link = ROOT / "snntorch_egru" / "cuda" / "kernels"
    assert link.resolve() == (ROOT / "kernels").resolve()


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
                ptx = compiler.compile_ptx(kernel_source(f.name), f.name, arch,
                                           variant_options(real, wstore, units))
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
    assert variant_options("float", 2, 64) == ("-DEGRU_REAL=float", "-DEGRU_WSTORE=2", "-DEGRU_UNITS=64",
                                               "-std=c++14")
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
