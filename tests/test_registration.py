"""Registration: snnTorch's, Norse's and NIR's own functions handle EGRU (adapted upstream client code).

Every test runs upstream's functions (``snntorch.utils.reset``, ``snntorch.functional`` losses,
``snntorch.export_to_nir`` / ``import_from_nir``, ``norse.torch.to_nir`` / ``from_nir``,
``nir.write`` / ``nir.read``) and compares against our own step-by-step run of the same model.
Where a test shows what registration fixes, it also shows the failure without it.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import nir
import pytest
import snntorch
import snntorch as snn
import snntorch.functional as SF
import snntorch.utils
import torch

import snntorch_egru as se
from snntorch_egru import registration

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def registered():
    registration.register()
    yield
    registration.register()


@pytest.fixture
def unregistered():
    registration.unregister()
    yield
    registration.register()


def _tutorial_net(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Linear(6, 24),
        se.EGRUCell(24, 24, init_hidden=True, thr_mean=0.1),
        torch.nn.Linear(24, 4),
        snn.Leaky(beta=0.9, init_hidden=True, output=True),
    )


def _tutorial_epoch(net: torch.nn.Module, batches: list, steps: int = 12) -> list:
    """snnTorch tutorial 6's loop: reset with snntorch.utils.reset, record spikes, SF loss, optimiser step."""
    optimizer = torch.optim.Adam(net.parameters(), lr=2e-3)
    loss_fn = SF.ce_rate_loss()
    losses = []
    for data, targets in batches:
        net.train()
        snntorch.utils.reset(net)
        spk_rec = []
        for _step in range(steps):
            spk_out, _ = net(data)
            spk_rec.append(spk_out)
        loss = loss_fn(torch.stack(spk_rec), targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


def _batches(n: int = 4, batch: int = 8) -> list:
    g = torch.Generator().manual_seed(1)
    return [(torch.rand(batch, 6, generator=g) * 2, torch.randint(0, 4, (batch,), generator=g)) for _ in range(n)]


def test_snntorch_tutorial_loop_trains_with_snntorch_reset(registered):
    losses = _tutorial_epoch(_tutorial_net(), _batches())
    assert len(losses) == 4 and all(torch.isfinite(torch.tensor(losses)))


def test_snntorch_tutorial_loop_fails_without_registration(unregistered):
    # what registration fixes: snnTorch's reset leaves the EGRU state of batch 1 in the graph of batch 2
    with pytest.raises(RuntimeError, match="backward through the graph a second time"):
        _tutorial_epoch(_tutorial_net(), _batches())


def _eval_counts(net: torch.nn.Module, data: torch.Tensor) -> list:
    counts = []
    net.eval()
    with torch.no_grad():
        for _ in range(2):  # the same batch twice, each time after snntorch.utils.reset
            snntorch.utils.reset(net)
            spikes = [net(data)[0] for _ in range(15)]
            counts.append(torch.stack(spikes).sum().item())
    return counts


def test_snntorch_reset_stops_state_leaking_between_batches(registered):
    net = _tutorial_net(3)
    data = torch.rand(16, 6, generator=torch.Generator().manual_seed(5)) * 3
    first, second = _eval_counts(net, data)
    assert first == second and first > 0
    # and the EGRU cell really was reset: its state equals a fresh run's
    snntorch.utils.reset(net)
    assert net[1].c.abs().sum().item() == 0.0 and net[1].y.abs().sum().item() == 0.0


def test_state_leaks_without_registration(unregistered):
    net = _tutorial_net(3)
    data = torch.rand(16, 6, generator=torch.Generator().manual_seed(5)) * 3
    net.eval()
    with torch.no_grad():
        snntorch.utils.reset(net)
        for _ in range(15):
            net(data)
    assert net[1].c.abs().sum().item() > 0  # reset did not reach the EGRU cell
    snntorch.utils.reset(net)
    assert net[1].c.abs().sum().item() > 0


def test_snntorch_reset_unchanged_for_snntorch_neurons(registered):
    lif = snn.Leaky(beta=0.9, init_hidden=True)
    net = torch.nn.Sequential(torch.nn.Linear(3, 5), lif)
    net(torch.ones(2, 3) * 5)
    assert lif.mem.abs().sum() > 0
    snntorch.utils.reset(net)
    assert lif.mem.abs().sum() == 0
    assert snntorch.utils.reset.__wrapped__ is not None


def test_egru_classes_reachable_from_snntorch(registered):
    assert snn.EGRUCell is se.EGRUCell and snn.EGRU is se.EGRU


def _snn_nir_net(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    net = torch.nn.Sequential(
        torch.nn.Linear(4, 16),
        se.EGRUCell(16, 16, init_hidden=True, thr_mean=0.1),
        torch.nn.Linear(16, 3),
        # the NIR LIF snnTorch imports: zero reset without delay; vector parameters (nir 1.0.8 needs them)
        snn.Leaky(
            beta=torch.full((3,), 0.8),
            threshold=torch.full((3,), 0.05),
            init_hidden=True,
            reset_mechanism="zero",
            reset_delay=False,
            output=True,
        ),
    )
    with torch.no_grad():
        net[2].weight.mul_(4.0)
    return net


def test_snntorch_export_import_round_trip_equal_over_20_steps(registered, tmp_path):
    from snntorch.export_nir import export_to_nir
    from snntorch.import_nir import import_from_nir

    net = _snn_nir_net()
    graph = export_to_nir(net, torch.randn(1, 4), ignore_dims=[0])
    assert sorted(type(n).__name__ for n in graph.nodes.values()) == [
        "Affine",
        "Affine",
        "EGRU",
        "Input",
        "LIF",
        "Output",
    ]
    path = tmp_path / "net.nir"
    nir.write(path, graph)
    imported = import_from_nir(nir.read(path))

    x = torch.randn(20, 5, 4, generator=torch.Generator().manual_seed(2)) * 2
    se.utils.reset(net)
    ref_spk, ref_events, out = [], [], []
    state = None
    with torch.no_grad():
        for t in range(20):
            spk, _ = net(x[t])
            ref_spk.append(spk)
            ref_events.append(net[1].y.clone())
            o, state = imported(x[t], state)
            out.append(o)
    ref_spk, out, events = torch.stack(ref_spk), torch.stack(out), torch.stack(ref_events)
    activity = events.ne(0).float().mean().item()
    assert 0.05 < activity < 0.95, activity  # real EGRU activity
    assert 0 < ref_spk.mean().item() < 1  # and real output spikes
    torch.testing.assert_close(out, ref_spk, rtol=0, atol=0)


def test_snntorch_export_fails_without_registration(unregistered):
    from snntorch.export_nir import export_to_nir

    with pytest.raises(Exception):  # noqa: B017  (whatever snnTorch raises for a module it does not know)
        export_to_nir(_snn_nir_net(), torch.randn(1, 4), ignore_dims=[0])


def test_snntorch_export_unchanged_for_snntorch_nets(tmp_path):
    from snntorch.export_nir import export_to_nir

    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Linear(4, 3), snn.Leaky(beta=torch.full((3,), 0.8), threshold=torch.ones(3), init_hidden=True)
    )
    registration.register()
    g_on = export_to_nir(net, torch.randn(1, 4), ignore_dims=[0])
    registration.unregister()
    try:
        g_off = export_to_nir(net, torch.randn(1, 4), ignore_dims=[0])
    finally:
        registration.register()
    assert sorted(g_on.nodes) == sorted(g_off.nodes) and sorted(g_on.edges) == sorted(g_off.edges)
    for k in g_on.nodes:
        a, b = g_on.nodes[k], g_off.nodes[k]
        assert type(a) is type(b)
        for f in ("weight", "bias", "tau", "v_threshold"):
            if hasattr(a, f):
                assert (getattr(a, f) == getattr(b, f)).all()


def _norse():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import norse.torch as norse_torch
    return norse_torch


def _step_both(imported, model, x):
    """Step an imported network and the Norse ``SequentialState`` reference over ``x`` [T, ...]:
    (stacked outputs, stacked reference outputs, event activity of the reference's EGRU layer)."""
    ref, out, events = [], [], []
    s_ref = s_imp = None
    with torch.no_grad():
        for x_t in x:
            o, s_ref = model(x_t, s_ref)
            ref.append(o)
            events.append(s_ref[1].y)
            o2, s_imp = imported(x_t, s_imp)
            out.append(o2)
    return torch.stack(out), torch.stack(ref), torch.stack(events).ne(0).float().mean().item()


def test_norse_to_nir_from_nir_round_trip_equal_over_20_steps(registered, tmp_path):
    norse = _norse()
    from snntorch_egru.norse import EGRURecurrentCell

    torch.manual_seed(0)
    model = norse.SequentialState(
        torch.nn.Linear(4, 16), EGRURecurrentCell(16, 16, thr_mean=0.1), torch.nn.Linear(16, 3)
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        graph = norse.to_nir(model, torch.randn(4))  # Norse keeps the sample's shape: pass one sample
    assert sorted(type(n).__name__ for n in graph.nodes.values()) == ["Affine", "Affine", "EGRU", "Input", "Output"]
    path = tmp_path / "norse.nir"
    nir.write(path, graph)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        imported = norse.from_nir(nir.read(path))
    x = torch.randn(20, 5, 4, generator=torch.Generator().manual_seed(3)) * 2
    out, ref, activity = _step_both(imported, model, x)
    assert 0.05 < activity < 0.95, activity
    torch.testing.assert_close(out, ref, rtol=0, atol=0)


def test_norse_from_nir_drops_egru_without_registration(unregistered, tmp_path):
    # what registration fixes: Norse's importer silently skips the EGRU node
    registration.register(snntorch=False, norse=False)  # keep nir.read able to parse the file
    norse = _norse()
    from snntorch_egru import nir as senir

    net = torch.nn.Sequential(torch.nn.Linear(4, 16), se.EGRUCell(16, 16, init_hidden=True), torch.nn.Linear(16, 3))
    graph = senir.export_to_nir(net, torch.randn(2, 4))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            imported = norse.from_nir(graph)
            out = imported(torch.randn(2, 4))[0]
        except Exception:  # noqa: BLE001 - an error is also "not handled"
            return
    assert out.shape != (2, 3)


def test_unregister_restores_every_upstream_object():
    import nirtorch.nir_interpreter as interp
    from snntorch.export_nir import _extract_snntorch_module  # noqa: F401 - import for the module

    norse = _norse()  # noqa: F841 - Norse's NIR modules are imported and hooked
    import norse.torch.utils.export_nir as nexp
    import norse.torch.utils.import_nir as nimp
    import snntorch.export_nir as sexp

    registration.register()
    wrapped = (
        snntorch.utils.reset,
        sexp._extract_snntorch_module,
        nexp._extract_norse_module,
        nimp._import_norse_module,
    )
    originals = tuple(f.__wrapped__ for f in wrapped)
    registration.register()  # idempotent: nothing is wrapped twice
    assert (snntorch.utils.reset, sexp._extract_snntorch_module) == wrapped[:2]
    registration.unregister()
    try:
        assert (
            snntorch.utils.reset,
            sexp._extract_snntorch_module,
            nexp._extract_norse_module,
            nimp._import_norse_module,
        ) == originals
        assert not hasattr(snntorch, "EGRUCell") and not hasattr(snntorch, "EGRU")
        from snntorch_egru import nir as senir

        assert senir.EGRU not in interp.DEFAULT_MAP
        assert "EGRU" not in nir.ir.__dict__.get("__all_ir") and "EGRU" not in nir.ir.__dict__
        assert registration.is_registered() == {"snntorch": False, "norse": False, "nir": False}
    finally:
        registration.register()
    assert registration.is_registered() == {"snntorch": True, "norse": True, "nir": True}


def _run(code: str, **env: str) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""), **env}
    return subprocess.run(
        [sys.executable, "-W", "ignore", "-c", code],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=300,
        cwd=str(ROOT),
    )


