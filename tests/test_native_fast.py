"""The native fast paths: the per-step cell's event path under ``no_grad`` (``snntorch_egru/_cell_fast.py``)
and the Streamer built on it.

Every check runs the same cell twice over the same inputs: once with gradients on (the plain torch
step ``functional.egru_step``) and once under ``torch.no_grad()`` / ``torch.inference_mode()`` (the
native path), and compares outputs and states in float64, with real activity.
"""

from __future__ import annotations

import pytest
import snntorch as snn
import torch

import snntorch_egru as se
from snntorch_egru import _cell_fast, _engine
from snntorch_egru import functional as F
from snntorch_egru.sparse import native_library

pytestmark = pytest.mark.skipif(
    native_library() is None or _cell_fast.step_function(torch.float64) is None,
    reason="the native CPU helper is not built (or was built before egru_step existed: reinstall the package)",
)


@pytest.fixture
def calls(monkeypatch):
    """Counts the calls that took the native path."""
    n = [0]
    orig = _cell_fast._run

    def counting(*args, **kwargs):
        out = orig(*args, **kwargs)
        n[0] += out is not None
        return out

    monkeypatch.setattr(_cell_fast, "_run", counting)
    return n


def _run(cell, xs, explicit, grad_mode):
    """Outputs y and c per step and the final stored state, in the given grad mode."""
    cell.reset_mem()
    ys, cs = [], []
    y = c = None
    with grad_mode():
        for x in xs:
            if explicit:
                y, c = cell(x, y, c) if y is not None else cell(x)
            else:
                out = cell(x)
                y, c = out if isinstance(out, tuple) else (out, cell.c)
            ys.append(y.detach().clone())
            cs.append(c.detach().clone())
    return torch.stack(ys), torch.stack(cs), cell.trace.detach().clone()


