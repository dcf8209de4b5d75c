"""Shared fixtures of the flavour tests (test_norse.py, test_interop.py): float64 sizes,
seeded random parameters inside the threshold clamp, and seeded time-first inputs."""

from __future__ import annotations

import torch

D = torch.float64
T, B, I, H = 12, 3, 5, 6


def randomize(module: torch.nn.Module, seed: int) -> None:
    """Random weights (scale 0.6), biases (0.3) and thresholds in [0.05, 0.45] (inside the clamp)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(module.named_parameters()):
            if "threshold" in name:
                p.copy_(0.05 + 0.4 * torch.rand(p.shape, generator=g, dtype=D))
            elif "weight" in name:
                p.copy_(0.6 * torch.randn(p.shape, generator=g, dtype=D))
            else:
                p.copy_(0.3 * torch.randn(p.shape, generator=g, dtype=D))


def x_seq(seed: int = 1, steps: int = T, batch: int = B, features: int = I) -> torch.Tensor:
    """A seeded float64 input of shape [steps, batch, features]."""
    return torch.randn(steps, batch, features, generator=torch.Generator().manual_seed(seed), dtype=D)
