"""Synthetic dataset files in the real formats, shared by test_datasets.py and test_recipes.py."""

from __future__ import annotations

import numpy as np


def write_dvs(root, rng, train_users=(1, 2), test_users=(3,)):
    """tonic's preprocessed DVSGesture layout: float arrays [N, 4] of x, y, p, t (ms), one file per label."""
    for folder, users in (("ibmGestureTrain", train_users), ("ibmGestureTest", test_users)):
        base = root / "DVSGesture"
        base.mkdir(parents=True, exist_ok=True)
        (base / f"{folder}.tar.gz").write_bytes(b"")
        for user in users:
            d = base / folder / f"user{user:02d}_fluorescent"
            d.mkdir(parents=True)
            for label in (0, 4):
                n = 3000
                ev = np.stack(
                    [
                        rng.integers(0, 128, n),
                        rng.integers(0, 128, n),
                        rng.integers(0, 2, n),
                        np.sort(rng.integers(0, 1800, n)),
                    ],
                    axis=1,
                ).astype(np.float64)
                np.save(d / f"{label}.npy", ev)
