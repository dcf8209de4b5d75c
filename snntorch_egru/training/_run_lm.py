"""Language-model runs of ``snntorch-egru train`` (ptb, wikitext2): BPTT windows over a token stream.

Every process holds its own columns of the batchified training stream; validation selects the
best epoch and the final test (at ``test_batch_size``, the recipe's 1) is read once.
"""

from __future__ import annotations

import math
from typing import Any, Dict, List, Optional, Tuple

import torch
from torch import nn

from ..state import EGRUState
from ._data import batchify, load_corpus
from ._lm import awd_windows, lr_scale
from ._models import LanguageModel
from ._run_base import FinalTest, _Run, regularisers

__all__: List[str] = []


class _LMRun(_Run):
    best_metric = "perplexity"
    best_mode = "min"
    model: LanguageModel

    def _build(self) -> Tuple[nn.Module, bool]:
        cfg, info = self.cfg, self.info
        corpus = load_corpus(cfg.task, cfg.data_dir)
        self.corpus = corpus
        lb = cfg.batch_size // info.world_size
        train = batchify(corpus.train, cfg.batch_size)
        self.train_data = train[:, info.rank * lb : (info.rank + 1) * lb]
        self.valid_data = self._eval_columns(batchify(corpus.valid, cfg.eval_batch_size))
        self.test_data = self._eval_columns(batchify(corpus.test, cfg.test_batch_size or cfg.eval_batch_size))
        self.sample_step = torch.zeros(1, cfg.emb_size)
        self.validation = {"source": "the corpus's validation file"}
        self.spec = {"vocab_size": len(corpus.vocab)}
        return LanguageModel(cfg, len(corpus.vocab)), True

    def _eval_columns(self, data: torch.Tensor) -> torch.Tensor:
        return data[:, self.info.rank :: self.info.world_size]

    def _windows(self, epoch: int, n_rows: int) -> List[Tuple[int, int, int]]:
        """``(start, length, nominal length)`` of this epoch's BPTT windows (the same on every rank)."""
        cfg = self.cfg
        if cfg.variable_bptt:  # AWD windows, seeded by seed and epoch only
            return awd_windows(
                n_rows, cfg.bptt, torch.Generator().manual_seed(cfg.seed * 1_000_003 + epoch), with_nominal=True
            )
        return [(i, min(cfg.bptt, n_rows - 1 - i), cfg.bptt) for i in range(0, n_rows - 1, cfg.bptt)]

    def _start_states(self, states: Optional[List[Any]], batch: int) -> Optional[List[Any]]:
        if states is not None:
            states = [s.detach() for s in states]  # truncated BPTT: carry the state, cut the graph
        if self.cfg.layer_grad_clip > 0:  # the initial events become leaves: their gradient enters the clip
            states = [
                EGRUState(s.y.detach().requires_grad_(), s.c, s.trace)
                for s in (states if states is not None else self.model.zero_states(batch))
            ]
        return states

    def _train_batches(self, epoch: int, sums: List[float], desc: str) -> None:
        cfg, data = self.cfg, self.train_data
        windows = self._windows(epoch, data.shape[0])
        bar = self._bar(windows, len(windows), desc)
        base_lrs = [g["lr"] for g in self.optimizer.param_groups]
        states = None
        for i, seq, nominal in bar:
            x = data[i : i + seq].to(self.device)
            y = data[i + 1 : i + 1 + seq].to(self.device)
            start = states = self._start_states(states, x.shape[1])
            logits, states, recs = self.net(x, states)
            ce = nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
            for g, lr in zip(self.optimizer.param_groups, base_lrs):
                g["lr"] = (
                    lr * lr_scale(seq, nominal if cfg.bptt_lr_scale == "nominal" else cfg.bptt)
                    if cfg.variable_bptt
                    else lr
                )
            self._step(ce + regularisers(cfg, recs, self.model), start)
            n = y.numel()
            act = torch.cat([r.o.detach().reshape(-1) for r in recs]).mean().item()
            sums[0] += ce.item() * n
            sums[2] += act * n
            sums[3] += n
            bar.set_postfix(loss=f"{ce.item():.3f}", ppl=f"{math.exp(min(ce.item(), 50)):.1f}", act=f"{act:.3f}")
        for g, lr in zip(self.optimizer.param_groups, base_lrs):
            g["lr"] = lr

    def _eval_batches(self, split: str, keep_raster: bool, sums: List[float]) -> None:
        cfg = self.cfg
        data = self.valid_data if split == "valid" else self.test_data
        states = None
        for i in range(0, data.shape[0] - 1 if data.shape[1] else 0, cfg.bptt):  # no columns on this rank: skip
            seq = min(cfg.bptt, data.shape[0] - 1 - i)
            x = data[i : i + seq].to(self.device)
            y = data[i + 1 : i + 1 + seq].to(self.device)
            logits, states, recs = self.model(x, states)
            n = y.numel()
            sums[0] += nn.functional.cross_entropy(
                logits.reshape(-1, logits.shape[-1]), y.reshape(-1), reduction="sum"
            ).item()
            sums[2] += torch.cat([r.o.reshape(-1) for r in recs]).mean().item() * n
            sums[3] += n
            if keep_raster and self.raster is None and data.shape[1] > 0:
                self.raster = recs[-1].o[-1, :, 0].cpu()

    # -- figures and words ------------------------------------------------------------------------
    def _train_figures(self, s: List[float]) -> Dict[str, float]:
        return {}

    def _task_figures(self, out: Dict[str, float], s: List[float], n: float) -> Dict[str, float]:
        return {"perplexity": math.exp(min(out["loss"], 50.0))}

    def epoch_words(self, ev: Dict[str, float]) -> str:
        return f", valid ppl {ev['perplexity']:.2f}"

    def model_words(self) -> str:
        cfg = self.cfg
        return f"EGRU({'/'.join(map(str, cfg.hidden_sizes or [cfg.hidden_size] * cfg.num_layers))})"

    def nir_note(self) -> str:
        return "the EGRU stack only (embedding and tied decoder stay in PyTorch)"

    def test_figures(self, final: Dict[str, float]) -> Dict[str, Any]:
        m: Dict[str, Any] = {"test_perplexity": final["perplexity"]}
        if self.best is not None and self.best.value is not None:
            m["valid_perplexity"] = self.best.value
        return m

    def protocols(self, t: FinalTest, history: List[Dict[str, Any]]) -> Tuple[str, Dict[str, Any]]:
        tb = self.cfg.test_batch_size or self.cfg.eval_batch_size
        label = f"best validation epoch, tested once at batch {tb}"
        same = "same protocol" if tb == 1 else f"this run tested at batch {tb}, not the recipe's 1"
        return label, {
            "label": f"EvNN LM code: best validation-loss checkpoint, test batch 1 ({same})",
            "test_perplexity": t.final["perplexity"],
            "epoch": t.best_epoch,
        }
