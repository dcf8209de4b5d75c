"""The per-call half of the modules (``_layer``): what one layer call carries to the backends."""

from __future__ import annotations

import torch

import snntorch_egru as se


def _grads(rnn: se.EGRU, x: torch.Tensor) -> list:
    rnn.zero_grad()
    out, _ = rnn(x)
    out.pow(2).sum().backward()
    return [p.grad.clone() for p in rnn.parameters()]


def test_kernel_parameters_follow_an_edited_spike_function():
    """The modules keep the spike function's (gamma, epsilon) between calls; editing the spike function
    (here its gamma) must reach the operator's backward on the next call, as the reference sees it."""
    torch.manual_seed(0)
    fast = se.EGRU(4, 16, backend="torch").double()
    ref = se.EGRU(4, 16, backend="reference").double()
    ref.load_state_dict(fast.state_dict())
    with torch.no_grad():
        for m in (fast, ref):
            m.threshold_l0.fill_(0.05)
    x = torch.randn(12, 3, 4, dtype=torch.float64)
    before = _grads(fast, x)
    for g_fast, g_ref in zip(before, _grads(ref, x)):
        torch.testing.assert_close(g_fast, g_ref, rtol=1e-9, atol=1e-12)
    for m in (fast, ref):
        m.spike_grad.gamma = 0.2
    after = _grads(fast, x)
    for g_fast, g_ref in zip(after, _grads(ref, x)):
        torch.testing.assert_close(g_fast, g_ref, rtol=1e-9, atol=1e-12)
    assert not torch.allclose(after[1], before[1])  # the edit changed the W_hh gradient
