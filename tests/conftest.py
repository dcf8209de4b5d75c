"""Shared helpers for the EGRU test suite (float64, fixed seeds)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Dict, List, Optional

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import snntorch_egru as se  # noqa: E402
from snntorch_egru import backends  # noqa: E402

PARAM_NAMES = ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "threshold")


def backend_names() -> List[str]:
    """Every backend registered when the tests are collected."""
    return backends.available_backends()


def _probe(name: str, x: torch.Tensor, model: se.EGRU, device: torch.device) -> bool:
    p = {k: (v.detach().to(device) if v is not None else None) for k, v in model.layer_tensors(0).items()}
    B = x.shape[1]
    zeros = torch.zeros(B, model.hidden_size, dtype=x.dtype, device=device)
    call = backends.LayerCall(x=x.detach().to(device), y0=zeros, c0=zeros, trace0=zeros,
                              weight_ih=p["weight_ih"], weight_hh=p["weight_hh"], bias_ih=p["bias_ih"],
                              bias_hh=p["bias_hh"], threshold=p["threshold"], spike_fn=model.spike_grad,
                              reset=model.reset_mechanism)
    return bool(backends.get_backend(name).available(call))


def backend_device(name: str, x: torch.Tensor, model: se.EGRU) -> torch.device:
    """Where backend ``name`` runs a call like ``x`` [T, B, I]: the CPU, else a CUDA GPU if there is
    one and the backend takes it there; skip the test otherwise (e.g. GPU backends on a CPU machine)."""
    if _probe(name, x, model, torch.device("cpu")):
        return torch.device("cpu")
    if torch.cuda.is_available() and _probe(name, x, model, torch.device("cuda")):
        return torch.device("cuda")
    pytest.skip(f"backend {name!r} declines this call here (e.g. needs a GPU)")


def skip_if_unavailable(name: str, x: torch.Tensor, model: se.EGRU) -> None:
    """Skip unless backend ``name`` runs a CPU call like ``x`` [T, B, I]."""
    if not _probe(name, x, model, torch.device("cpu")):
        pytest.skip(f"backend {name!r} declines this call on the CPU (e.g. needs a GPU)")


def on_device(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """``model`` itself on the CPU, else a deep copy moved to ``device``."""
    import copy

    return model if device.type == "cpu" else copy.deepcopy(model).to(device)


def param_grads(model: torch.nn.Module) -> List[torch.Tensor]:
    """Gradients of ``model``'s parameters, on the CPU (zeros where None)."""
    return [(p.grad if p.grad is not None else torch.zeros_like(p)).detach().cpu().clone()
            for p in model.parameters()]


def randomize_(model: torch.nn.Module, seed: int, w_scale: float = 0.6, thr_low: float = 0.05,
               thr_high: float = 0.45) -> None:
    """Give a model (EGRU or EGRUCell) random weights and biases and thresholds in [thr_low, thr_high]."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            if "threshold" in name:
                p.copy_(thr_low + (thr_high - thr_low) * torch.rand(p.shape, generator=g, dtype=torch.float64))
            elif "weight" in name:
                p.copy_(w_scale * torch.randn(p.shape, generator=g, dtype=torch.float64))
            else:
                p.copy_(0.3 * torch.randn(p.shape, generator=g, dtype=torch.float64))


def layer_params(model: se.EGRU) -> List[Dict[str, Optional[torch.Tensor]]]:
    """Each layer's five tensors by plain names (the same Parameter objects)."""
    return [{n: getattr(model, f"{n}_l{k}") for n in PARAM_NAMES} for k in range(model.num_layers)]


def cell_params(cell: se.EGRUCell) -> Dict[str, Optional[torch.Tensor]]:
    return {n: getattr(cell, n) for n in PARAM_NAMES}


def grads_of(tensors) -> List[torch.Tensor]:
    return [t.grad.clone() if t.grad is not None else torch.zeros_like(t) for t in tensors]


def clear_grads(tensors) -> None:
    for t in tensors:
        t.grad = None
