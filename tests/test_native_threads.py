"""The native helper's worker thread under ThreadSanitizer: ``tests/harness/native_pool.c`` drives
``egru_step`` and ``egru_fwd`` from three threads at once with steps cut into parts on two threads, checks
the results against one part on one thread bit for bit, and ThreadSanitizer must report no data race."""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _python_flags() -> tuple[list[str], list[str]]:
    inc = ["-I" + sysconfig.get_paths()["include"]]
    libdir = sysconfig.get_config_var("LIBDIR") or ""
    ver = sysconfig.get_config_var("LDVERSION") or f"{sys.version_info.major}.{sys.version_info.minor}"
    return inc, [f"-L{libdir}", f"-Wl,-rpath,{libdir}", f"-lpython{ver}", "-lm", "-ldl"]


def test_worker_thread_is_race_free_and_exact_under_threadsanitizer(tmp_path):
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        pytest.skip("no C compiler")
    inc, libs = _python_flags()
    exe = tmp_path / "native_pool"
    cmd = [cc, "-O1", "-g", "-fsanitize=thread", "-pthread", "-std=c11", "-fopenmp-simd", "-fno-trapping-math",
           "-DEGRU_NO_CLONES", *inc, "-include", str(ROOT / "snntorch_egru/_native/egru_native.c"),
           str(ROOT / "tests/harness/native_pool.c"), "-o", str(exe), *libs]  # fmt: skip
    build = subprocess.run(cmd, capture_output=True, text=True)
    if build.returncode != 0:
        if "sanitize" in build.stderr or "tsan" in build.stderr or "python" in build.stderr:
            pytest.skip(f"cannot build the ThreadSanitizer harness here: {build.stderr[-300:]}")
        raise AssertionError(build.stderr)
    env = {"TSAN_OPTIONS": "halt_on_error=1 exitcode=66 report_signal_unsafe=0", "PATH": "/usr/bin:/bin"}
    run = subprocess.run([str(exe)], capture_output=True, text=True, timeout=300, env=env)
    assert "ThreadSanitizer" not in run.stderr, run.stderr[-3000:]
    assert run.returncode == 0, run.stdout + run.stderr[-2000:]
    assert run.stdout.strip() == "fails 0 stale_steps 50"
