"""The real CUDA kernels (snntorch_egru/cuda/kernels/*.cu, compiled unchanged as C++20 with the host shim of
tests/harness) executed on the CPU through the package's own launcher, against the float64
reference: outputs, states and every gradient."""

from __future__ import annotations

import pytest
import torch
from harness.hostkernels import HostLauncher, require_cxx
from kernel_cases import assert_match, calibrated_call, cast_call, make_call, module_run_vs_reference, outputs_and_grads

from snntorch_egru import backends
from snntorch_egru import cuda as K
from snntorch_egru.surrogate import EGRUSurrogate, heaviside


@pytest.fixture(autouse=True)
def _cxx():
    """Skip without a C++20 compiler, except in CI (CI=true), where that is a failure."""
    require_cxx()


def host_run(**kw):
    launcher = HostLauncher(**kw)
    return (lambda call: K.run(call, launcher=launcher)), launcher


def reference(call):
    return outputs_and_grads(call, backends.get_backend("reference").run)


@pytest.mark.parametrize("mode", ["persistent", "step"])
def test_host_kernels_float64_equal_reference(mode):
    call = make_call(T=4, B=3, H=40)
    run, launcher = host_run(mode=mode, dense="off", sms=4, coresident=3)
    ref = reference(call)
    assert 0.1 < ref[0][2].mean().item() < 0.6  # real activity
    assert_match(ref, outputs_and_grads(call, run), rtol=1e-12, atol=1e-12)
    coop = [c for _, _, c, _ in launcher.launches]
    assert all(coop) if mode == "persistent" else not any(coop)


MODES = [("persistent", "off"), ("step", "off"), ("step", "on")]  # (launch mode, dense)
MODE_IDS = ["persistent", "step", "dense"]


@pytest.mark.parametrize("mode,dense", MODES, ids=MODE_IDS)
@pytest.mark.parametrize("reset", ["subtract", "zero", "none"])
def test_launch_modes_and_resets(mode, dense, reset):
    """H = 40 (not a multiple of 32), B = 3, grid 3 < 6 items in the persistent forward."""
    call = make_call(T=4, B=3, H=40, reset=reset, seed=11)
    run, launcher = host_run(mode=mode, dense=dense, sms=4, coresident=3)
    ref = reference(call)
    assert 0.1 < ref[0][2].mean().item() < 0.7
    assert_match(ref, outputs_and_grads(call, run), rtol=1e-10, atol=1e-12)
    names = {n for n, *_ in launcher.launches}
    assert names == {"egru_forward", "egru_backward"}
    if mode == "persistent":
        assert [(n, g) for n, g, _, _ in launcher.launches] == [("egru_forward", 3), ("egru_backward", 3)]


