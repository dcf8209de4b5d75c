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


def test_auto_asks_only_the_backends_of_the_calls_device():
    """``register_backend(..., device_type=)``: ``"auto"`` skips a backend of another device type without
    asking it (a CUDA backend's availability probe never runs for CPU tensors), and still asks the others."""
    from snntorch_egru import backends

    asked = []

    def never(call):
        raise AssertionError("the availability of a CUDA-only backend was asked for a CPU call")

    def ask(call):
        asked.append(call.x.device.type)
        return False

    backends.register_backend("test_cuda_only", backends.get_backend("reference").run, never, 99, "cuda")
    backends.register_backend("test_any_device", backends.get_backend("reference").run, ask, 98)
    try:
        z = torch.zeros(2, 4)
        call = backends.LayerCall(
            torch.randn(3, 2, 5),
            z,
            z,
            z,
            torch.randn(12, 5),
            torch.randn(12, 4),
            None,
            None,
            torch.full((4,), 0.2),
            se.surrogate.EGRUSurrogate(),
        )
        assert backends.resolve_backend("auto", call).name == "torch"  # the CPU launcher, as before
        assert asked == ["cpu"]
    finally:
        backends.unregister_backend("test_cuda_only")
        backends.unregister_backend("test_any_device")
