"""Build script for the optional native helper of snntorch-egru (everything else is in pyproject.toml).

``snntorch_egru._native._egru_native`` is a small C library (event gathers and the whole
forward time loop of the CPU path) compiled at install time. It is *optional*: without a
C compiler the install still succeeds, and the package warns once at first use that the
pure-PyTorch path (same numbers, slower) is used. No compiler is ever run at import or
run time.

Flags are portable (no ``-march=native``): on x86-64 Linux with GCC the hot loops carry
``target_clones`` for x86-64-v3 (AVX2/FMA) and the baseline. ``SNNTORCH_EGRU_NATIVE_CFLAGS``
adds flags (e.g. ``-fsanitize=address`` for ``tools/asan_tests.sh``).
"""

from __future__ import annotations

import os
import shlex

from setuptools import Extension, setup

# -fno-trapping-math: FP exceptions are never enabled, and it lets GCC if-convert (vectorize) the gate loops
extra = ["-O3", "-pthread", "-fopenmp-simd", "-std=c11", "-fno-strict-aliasing", "-fno-trapping-math"]
extra += shlex.split(os.environ.get("SNNTORCH_EGRU_NATIVE_CFLAGS", ""))
link = shlex.split(os.environ.get("SNNTORCH_EGRU_NATIVE_LDFLAGS", "")) + ["-lm", "-pthread", "-ldl"]

setup(
    ext_modules=[
        Extension(
            "snntorch_egru._native._egru_native",
            sources=["snntorch_egru/_native/egru_native.c"],
            extra_compile_args=extra,
            extra_link_args=link,
            optional=True,  # no compiler: the install still works (pure-torch fallback, warned at use)
        )
    ]
)