def test_norse_is_hooked_when_imported_later_and_not_imported_by_us():
    code = (
        "import sys, torch, snntorch_egru as se\n"
        "assert 'norse' not in sys.modules, 'import snntorch_egru imported norse'\n"
        "assert se.registration.is_registered()['norse'] is False\n"
        "import norse.torch as norse\n"
        "from snntorch_egru.norse import EGRURecurrentCell\n"
        "m = norse.SequentialState(torch.nn.Linear(3, 4), EGRURecurrentCell(4, 4))\n"
        "g = norse.to_nir(m, torch.randn(3))\n"
        "print(sorted(type(n).__name__ for n in g.nodes.values()), se.registration.is_registered()['norse'])\n"
    )
    res = _run(code)
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.strip() == "['Affine', 'EGRU', 'Input', 'Output'] True"


def test_opt_out_environment_variable():
    code = (
        "import snntorch.utils, snntorch, snntorch_egru as se\n"
        "print(hasattr(snntorch.utils.reset, '__wrapped__'), hasattr(snntorch, 'EGRUCell'), "
        "se.registration.is_registered())\n"
    )
    res = _run(code, **{registration.ENV_VAR: "0"})
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.strip() == "False False {'snntorch': False, 'norse': False, 'nir': False}"


def _norse_test_outcomes(register: bool) -> dict:
    """Norse's own installed NIR tests, run with or without registration: test id -> outcome."""
    import norse

    test_dir = Path(norse.__file__).parent / "torch" / "utils" / "test"
    files = [str(p) for p in sorted(test_dir.glob("test_nir_*.py"))]
    if not files:
        pytest.skip("this Norse installation ships no NIR tests")
    code = (
        "import sys, json, pytest, snntorch_egru\n"
        "class R:\n"
        "    out = {}\n"
        "    def pytest_runtest_logreport(self, report):\n"
        "        if report.when == 'call' or report.outcome != 'passed':\n"
        "            self.out[report.nodeid.split('::')[-1]] = report.outcome\n"
        "r = R()\n"
        f"pytest.main(['-q', '-p', 'no:cacheprovider', *{files!r}], plugins=[r])\n"
        "print('RESULT' + json.dumps(r.out))\n"
    )
    res = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", code],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=str(test_dir),
        env={**os.environ, "PYTHONPATH": str(ROOT), registration.ENV_VAR: "1" if register else "0"},
    )
    m = re.search(r"RESULT(\{.*\})", res.stdout)
    assert m, res.stdout[-2000:] + res.stderr[-2000:]
    return json.loads(m.group(1))


