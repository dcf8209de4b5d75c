"""Why the digits preset used to sit at chance for its first epochs: what the network and its readout see at init.

Prints, for the digits classifier of the preset (seed 0) under ``--threshold-init beta`` and ``calibrated``:
the input drive's standard deviation, the activity and the fraction of units that fire at all on a batch of
256 training images, the rate readout's input (events averaged over the read-out steps): its mean and its
standard deviation across images, and what a linear probe (logistic regression on the standardised
features, fitted on the 1150 training images, scored on the 287 validation images) reads from it. Then the
gradient norms of one batch. Run from the repository root: ``python benchmarks/init_diagnosis.py``.
"""

from __future__ import annotations

import torch
from torch import nn

from snntorch_egru.training._data import VALID_SEED, collate_time_first, load_digits_data, split_train_valid
from snntorch_egru.training._models import SequenceClassifier, build_egru, calibrate_classifier
from snntorch_egru.training._tasks import preset


def _model(init: str, readout_steps: int):
    cfg = preset("digits")
    cfg.threshold_init, cfg.readout_steps = init, readout_steps
    torch.manual_seed(cfg.seed)
    m = SequenceClassifier(
        build_egru(cfg, cfg.input_encoder, cfg.hidden_size),
        10,
        frontend=nn.Linear(1, 32),
        readout="rate",
        dropout=cfg.dropout,
        readout_steps=readout_steps,
    )
    return cfg, m


def main() -> None:
    torch.set_num_threads(1)
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    data = load_digits_data()
    train, valid = split_train_valid(data.train, 0.2, VALID_SEED)
    xtr, ytr = collate_time_first([train[i] for i in range(len(train))])
    xva, yva = collate_time_first([valid[i] for i in range(len(valid))])
    for init, rs in (("beta", 0), ("calibrated", 16)):
        cfg, m = _model(init, rs)
        calibrate_classifier(cfg, m, train, collate_time_first)
        m.eval()
        with torch.no_grad():
            enc = m.frontend(xtr[:, :256])
            drive = (enc.reshape(-1, 32) @ m.egru.weight_ih_l0.t()).std().item()
            _, _, rec = m.egru(enc, return_internals=True)
            o = rec.o[0]
            feats = []
            for x in (xtr, xva):
                y = m.egru(m.frontend(x))[0]
                feats.append((y[-rs:] if rs else y).mean(0).numpy())
        sc = StandardScaler().fit(feats[0])
        probe = LogisticRegression(max_iter=3000).fit(sc.transform(feats[0]), ytr.numpy())
        print(f"[{init}, readout over {'the last %d' % rs if rs else 'all'} steps]")
        print(
            f"  input drive std {drive:.3f}; activity {o.mean().item():.3f}; units that ever fire "
            f"{(o.sum((0, 1)) > 0).float().mean().item():.2f}; units firing at >90 % of (step, image) "
            f"{(o.mean((0, 1)) > 0.9).float().mean().item():.2f}"
        )
        f = torch.tensor(feats[0])
        print(
            f"  readout input: mean {f.mean().item():.4f}, std across images {f.std(0).mean().item():.4f}; "
            f"linear probe on it: validation accuracy {probe.score(sc.transform(feats[1]), yva.numpy()):.3f}"
        )
        m.train()
        logits, _ = m(xtr[:, :256])
        nn.functional.cross_entropy(logits, ytr[:256]).backward()
        print(
            "  logits std across images %.4f; grad norms: " % logits.std(0).mean().item()
            + ", ".join(f"{n} {p.grad.norm().item():.2e}" for n, p in m.named_parameters() if p.grad is not None)
        )


if __name__ == "__main__":
    main()
