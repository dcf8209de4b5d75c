"""The host-compiled CUDA kernels under ThreadSanitizer and AddressSanitizer+UBSan (clean on
small cases recorded through the launcher), and the mutation test: injected kernel bugs
(wrong gate offset, wrong time index, removed block / grid barriers) must each be caught."""

from __future__ import annotations

import pytest
from harness.hostkernels import HostKernelError, HostLauncher, build, replay, require, require_cxx, sanitizer_works
from harness.mutants import MUTANTS, make_mutant
from kernel_cases import assert_match, make_call, outputs_and_grads

from snntorch_egru import backends
from snntorch_egru import cuda as K

SAN_ENV = {
    "TSAN_OPTIONS": "halt_on_error=1 exitcode=66 report_signal_unsafe=0",
    "ASAN_OPTIONS": "detect_leaks=1 abort_on_error=0 exitcode=67",
    "UBSAN_OPTIONS": "print_stacktrace=1",
    "EGRU_HOST_TIMEOUT": "20",
}
SAN_WORDS = ("ThreadSanitizer", "AddressSanitizer", "LeakSanitizer", "runtime error")


@pytest.fixture(autouse=True)
def _cxx():
    require_cxx()


def _value_case():
    return make_call(T=4, B=3, H=40, seed=11)


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    """Launch records (inputs and results of every buffer) of two small cases run through the
    launcher with the plain host build, each checked against the float64 reference first:
    persistent (H = 300: several compaction rounds, grid 3 < 10 items, zoneout mask) and
    step mode (H = 37, zoneout p)."""
    if not sanitizer_works("thread") and not sanitizer_works("address"):
        require(False, "the C++ compiler has no working -fsanitize=thread/address")
    rec = tmp_path_factory.mktemp("launch-records")
    cases = [
        (
            dict(mode="persistent", sms=16, coresident=3),
            make_call(T=3, B=1, H=300, seed=21, w_scale=0.1, zoneout="mask"),
        ),
        (dict(mode="step", sms=4, coresident=3), make_call(T=2, B=2, H=37, seed=22, zoneout="p")),
    ]
    for kw, call in cases:
        launcher = HostLauncher(dense="off", record=rec, **kw)
        got = outputs_and_grads(call, lambda c: K.run(c, launcher=launcher))
        assert_match(outputs_and_grads(call, backends.get_backend("reference").run), got, rtol=1e-10, atol=1e-12)
    return rec


@pytest.mark.parametrize("kind", ["thread", "address"])
def test_sanitizer_clean(recording, kind):
    require(sanitizer_works(kind), f"-fsanitize={kind} does not work with this compiler")
    exe = build(sanitize=kind, replay=True)
    proc = replay(exe, recording, env=SAN_ENV)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0 and not any(w in log for w in SAN_WORDS), log[-6000:]
    assert "replayed 7 launch(es): ok" in proc.stdout


@pytest.mark.parametrize("mutant", MUTANTS, ids=[m.name for m in MUTANTS])
def test_injected_kernel_bug_is_caught(mutant, tmp_path, request, monkeypatch):
    kdir = make_mutant(mutant, tmp_path / "kernels")
    if mutant.caught_by == "values":  # the matrix' float64 comparison fails
        launcher = HostLauncher(mode="persistent", dense="off", sms=4, coresident=3, kernels=kdir)
        call = _value_case()
        ref = outputs_and_grads(call, backends.get_backend("reference").run)
        got = outputs_and_grads(call, lambda c: K.run(c, launcher=launcher))
        with pytest.raises(AssertionError):
            assert_match(ref, got, rtol=1e-10, atol=1e-12)
    elif mutant.caught_by == "hang":  # the watchdog reports the stuck grid barrier
        monkeypatch.setenv("EGRU_HOST_TIMEOUT", "5")
        launcher = HostLauncher(mode="persistent", dense="off", sms=4, coresident=3, kernels=kdir)
        with pytest.raises(HostKernelError, match="hang: "):
            K.run(_value_case(), launcher=launcher)
    else:  # ThreadSanitizer reports the race the missing barrier opens
        require(sanitizer_works("thread"), "-fsanitize=thread does not work with this compiler")
        recording = request.getfixturevalue("recording")  # made with the unmodified kernels
        exe = build(sanitize="thread", replay=True, kernels=kdir)
        proc = replay(exe, recording, env=SAN_ENV)
        assert proc.returncode != 0
        assert "WARNING: ThreadSanitizer: data race" in proc.stderr, (proc.stdout + proc.stderr)[-3000:]
