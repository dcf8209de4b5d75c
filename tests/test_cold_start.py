"""Cold start: an eager EGRU forward and backward must not import ``torch._dynamo``.

torch wraps custom-op kernels in a lazy ``torch._dynamo.disable`` that imports dynamo (~500
modules) on the first call; ``snntorch_egru._op`` avoids that while dynamo is not loaded. Each
check runs in a fresh interpreter (the test process itself may have loaded dynamo already).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

PROBE = r"""
import json, sys, torch
import snntorch_egru as se
torch.manual_seed(0)
rnn = se.EGRU(5, 7, num_layers=2)
x = torch.randn(6, 3, 5)
loaded = {"import": "torch._dynamo" in sys.modules}
out, _ = rnn(x)
loaded["forward"] = "torch._dynamo" in sys.modules
out.sum().backward()
loaded["backward"] = "torch._dynamo" in sys.modules
with torch.no_grad():
    rnn(x)
loaded["no_grad"] = "torch._dynamo" in sys.modules
ref = se.EGRU(5, 7, num_layers=2, backend="reference").requires_grad_(False)
ref.load_state_dict(rnn.state_dict())
loaded["max_diff"] = (ref(x)[0] - out.detach()).abs().max().item()
loaded["grad_finite"] = all(p.grad is not None and bool(torch.isfinite(p.grad).all()) for p in rnn.parameters())
print(json.dumps(loaded))
"""


def _run(code: str) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    return json.loads(res.stdout.strip().splitlines()[-1])


def test_eager_forward_and_backward_do_not_import_dynamo():
    r = _run(PROBE)
    assert r["import"] is False, "import snntorch_egru loads torch._dynamo"
    assert r["forward"] is False, "the first eager EGRU forward loads torch._dynamo"
    assert r["backward"] is False, "the eager EGRU backward loads torch._dynamo"
    assert r["no_grad"] is False
    assert r["max_diff"] < 1e-5 and r["grad_finite"]


def test_kernels_still_run_under_dynamo_once_it_is_loaded():
    # once torch._dynamo is imported the kernels go through the real torch._dynamo.disable
    code = PROBE.replace("import snntorch_egru as se", "import torch._dynamo\nimport snntorch_egru as se")
    r = _run(code)
    assert r["forward"] is True and r["max_diff"] < 1e-5 and r["grad_finite"]