def test_norse_own_nir_tests_unchanged_by_registration():
    on, off = _norse_test_outcomes(True), _norse_test_outcomes(False)
    assert on == off
    assert sum(v == "passed" for v in on.values()) >= 5


def test_upstream_guide_page_runs(registered):
    """docs/guide/upstream.md: its python blocks run as written, in order."""
    text = (ROOT / "docs" / "guide" / "upstream.md").read_text(encoding="utf-8")
    blocks = re.findall(r"^```python\n(.*?)^```", text, flags=re.S | re.M)
    assert len(blocks) >= 3
    namespace: dict = {"__name__": "__guide__"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i, block in enumerate(blocks):
            exec(compile(block, f"docs/guide/upstream.md:block{i}", "exec"), namespace)


def _fresh_run(cell: se.EGRUCell, fc: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Reference: the same cell from zero state, state kept on the module (no explicit passing)."""
    cell.init_egru()
    return torch.stack([fc(cell(x_t)[0]) for x_t in x])


@pytest.mark.parametrize("start", ["init", "reset_mem"])
def test_snntorch_explicit_state_idiom_with_batch_size_change(start):
    # snnTorch's tutorial_regression_2 style: states created by init_*()/reset_mem(), passed every step,
    # and a smaller last batch (the stored state is sized for the previous batch)
    torch.manual_seed(0)
    cell = se.EGRUCell(4, 16, thr_mean=0.1)
    fc = torch.nn.Linear(16, 2)
    lif = snn.Leaky(beta=0.9)
    g = torch.Generator().manual_seed(4)
    for batch in (6, 6, 3):
        x = torch.randn(10, batch, 4, generator=g)
        if start == "init":
            y, c = cell.init_egru()
        else:
            y, c = cell.reset_mem()
        mem = lif.init_leaky()
        outs, spks = [], []
        for x_t in x:
            y, c = cell(x_t, y, c)
            cur = fc(y)
            spk, mem = lif(cur, mem)
            outs.append(cur)
            spks.append(spk)
        ref = _fresh_run(cell, fc, x)
        torch.testing.assert_close(torch.stack(outs), ref, rtol=0, atol=0)
        assert 0 < torch.stack(outs).ne(fc.bias).float().mean() and y.shape == (batch, 16)


def test_explicit_state_of_wrong_shape_with_content_is_refused():
    cell = se.EGRUCell(4, 16)
    with pytest.raises(ValueError, match=r"y must have shape \[3, 16\]"):
        cell(torch.randn(3, 4), torch.ones(5, 16), torch.zeros(5, 16))


def test_own_export_after_a_training_step_leaves_the_model_as_it_was():
    from snntorch_egru import nir as senir

    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Linear(4, 16), se.EGRUCell(16, 16, init_hidden=True, thr_mean=0.1), torch.nn.Linear(16, 3)
    )
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    x = torch.randn(6, 5, 4)
    loss = torch.stack([net(x_t) for x_t in x]).pow(2).mean()
    loss.backward()
    opt.step()
    net(x[0])  # live hidden state, still in the autograd graph (not a leaf)
    cell = net[1]
    assert not cell.c.is_leaf
    before = (cell.y, cell.c, cell.trace, cell.y.clone(), cell.c.clone())
    graph = senir.export_to_nir(net, torch.randn(5, 4))
    assert (cell.y, cell.c, cell.trace) == before[:3]  # the same tensor objects
    assert torch.equal(cell.y, before[3]) and torch.equal(cell.c, before[4]) and net.training
    # NIR's naming convention for the graph's ends, and the exported weights are the trained ones
    assert isinstance(graph.nodes["input"], nir.Input) and isinstance(graph.nodes["output"], nir.Output)
    egru = [n for n in graph.nodes.values() if type(n).__name__ == "EGRU"][0]
    assert (egru.weight_hh == cell.weight_hh.detach().numpy()).all()


def test_own_export_of_norse_sequential_state_and_lift(tmp_path):
    norse = _norse()
    from snntorch_egru import nir as senir
    from snntorch_egru.norse import EGRURecurrentCell

    torch.manual_seed(1)
    model = norse.SequentialState(
        torch.nn.Linear(4, 16), EGRURecurrentCell(16, 16, thr_mean=0.1), norse.Lift(torch.nn.Linear(16, 3))
    )
    graph = senir.export_to_nir(model, torch.randn(5, 4))
    path = tmp_path / "seqstate.nir"
    senir.write(path, graph)
    step = senir.import_from_nir(senir.read(path))
    x = torch.randn(20, 5, 4, generator=torch.Generator().manual_seed(7)) * 2
    outs, refs, activity = _step_both(step, model, x)
    assert 0.05 < activity < 0.95, activity
    torch.testing.assert_close(outs, refs, rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match=r"unsupported module.*torch.nn.modules.activation.ReLU"):
        senir.export_to_nir(norse.SequentialState(torch.nn.Linear(4, 4), torch.nn.ReLU()), torch.randn(2, 4))
