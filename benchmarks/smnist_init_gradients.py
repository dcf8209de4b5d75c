"""One backward pass of the sMNIST preset at initialisation on real MNIST: EGRU (recipe and thr_mean 0.05) vs a
same-size GRU; gradient norms of the recurrent layer and the readout (issue 12). Expects idx files in /tmp/mnist."""

import json
import time

import torch

from snntorch_egru.training import preset
from snntorch_egru.training._data import collate_time_first, load_classification
from snntorch_egru.training._models import GRUClassifier, SequenceClassifier, build_egru

torch.set_num_threads(1)

data = load_classification("smnist", "/tmp/mnist")
x, y = collate_time_first([data.train[i] for i in range(8)])
res = {}
for name, kw in (
    ("egru recipe (thr_mean 0.3)", {}),
    ("egru thr_mean 0.05", {"thr_mean": 0.05}),
    ("gru", {"model": "gru"}),
):
    cfg = preset("smnist")
    for k, v in kw.items():
        setattr(cfg, k, v)
    torch.manual_seed(cfg.seed)
    if cfg.model == "gru":
        m = GRUClassifier(1, cfg.hidden_size, 10, readout="last")
    else:
        m = SequenceClassifier(build_egru(cfg, 1, cfg.hidden_size), 10, readout="last")
    t = time.time()
    logits, rec = m(x)
    loss = torch.nn.functional.cross_entropy(logits, y)
    loss.backward()
    g_rnn = torch.sqrt(
        sum(p.grad.pow(2).sum() for n, p in m.named_parameters() if n.startswith("egru.") and p.grad is not None)
    )
    g_head = m.head.weight.grad.norm()
    res[name] = {
        "loss": float(loss),
        "activity": float(rec.o.mean()),
        "grad_norm_recurrent_layer": float(g_rnn),
        "grad_norm_readout": float(g_head),
        "logit_spread": float(logits.std()),
        "seconds": round(time.time() - t, 1),
    }
    print(name, res[name], flush=True)
print(json.dumps(res, indent=1))