@pytest.mark.parametrize("mode,dense", MODES, ids=MODE_IDS)
@pytest.mark.parametrize("zoneout", ["mask", "p"])
def test_zoneout(mode, dense, zoneout):
    call = make_call(T=4, B=2, H=37, zoneout=zoneout, seed=12)
    run, _ = host_run(mode=mode, dense=dense, sms=4, coresident=4)
    assert_match(reference(call), outputs_and_grads(call, run), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("mode", ["persistent", "step"])
@pytest.mark.parametrize("case", ["no_bias", "narrow_band", "heaviside"])
def test_bias_and_surrogates(mode, case):
    """No biases; a narrow triangle (most units outside G, their dy skipped); Heaviside
    (gamma = 0: G = fired units only)."""
    kw: dict = {
        "no_bias": {"bias": False},
        "narrow_band": {"spike": EGRUSurrogate(0.9, 8.0)},
        "heaviside": {"spike": heaviside(), "reset": "none"},
    }[case]
    call = make_call(T=5, B=4, H=33, seed=13, **kw)
    run, _ = host_run(mode=mode, dense="off", sms=4, coresident=5)
    ref = reference(call)
    got = outputs_and_grads(call, run)
    assert_match(ref, got, rtol=1e-10, atol=1e-12)
    if case == "heaviside":
        assert torch.count_nonzero(got[1]["threshold"]) == 0
    else:
        assert got[1]["threshold"].abs().max() > 0


@pytest.mark.parametrize("mode", ["persistent", "step"])
def test_two_compaction_tiles_and_256_units(mode):
    """H = 2100 > EGRU_TILE = 2048 (two compaction tiles), B = 1: 256 units per block."""
    call = calibrated_call(2, 1, 2100, 0.2, dtype=torch.float64, device="cpu", I=8, seed=14)
    run, launcher = host_run(mode=mode, dense="off", sms=2, coresident=8)
    ref = reference(call)
    assert 0.05 < ref[0][2].mean().item() < 0.8
    assert_match(ref, outputs_and_grads(call, run), rtol=1e-10, atol=1e-12)
    assert {k.units for k in launcher.kernels_used if k.name == "egru_forward"} == {256}


@pytest.mark.parametrize("B,H,sms,units", [(1, 70, 16, 32), (2, 300, 1, 256)])
def test_units_per_block(B, H, sms, units):
    """The launcher's unit choice (several k-groups at 32 units, one at 256) on other shapes."""
    call = make_call(T=3, B=B, H=H, seed=15, w_scale=2.0 / H**0.5, theta_scale=0.3)
    run, launcher = host_run(mode="persistent", dense="off", sms=sms, coresident=8)
    assert_match(reference(call), outputs_and_grads(call, run), rtol=1e-10, atol=1e-12)
    assert {k.units for k in launcher.kernels_used if k.name == "egru_forward"} == {units}


@pytest.mark.parametrize("mode", ["persistent", "step"])
def test_float32_matches_float64_reference(mode):
    call64 = calibrated_call(5, 3, 70, 0.2, dtype=torch.float64, device="cpu", I=8, seed=16)
    ref = reference(call64)
    c_hat = torch.where(ref[0][2] > 0, ref[0][0], ref[0][1])
    margin = (c_hat - call64.threshold.detach()).abs().min().item()
    assert margin > 1e-4, f"fixture too close to the threshold ({margin:.1e}): a float32 rounding may flip events"
    run, launcher = host_run(mode=mode, dense="off", sms=4, coresident=4)
    assert_match(ref, outputs_and_grads(cast_call(call64, torch.float32), run), rtol=2e-4, atol=1e-5)
    assert {k.real for k in launcher.kernels_used} == {"float"}


@pytest.mark.parametrize("dtype,units", [(torch.float16, 32), (torch.bfloat16, 64)])
def test_half_weight_storage(dtype, units):
    """fp16/bf16 models: recurrent weights stored in half, arithmetic in float32."""
    call = calibrated_call(3, 2, 200, 0.15, dtype=dtype, device="cpu", I=8, seed=17)
    run, launcher = host_run(mode="persistent", dense="off", sms=2 if units == 64 else 16, coresident=8)
    out, grads = outputs_and_grads(call, run)
    ref = backends.get_backend("reference").run(cast_call(call, torch.float64))
    assert all(o.dtype == dtype for o in out)
    assert {(k.wstore, k.units) for k in launcher.kernels_used if k.name == "egru_forward"} == {
        (1 if dtype == torch.float16 else 2, units)
    }
    agree = out[2].double() == ref.o
    assert agree.double().mean().item() > 0.99
    tol = 2e-2 if dtype == torch.bfloat16 else 4e-3
    torch.testing.assert_close(out[0].double()[agree], ref.y[agree], rtol=tol, atol=tol)
    assert grads["weight_hh"].dtype == dtype and grads["weight_hh"].abs().sum() > 0


@pytest.mark.parametrize("layers", [1, 3])
def test_egru_module_layers(monkeypatch, layers):
    """The EGRU module (DropConnect, zoneout, training mode) with the host kernels as its
    backend gives the reference's outputs and parameter gradients."""
    run, _ = host_run(mode="persistent", dense="off", sms=4, coresident=4)
    module_run_vs_reference("host", run, monkeypatch, layers=layers, batch=2)


def test_persistent_launch_failure_falls_back_to_step_once(monkeypatch):
    """A cooperative launch larger than the co-resident limit fails (as on a GPU): the launcher
    warns once, runs step mode, and the result is still exact; later calls skip persistent."""
    from snntorch_egru.cuda import _cupy

    monkeypatch.setattr(_cupy, "_PERSISTENT_FAILED", {})
    call = make_call(T=2, B=2, H=270, seed=18, w_scale=0.1)
    run, launcher = host_run(mode="persistent", dense="off", sms=16, coresident=64)  # grids > SLOTS blocks
    with pytest.warns(RuntimeWarning, match="falling back to launch mode 'step'") as rec:
        got = outputs_and_grads(call, run)
    assert len([w for w in rec if "falling back" in str(w.message)]) == 2  # forward and backward, once each
    assert_match(reference(call), got, rtol=1e-10, atol=1e-12)
    assert not any(c for _, _, c, _ in launcher.launches)  # the failed cooperative launches never ran
    launcher.launches.clear()
    import warnings as _w

    with _w.catch_warnings():
        _w.simplefilter("error")
        outputs_and_grads(call, run)  # no second warning, no second attempt
    assert launcher.launches and not any(c for _, _, c, _ in launcher.launches)


@pytest.mark.parametrize("fixed", [True, False], ids=["shipped", "old_unsigned_compare"])
def test_grid_barrier_survives_counter_wrap(fixed, tmp_path, monkeypatch):
    """The grid barrier's 32-bit counter wraps after 2^32 / grid barriers (~4 M backward steps
    at grid 528). With the counter preset just below the wrap, 8 barriers across it must neither
    release a block early nor hang; the old ``counter < target`` test does one or the other."""
    import shutil

    import numpy as np
    from harness.hostkernels import HostKernelError, HostKernels, build
    from harness.mutants import KERNELS

    kdir = KERNELS
    if not fixed:
        kdir = tmp_path / "kernels"
        shutil.copytree(KERNELS, kdir)
        f = kdir / "egru_common.cuh"
        text = f.read_text()
        new = "while (barrier_poll(counter) < target) {"
        assert text.count("while ((int)(barrier_poll(counter) - target) < 0) {") == 1
        f.write_text(text.replace("while ((int)(barrier_poll(counter) - target) < 0) {", new))
        monkeypatch.setenv("EGRU_HOST_TIMEOUT", "5")
    host = HostKernels(build(kernels=kdir, barrier_test=True), kdir)
    grid, steps = 7, 8
    k0 = 2**32 // grid - 3  # barriers k0 .. k0 + 7 cross k * grid = 2^32
    counter = np.array([((k0 - 1) * grid) % 2**32], dtype=np.uint32)
    arrived = np.full(grid, -1, dtype=np.int32)
    bad = np.zeros(1, dtype=np.int32)
    words = [counter.ctypes.data, k0, steps, arrived.ctypes.data, bad.ctypes.data]
    ok = True
    try:
        host.launch("egru_barrier_test", grid, words, cooperative=True)
    except HostKernelError as e:
        assert "hang" in str(e)
        ok = False
    ok = ok and bad[0] == 0 and counter[0] == (k0 - 1 + steps) * grid % 2**32
    assert ok == fixed, (bad[0], counter[0])


def test_auto_dense_switch_is_earlier_in_the_backward():
    """dense="auto" at DENSE_MIN_BATCH_BWD <= B < DENSE_MIN_BATCH: a sparse persistent forward and a
    dense backward (phase 1 launches plus GEMMs, no phase 2 launch) in one call, still exact."""
    from snntorch_egru.cuda import _cupy

    B = _cupy.DENSE_MIN_BATCH_BWD
    assert B < _cupy.DENSE_MIN_BATCH
    call = make_call(T=3, B=B, H=24, seed=19)
    run, launcher = host_run(mode="persistent", dense="auto", sms=4, coresident=6)
    assert_match(reference(call), outputs_and_grads(call, run), rtol=1e-10, atol=1e-12)
    fwd = [(c, a) for n, _, c, a in launcher.launches if n == "egru_forward"]
    bwd = [(c, a) for n, _, c, a in launcher.launches if n == "egru_backward"]
    assert len(fwd) == 1 and fwd[0][0] and int(fwd[0][1]["gh"]) == 0  # one cooperative sparse launch
    assert len(bwd) == 3 and not any(c for c, _ in bwd) and {int(a["phases"]) for _, a in bwd} == {1}