def _check(cell, xs, explicit=False, mode=torch.no_grad):
    ref = _run(cell, xs, explicit, torch.enable_grad)
    fast = _run(cell, xs, explicit, mode)
    activity = (ref[0] != 0).double().mean().item()
    assert 0.02 < activity < 0.9, f"test needs real activity, got {activity:.3f}"
    for a, b in zip(ref, fast):
        torch.testing.assert_close(b, a, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("reset", ["subtract", "zero", "none"])
@pytest.mark.parametrize("batch", [None, 1, 3])
def test_native_step_equals_torch_step_float64(reset, batch, calls):
    torch.manual_seed(0)
    cell = se.EGRUCell(7, 33, thr_mean=0.1, reset_mechanism=reset).double()
    with torch.no_grad():
        cell.bias_hh.normal_(0.0, 0.3)
        cell.bias_ih.normal_(0.0, 0.3)
    xs = 2 * torch.randn(15, *((batch,) if batch else ()), 7, dtype=torch.float64)
    _check(cell, xs)
    assert calls[0] == 15  # every step took the native path (the first run sized the stored state)


def test_explicit_state_zoneout_eval_inference_mode_and_clamp(calls):
    torch.manual_seed(1)
    cell = se.EGRUCell(5, 21, thr_mean=0.2, zoneout=0.3).double().eval()
    with torch.no_grad():
        cell.threshold[:3] = torch.tensor([-0.5, 1.5, 0.05], dtype=torch.float64)  # clamped to [0, 1]
    xs = 2 * torch.randn(12, 2, 5, dtype=torch.float64)
    _check(cell, xs, explicit=True)
    _check(cell, xs, explicit=False, mode=torch.inference_mode)
    assert calls[0] > 0


def test_init_hidden_in_sequential_with_snntorch_and_reset(calls):
    torch.manual_seed(2)
    net = torch.nn.Sequential(
        torch.nn.Linear(6, 16),
        se.EGRUCell(16, 16, init_hidden=True, thr_mean=0.1),
        torch.nn.Linear(16, 3),
        snn.Leaky(beta=0.9, init_hidden=True),
    ).double()
    xs = torch.randn(10, 2, 6, dtype=torch.float64)

    def run(mode):
        snn.utils.reset(net)
        with mode():
            return torch.stack([net(x).detach() for x in xs])

    torch.testing.assert_close(run(torch.no_grad), run(torch.enable_grad), rtol=1e-12, atol=1e-12)
    assert calls[0] == len(xs) - 1  # snnTorch's reset empties the state: the first step sizes it


def test_float32_agrees_with_torch_step():
    torch.manual_seed(3)
    cell = se.EGRUCell(8, 64, thr_mean=0.1)
    x = torch.randn(4, 8)
    y0, c0 = torch.relu(torch.randn(4, 64)) * 0.5, torch.randn(4, 64)
    cell(x, y0, c0)  # sizes nothing: explicit states of the right shape go straight through
    with torch.no_grad():
        y, c = cell(x, y0, c0)
    ref = F.egru_step(
        x,
        y0,
        c0,
        torch.zeros(4, 64),
        cell.weight_ih,
        cell.weight_hh,
        cell.bias_ih,
        cell.bias_hh,
        cell.threshold.clamp(0, 1),
    )
    torch.testing.assert_close(y, ref.y.detach(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(c, ref.c.detach(), rtol=1e-5, atol=1e-6)


def test_paths_that_need_the_torch_step(calls):
    """Gradients on, training masks, a spike function without a Heaviside forward contract, a large
    batch, a weight edit: the torch step runs (or the edit is seen), with the same numbers."""
    torch.manual_seed(4)
    x = torch.randn(3, 5, dtype=torch.float64)
    cell = se.EGRUCell(5, 9, dropconnect=0.5).double().train()
    with torch.no_grad():
        cell(x)
        cell(x)
    assert calls[0] == 0  # DropConnect in training draws a mask: torch step
    cell = se.EGRUCell(5, 9, spike_grad=snn.surrogate.atan()).double()
    with torch.no_grad():
        cell(x)
        cell(x)
    assert calls[0] == 0
    big = se.EGRUCell(5, 9).double()
    with torch.no_grad():
        big(torch.randn(_cell_fast.MAX_BATCH + 1, 5, dtype=torch.float64))
        big(torch.randn(_cell_fast.MAX_BATCH + 1, 5, dtype=torch.float64))
    assert calls[0] == 0
    cell = se.EGRUCell(5, 9, thr_mean=0.1).double()
    with torch.no_grad():
        cell(x)
        y1, _ = cell(x)
        cell.weight_hh.mul_(0.0)  # an in-place edit (version bump) is seen by the next step
        cell.threshold.fill_(2.0)  # clamped to 1: no unit can fire above c = 1
        y2, _ = cell(x)
    assert calls[0] == 2 and y1.ne(0).any() and y2.eq(0).all()


def test_bad_input_still_gets_the_clear_error():
    cell = se.EGRUCell(5, 9)
    with torch.no_grad():
        cell(torch.randn(2, 5))
        with pytest.raises(ValueError, match="input_"):
            cell(torch.randn(2, 4))


def test_a_trace_records_the_torch_step():
    """Under torch.jit.trace the native path is not taken (it would be recorded as a constant)."""
    torch.manual_seed(5)
    cell = se.EGRUCell(4, 12, thr_mean=0.1).eval().requires_grad_(False)
    x, x2 = torch.randn(2, 4), 3 * torch.randn(2, 4)
    y0, c0 = torch.relu(torch.randn(2, 12)), torch.randn(2, 12)
    with torch.no_grad():
        traced = torch.jit.trace(lambda a, y, c: cell(a, y, c), (x, y0, c0), check_trace=False)
        eager = cell(x2, y0, c0)
        torch.testing.assert_close(traced(x2, y0, c0), eager)


def test_torch_compile_under_no_grad_equals_eager(calls):
    """torch.compile traces the torch step (dynamo cannot see into the native helper)."""
    torch.manual_seed(6)
    cell = se.EGRUCell(4, 12, thr_mean=0.1).eval()
    x, y0, c0 = torch.randn(2, 4), torch.relu(torch.randn(2, 12)), torch.randn(2, 12)
    compiled = torch.compile(lambda a, y, c: cell(a, y, c), backend="eager", fullgraph=True)
    with torch.no_grad():
        got = compiled(x, y0, c0)
        n_compiled = calls[0]
        want = cell(x, y0, c0)
    assert n_compiled == 0 and calls[0] == 1
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("batch", [1, 2])
def test_streamer_equals_the_layer_over_a_sequence_float64(batch):
    """Streamer.step over a sequence equals EGRU.forward in eval mode (two layers, zoneout expectation,
    clamped thresholds), state included; reset starts over; the state setter continues a stream."""
    torch.manual_seed(8)
    rnn = se.EGRU(5, 24, num_layers=2, thr_mean=0.15, zoneout=0.2, dropout=0.3).double().eval()
    with torch.no_grad():
        rnn.threshold_l1[:2] = torch.tensor([1.4, -0.2], dtype=torch.float64)
    x = 2 * torch.randn(25, batch, 5, dtype=torch.float64)
    with torch.no_grad():
        want, want_state = rnn(x)
    stream = se.Streamer(rnn, batch_size=batch)
    step = (lambda t: stream.step(t[0])) if batch == 1 else stream.step
    got = torch.stack([step(x_t) for x_t in x])
    got = got.unsqueeze(1) if batch == 1 else got
    assert 0.02 < (want != 0).double().mean().item() < 0.9
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    for a, b in zip(stream.state, want_state):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    stream.reset()
    first = torch.stack([step(x_t) for x_t in x[:10]])
    saved = stream.state
    rest = torch.stack([step(x_t) for x_t in x[10:]])
    stream.state = saved
    again = torch.stack([step(x_t) for x_t in x[10:]])
    torch.testing.assert_close(again, rest, rtol=0, atol=0)
    torch.testing.assert_close(first.reshape(10, batch, -1), want[:10], rtol=1e-12, atol=1e-12)


def test_streamer_from_a_cell_and_clear_errors():
    torch.manual_seed(9)
    cell = se.EGRUCell(3, 10, thr_mean=0.1)
    stream = se.Streamer(cell)
    xs = torch.randn(8, 3)
    cell.reset_mem()
    with torch.no_grad():
        want = torch.stack([cell(x_t.unsqueeze(0))[0][0] for x_t in xs])
    got = torch.stack([stream.step(x_t) for x_t in xs])
    torch.testing.assert_close(got, want)
    with pytest.raises(ValueError, match=r"x_t must have shape \[3\] or \[1, 3\]"):
        stream.step(torch.randn(4))
    with pytest.raises(ValueError, match="x_t must be torch.float32"):
        stream.step(torch.randn(3, dtype=torch.float64))
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        se.Streamer(cell, batch_size=0)
    with pytest.raises(TypeError, match="model must be a snntorch_egru.EGRU or EGRUCell"):
        se.Streamer(torch.nn.GRU(3, 10))
    with pytest.raises(ValueError, match=r"state.y must have shape \(1, 1, 10\)"):
        stream.state = se.EGRUState(torch.zeros(2), torch.zeros(1, 1, 10), torch.zeros(1, 1, 10))


def test_a_cell_that_took_the_native_path_still_copies_and_pickles():
    """deepcopy, pickle and torch.save of a cell after inference steps (the tutorials deep-copy models)."""
    import copy
    import io
    import pickle

    torch.manual_seed(10)
    cell = se.EGRUCell(3, 7, thr_mean=0.1, init_hidden=True)
    xs = torch.randn(6, 2, 3)
    with torch.no_grad():
        for x in xs[:3]:
            cell(x)
        twins = [copy.deepcopy(cell), pickle.loads(pickle.dumps(cell))]
        buf = io.BytesIO()
        torch.save(cell, buf)
        buf.seek(0)
        twins.append(torch.load(buf, weights_only=False))
        want = torch.stack([cell(x) for x in xs[3:]])
        for twin in twins:
            torch.testing.assert_close(torch.stack([twin(x) for x in xs[3:]]), want, rtol=0, atol=0)


def test_threshold_edits_through_data_are_seen_by_the_next_inference_step(calls):
    """EvNN-style code edits thresholds through .data (no version bump): the native step reads them anew."""
    torch.manual_seed(11)
    cell = se.EGRUCell(3, 9, thr_mean=0.1).double()
    x = 2 * torch.randn(2, 3, dtype=torch.float64)
    y0, c0 = torch.relu(torch.randn(2, 9, dtype=torch.float64)), torch.randn(2, 9, dtype=torch.float64)
    with torch.no_grad():
        cell(x, y0, c0)  # sizes the stored trace (torch step)
        cell(x, y0, c0)  # native
        cell.threshold.data.fill_(0.95)
        before = calls[0]
        got, _ = cell(x, y0, c0)
    with torch.enable_grad():
        want, _ = cell(x, y0, c0)
    assert before == 1 and calls[0] == 2  # the edited step took the native path
    torch.testing.assert_close(got, want.detach(), rtol=1e-12, atol=1e-12)


def test_streamer_propagates_a_nan_threshold_and_keeps_its_state_on_its_device():
    rnn = se.EGRU(3, 6, thr_mean=0.1, reset_mechanism="zero").double().eval()
    with torch.no_grad():
        rnn.threshold_l0[1] = float("nan")
        want, _ = rnn(torch.ones(1, 1, 3, dtype=torch.float64))
    y = se.Streamer(rnn).step(torch.ones(3, dtype=torch.float64))
    assert y[1].isnan() and want[0, 0, 1].isnan()
    torch.testing.assert_close(y[[0, 2, 3, 4, 5]], want[0, 0, [0, 2, 3, 4, 5]], rtol=1e-12, atol=1e-12)
    stream = se.Streamer(se.EGRU(3, 6).double())
    stream.state = se.EGRUState(*(torch.zeros(1, 1, 6, dtype=torch.float32) for _ in range(3)))
    assert all(t.dtype == torch.float64 and t.device.type == "cpu" for t in stream.state)


@pytest.mark.parametrize(
    "edit",
    [
        "whole",  # w.data.copy_(...): every element
        "row",  # one gate row of one unit: every row is probed
        "column",  # one unit's outgoing weights: every group of four columns is probed
        "scattered",  # a pruning mask over 5 % of the elements
        "version",  # a torch in-place edit under no_grad (the version counter moves)
        "replaced",  # .data = a new tensor (a new storage)
    ],
)
@pytest.mark.parametrize("split", [False, True])
def test_recurrent_weight_edits_are_seen_by_the_next_inference_step(calls, monkeypatch, edit, split):
    """The cell keeps a transposed copy of weight_hh between steps; each kind of edit, including edits
    through .data that keep the version counter, must reach the next native step (float64, equal to the
    torch step on the edited weights), also when the step and its probe are cut into parts on two threads."""
    if split:
        monkeypatch.setattr(_engine, "native_split", lambda units: (2, 2))
    torch.manual_seed(5)
    H = 24
    cell = se.EGRUCell(5, H, thr_mean=0.1).double()
    xs = 2 * torch.randn(8, 2, 5, dtype=torch.float64)
    with torch.no_grad():
        for x in xs[:3]:
            cell(x)
        w = cell.weight_hh
        if edit == "whole":
            w.data.copy_(torch.randn_like(w))
        elif edit == "row":
            w.data[H + 7] = 3.0
        elif edit == "column":
            w.data[:, 13] = -2.0
        elif edit == "scattered":
            w.data[torch.rand_like(w) < 0.05] = 4.0
        elif edit == "version":
            w.mul_(-1.5)
        else:
            w.data = torch.randn_like(w)
        before = calls[0]
        state = (cell.y.clone(), cell.c.clone(), cell.trace.clone())
        got = torch.stack([cell(x)[0] for x in xs[3:]])
    cell.y, cell.c, cell.trace = state
    want = torch.stack([cell(x)[0] for x in xs[3:]]).detach()
    assert calls[0] - before == 5  # the edited steps took the native path
    assert (want != 0).double().mean() > 0.02
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


def test_float32_gates_match_torch_over_a_wide_range():
    """The native float32 gates use their own vectorized exp/tanh: over pre-activations from -100 to 100
    (and 0, and tiny values) the step equals torch's own step within float32 rounding."""
    torch.manual_seed(2)
    H = 64
    cell = se.EGRUCell(H, H, bias=False, thr_mean=0.5, reset_mechanism="none").eval()
    with torch.no_grad():
        cell.weight_ih.copy_(torch.cat([torch.eye(H)] * 3))  # gi = x in each gate: the gates see x directly
        cell.weight_hh.zero_()
        cell.threshold.fill_(1.0)  # no unit fires: y = 0, c = c_hat
        x = torch.cat([torch.linspace(-100, 100, H - 4), torch.tensor([0.0, 1e-30, -1e-6, 3e-4])])
        c0 = torch.linspace(-1, 1, H)
        y0 = torch.zeros(H)
        _, c_fast = cell(x, y0, c0)
    with torch.enable_grad():
        _, c_ref = cell(x, y0, c0)
    torch.testing.assert_close(c_fast, c_ref.detach(), rtol=2e-6, atol=1e-7)


def _stepped(cell, xs):
    """``y`` and ``c`` after each step of the cell's native path (``no_grad``), as one tensor each."""
    cell.reset_mem()
    ys, cs = [], []
    with torch.no_grad():
        for x in xs:
            y, c = cell(x)
            ys.append(y.clone())
            cs.append(c.clone())
    return torch.stack(ys), torch.stack(cs)


def _active_cell(dtype, hidden, inp, seed, **kw):
    torch.manual_seed(seed)
    cell = se.EGRUCell(inp, hidden, **kw).to(dtype).eval()
    with torch.no_grad():
        cell.threshold.uniform_(0.02, 0.3)
    return cell


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("hidden,batch", [(40, 1), (200, 3), (1000, 1)])
@pytest.mark.parametrize("kw", [{}, {"zoneout": 0.3, "reset_mechanism": "zero", "threshold_clamp": True}])
def test_the_step_cut_into_parts_on_two_threads_equals_one_thread_bit_for_bit(monkeypatch, calls, dtype, hidden, batch,
                                                                              kw):  # fmt: skip
    """The native step cut into 1-5 ranges of units run by the calling thread and the helper thread gives the
    very numbers of one range on one thread, and those equal the torch step (float64) with real activity."""
    cell = _active_cell(dtype, hidden, 16, 3, **kw)
    xs = torch.randn(30, batch, 16, dtype=dtype)
    monkeypatch.setattr(_engine, "native_split", lambda units: (1, 1))
    _stepped(cell, xs[:2])  # sizes the state (a torch step): every step below is a native one
    calls[0] = 0
    ref_y, ref_c = _stepped(cell, xs)
    assert 0.005 < ref_y.ne(0).double().mean().item() < 0.9  # real activity, not all-zero nor all-firing
    assert calls[0] == 30
    for parts in (2, 3, 5):
        monkeypatch.setattr(_engine, "native_split", lambda units, p=parts: (2, p))
        y, c = _stepped(cell, xs)
        assert torch.equal(y, ref_y) and torch.equal(c, ref_c), parts
    assert calls[0] == 4 * 30
    if dtype == torch.float64:
        torch_y, torch_c, _ = _run(cell, xs, False, torch.enable_grad)
        torch.testing.assert_close(ref_y, torch_y, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(ref_c, torch_c, rtol=1e-12, atol=1e-12)


def test_the_helper_thread_survives_fork_and_concurrent_python_threads(monkeypatch):
    """A child forked after the helper thread started steps correctly (it has no helper: the calling thread runs
    every part), and Python threads stepping their own cells at once get each their own numbers."""
    import multiprocessing
    import threading

    cell = _active_cell(torch.float64, 600, 8, 5)
    xs = torch.randn(40, 1, 8, dtype=torch.float64)
    _stepped(cell, xs[:2])  # sizes the state: from here on every step is a native one
    ref = _stepped(cell, xs)
    monkeypatch.setattr(_engine, "native_split", lambda units: (2, 3))

    ctx = multiprocessing.get_context("fork")
    q = ctx.Queue()
    proc = ctx.Process(target=lambda: q.put(torch.equal(_stepped(cell, xs)[0], ref[0])))
    proc.start()
    got = q.get(timeout=60)
    proc.join(timeout=60)
    assert got is True and proc.exitcode == 0

    cells = [_active_cell(torch.float64, 600, 8, seed) for seed in (6, 7, 8)]
    refs = [(_stepped(c, xs[:2]), _stepped(c, xs))[1] for c in cells]
    outs: list = [None] * 3

    def work(k):
        outs[k] = _stepped(cells[k], xs)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for out, r in zip(outs, refs):
        assert torch.equal(out[0], r[0]) and torch.equal(out[1], r[1])


def test_streamer_sees_model_edits_only_after_refresh():
    """The Streamer holds copies: an in-place edit of any of the model's tensors changes nothing until refresh(),
    which then gives the edited model's own numbers."""
    torch.manual_seed(9)
    rnn = se.EGRU(6, 20, thr_mean=0.1).double().eval()
    x = torch.randn(12, 1, 6, dtype=torch.float64)
    stream = se.Streamer(rnn)
    before = torch.stack([stream.step(x_t[0]) for x_t in x])
    with torch.no_grad():
        for p in (rnn.weight_ih_l0, rnn.weight_hh_l0, rnn.bias_ih_l0, rnn.bias_hh_l0, rnn.threshold_l0):
            p.mul_(0.8)
    stream.reset()
    assert torch.equal(torch.stack([stream.step(x_t[0]) for x_t in x]), before)
    stream.refresh()
    after = torch.stack([stream.step(x_t[0]) for x_t in x])
    with torch.no_grad():
        want = rnn(x)[0][:, 0]
    assert not torch.equal(after, before)
    torch.testing.assert_close(after, want, rtol=1e-12, atol=1e-12)


def test_the_split_policy_follows_its_tunable_and_torch_threads(monkeypatch):
    from snntorch_egru import sparse

    assert _engine.native_split(sparse.SPLIT_MIN_UNITS - 1) == (1, 1)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        assert _engine.native_split(sparse.SPLIT_MIN_UNITS) == (2, 2)
        monkeypatch.setattr(sparse, "SPLIT_MIN_UNITS", 64)
        assert _engine.native_split(64) == (2, 2)
        torch.set_num_threads(1)
        assert _engine.native_split(1 << 20) == (1, 2)  # one thread: the parts run one after the other
    finally:
        torch.set_num_threads(threads)


def test_the_portable_variant_of_the_helper_gives_the_same_numbers(tmp_path):
    """Without POSIX threads or GCC/Clang vector types (Windows, other compilers) the helper runs every job's
    parts in order on the calling thread and sums the input product in plain C. That variant (-DEGRU_PORTABLE)
    compiles without a warning, and its steps (the input product, the recurrent rows, the probe) equal the
    built helper's, cut in two on two threads, bit for bit."""
    import ctypes
    import shutil
    import subprocess
    import sysconfig
    from pathlib import Path

    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        pytest.skip("no C compiler")
    src = Path(__file__).resolve().parents[1] / "snntorch_egru/_native/egru_native.c"
    so = tmp_path / "portable.so"
    cmd = [cc, "-shared", "-fPIC", "-O2", "-std=c11", "-Wall", "-fopenmp-simd", "-fno-trapping-math", "-DEGRU_PORTABLE",
           "-I" + sysconfig.get_paths()["include"], str(src), "-o", str(so), "-lm"]  # fmt: skip
    res = subprocess.run(cmd, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert "warning" not in res.stderr, res.stderr
    vp, i64, ci, cd = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int, ctypes.c_double
    argtypes = [i64] * 3 + [vp] * 9 + [ci, cd, ci, cd, cd] + [vp] * 5 + [ci, ci]
    g = torch.Generator().manual_seed(4)
    b, h, i = 2, 203, 37  # a partial 8-row block, an input size with a tail of 5
    x = torch.randn(b, i, generator=g)
    w_ih, w_hh = torch.randn(3 * h, i, generator=g) * 0.3, torch.randn(3 * h, h, generator=g) * 0.3
    b_ih, b_hh, theta = torch.randn(3 * h, generator=g), torch.randn(3 * h, generator=g), torch.rand(h, generator=g)
    y0 = torch.randn(b, h, generator=g) * (torch.rand(b, h, generator=g) < 0.2)
    c0, tr0 = torch.randn(b, h, generator=g), torch.rand(b, h, generator=g)
    w_t = w_hh.t().contiguous()
    outs = []
    for lib, threads, parts in ((ctypes.CDLL(str(so)), 1, 1), (native_library(), 2, 2)):
        fn = lib.egru_step_f32
        fn.argtypes, fn.restype = argtypes, ctypes.c_int
        probe = torch.empty(3 * h * 4)
        lib.weight_probe_f32.argtypes = [vp, i64, i64, vp]
        lib.weight_probe_f32(w_hh.data_ptr(), 3 * h, h, probe.data_ptr())
        y, c, tr = torch.empty(b, h), torch.empty(b, h), torch.empty(b, h)
        ptrs = [t.data_ptr() for t in (x, w_ih, b_ih, y0, c0, tr0, w_t, b_hh, theta)]
        rc = fn(b, h, i, *ptrs, 0, 0.0, 0, F.TRACE_DECAY, 1 - F.TRACE_DECAY, y.data_ptr(), c.data_ptr(), tr.data_ptr(),
                w_hh.data_ptr(), probe.data_ptr(), threads, parts)  # fmt: skip
        assert rc == 0
        outs.append((y, c, tr))
    for u, v in zip(*outs):
        assert torch.equal(u, v)
    assert 0 < outs[0][0].ne(0).double().mean() < 1  # real activity
