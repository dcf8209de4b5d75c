"""CI check of the CUDA kernel sources without a GPU: every ``kernels/*.cu`` must
compile for sm_80 and sm_90 through NVRTC (or nvcc) with no error and no warning,
and the sources must be reachable from the installed package."""

from __future__ import annotations

from pathlib import Path

import pytest

from snntorch_egru.cuda._nvrtc import CompileError, find_compilers
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
