"""The shared part of a training run: optimiser, schedule, regularisers, one update, the epoch skeleton.

:class:`_Run` is the runner; ``_loop.make_run(cfg, info, command)`` builds the runner of the task's kind
(:class:`~._run_classify._ClassifyRun` or :class:`~._run_lm._LMRun`). Subclasses give the data, the
model and the batches (``_build``, ``_train_batches``, ``_eval_batches``) and own what differs between
the kinds of task: the validation figure the best checkpoint tracks (``best_metric``, ``best_mode``),
the task's figures of an epoch and of the test (``_train_figures``, ``_task_figures``, ``epoch_words``,
``test_figures``, ``sample_counts``), the model's name and the NIR note; the epoch, evaluation and
final-test skeletons here are the same for both.
"""

from __future__ import annotations

import math
import os
from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Tuple

import torch
from torch import nn

from ..modules import EGRU
from . import _distributed as D
from ._best import BestCheckpoint
from ._models import clip_layer_gradients, layer_gradient_groups
from ._tasks import TrainConfig

__all__ = ["regularisers", "FinalTest", "EFFICIENCY_KEYS"]

#: the figures of the activity tracker over the final test (besides its ``activity``), in metrics.json
EFFICIENCY_KEYS = (
    "batch_union_activity",
    "backward_sparsity",
    "effective_macs",
    "dense_macs",
    "backward_macs",
    "dense_backward_macs",
)


class FinalTest(NamedTuple):
    """The end of a run: the test figures of the selected model (``final``), the activity tracker's
    figures (``eff``) and the reasons of those absent (``absent``), the figures of the model a task's
    EvNN protocol tests besides it (``last_test``, or None), the selected and the last completed epoch."""

    final: Dict[str, float]
    eff: Dict[str, Any]
    absent: Dict[str, str]
    last_test: Optional[Dict[str, float]]
    best_epoch: Optional[int]
    completed: int


# ----------------------------------------------------------------------------- building blocks
def _lr_factor(cfg: TrainConfig):
    E = cfg.epochs

    def factor(epoch: int) -> float:
        if cfg.schedule == "cosine":
            return 0.5 * (1 + math.cos(math.pi * min(epoch, E) / E))
        if cfg.schedule == "step":
            return cfg.step_gamma ** (epoch // max(cfg.step_size, 1))
        if cfg.schedule == "cosine_tail":
            start = int(cfg.cosine_start * E)
            if epoch < start:
                return 1.0
            return 0.5 * (1 + math.cos(math.pi * min(epoch - start, E - start) / max(E - start, 1)))
        return 1.0

    return factor


def _optimizer(cfg: TrainConfig, params) -> torch.optim.Optimizer:
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, betas=(cfg.beta1, 0.999), weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, betas=(cfg.beta1, 0.999), weight_decay=cfg.weight_decay)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.beta1, weight_decay=cfg.weight_decay)


def regularisers(cfg: TrainConfig, records: Sequence[Any], model: Optional[nn.Module] = None) -> torch.Tensor:
    """The activity and voltage regularisers over all layers' records.

    ``reg_form="smooth"``: ``activity_reg * (mean(o) - activity_target)^2`` (through the surrogate)
    plus ``voltage_reg * mean((c - voltage_target)^2)``.
    ``reg_form="evnn"`` (the EvNN DVS code): ``activity_reg * (mean(1[o != 0]) - activity_target)^2``,
    built from a comparison and so without gradient (it only shifts the loss), plus
    ``voltage_reg * sum_layers mean(c - (theta.detach() - voltage_target))``, linear in ``c``
    (``model`` gives the thresholds; one record per EGRU module, in module order).
    """
    total = records[0].o.new_zeros(())
    if cfg.reg_form == "evnn":
        if cfg.activity_reg:
            with torch.no_grad():
                act = torch.cat([(r.o != 0).float().reshape(-1) for r in records]).mean()
            total = total + cfg.activity_reg * (act - cfg.activity_target) ** 2
        if cfg.voltage_reg:
            if model is None:
                raise ValueError("reg_form 'evnn' needs the model (its thresholds) for the voltage term")
            egrus = [m for m in model.modules() if isinstance(m, EGRU)]
            for egru, r in zip(egrus, records):
                theta = torch.stack([_threshold(egru, k).detach() for k in range(egru.num_layers)])
                total = (
                    total
                    + cfg.voltage_reg * (r.c - (theta[:, None, None, :] - cfg.voltage_target)).mean(dim=(1, 2, 3)).sum()
                )
        return total
    if cfg.activity_reg:
        o = torch.cat([r.o.reshape(-1) for r in records])
        total = total + cfg.activity_reg * (o.mean() - cfg.activity_target) ** 2
    if cfg.voltage_reg:
        c = torch.cat([r.c.reshape(-1) for r in records])
        total = total + cfg.voltage_reg * ((c - cfg.voltage_target) ** 2).mean()
    return total


def _threshold(egru: EGRU, k: int) -> torch.Tensor:
    """The threshold of layer ``k`` of ``egru`` (every layer has one; only the biases may be None)."""
    theta = egru.layer_tensors(k)["threshold"]
    if theta is None:
        raise ValueError(f"EGRU layer {k} has no threshold")
    return theta


def _apply_optimizer_settings(r: "_Run", cfg: TrainConfig) -> None:
    """After loading a checkpoint's optimiser and scheduler: use this invocation's lr, weight decay and
    beta1 (momentum for SGD) from the resumed epoch on (the schedule's factor at that epoch applies)."""
    factor = r.scheduler.lr_lambdas[0](r.scheduler.last_epoch)
    r.scheduler.base_lrs = [cfg.lr for _ in r.optimizer.param_groups]
    for g in r.optimizer.param_groups:
        g["initial_lr"] = cfg.lr
        g["lr"] = cfg.lr * factor
        g["weight_decay"] = cfg.weight_decay
        if "betas" in g:
            g["betas"] = (cfg.beta1, g["betas"][1])
        if "momentum" in g:
            g["momentum"] = cfg.beta1
    r.scheduler._last_lr = [g["lr"] for g in r.optimizer.param_groups]


class _Run:
    """One training run of ``cfg`` (data, model, optimiser); ``_loop.make_run`` picks the task's kind."""

    model: nn.Module
    #: the summed quantities of an epoch or evaluation: loss*n, correct (or 0), activity*n, n
    N_SUMS = 4
    #: the figure of ``evaluate`` that selects the best validation epoch (also the history's ``eval_<metric>``)
    best_metric: str
    #: ``"max"`` (higher is better) or ``"min"``: the direction of :class:`BestCheckpoint`
    best_mode: str
    #: set by ``_build``: one input step of the model (for the NIR export), the task's shape of data
    #: (saved in the checkpoint) and where the validation split comes from (metrics.json)
    sample_step: torch.Tensor
    spec: Dict[str, Any]
    validation: Dict[str, Any]

    def __init__(self, cfg: TrainConfig, info: D.DistInfo, command: str) -> None:
        self.cfg, self.info, self.command = cfg, info, command
        if cfg.device == "cuda":
            self.device = torch.device("cuda", info.local_rank if info.enabled else torch.cuda.current_device())
        else:
            self.device = torch.device("cpu")
        self.raster: Optional[torch.Tensor] = None
        self.valid_loader: Any = None

    # -- data and model ------------------------------------------------------------------------
    def _build(self) -> Tuple[nn.Module, bool]:
        """Data and model; returns ``(model, has_validation)``. Sets ``sample_step``."""
        raise NotImplementedError

    def build(self) -> None:
        cfg, info = self.cfg, self.info
        torch.manual_seed(cfg.seed)
        model, has_valid = self._build()
        self.model = model.to(self.device)
        self.net: nn.Module = self.model
        if info.enabled:
            ids = [info.local_rank] if self.device.type == "cuda" else None
            self.net = nn.parallel.DistributedDataParallel(self.model, device_ids=ids)
        self.optimizer = _optimizer(cfg, [p for p in self.model.parameters() if p.requires_grad])
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, _lr_factor(cfg))
        self.select_split = "valid" if has_valid else "test"
        self.best = BestCheckpoint(os.path.join(cfg.run_dir, "best.pt"), self.best_mode) if has_valid else None

    # -- epochs ----------------------------------------------------------------------------------
    def _bar(self, it, total: int, desc: str):
        from tqdm.auto import tqdm

        return tqdm(
            it,
            total=total,
            desc=desc,
            leave=False,
            dynamic_ncols=True,
            disable=not (self.cfg.progress and self.info.is_main),
        )

    def _step(self, loss: torch.Tensor, initial_states: Optional[List[Any]] = None) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.cfg.layer_grad_clip > 0:  # EvNN's in-op clip of each EGRU layer, before the global clip
            clip_layer_gradients(layer_gradient_groups(self.model, initial_states), self.cfg.layer_grad_clip)
        if self.cfg.grad_clip > 0:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
        self.optimizer.step()

    def _train_batches(self, epoch: int, sums: List[float], desc: str) -> None:
        raise NotImplementedError

    def train_epoch(self, epoch: int) -> Dict[str, float]:
        self.net.train()
        torch.manual_seed(self.cfg.seed + 7919 * (epoch + 1) + self.info.rank)  # exact resume, per-rank masks
        sums = [0.0] * self.N_SUMS
        self._train_batches(epoch, sums, f"epoch {epoch + 1}/{self.cfg.epochs}")
        self.scheduler.step()
        s = D.all_reduce_sum(sums, self.info, self.device)
        out = {"train_loss": s[0] / s[3], "train_activity": s[2] / s[3]}
        out.update(self._train_figures(s))
        return out

    def _train_figures(self, s: List[float]) -> Dict[str, float]:
        """The task's figures of a training epoch from its summed quantities ``s`` (all ranks)."""
        raise NotImplementedError

    def _eval_batches(self, split: str, keep_raster: bool, sums: List[float]) -> None:
        raise NotImplementedError

    @torch.no_grad()
    def evaluate(self, split: str = "test", keep_raster: bool = False) -> Dict[str, float]:
        self.net.eval()
        sums = [0.0] * self.N_SUMS
        self._eval_batches(split, keep_raster, sums)
        return self._eval_figures(sums)

    def _eval_figures(self, sums: List[float]) -> Dict[str, float]:
        s = D.all_reduce_sum(sums, self.info, self.device)
        n = max(s[3], 1.0)
        out = {"loss": s[0] / n, "activity": s[2] / n}
        out.update(self._task_figures(out, s, n))
        return out

    def _task_figures(self, out: Dict[str, float], s: List[float], n: float) -> Dict[str, float]:
        """The task's figures of an evaluation (``best_metric`` among them) beside its loss and activity ``out``."""
        raise NotImplementedError

    def epoch_words(self, ev: Dict[str, float]) -> str:
        """The validation figure in the line printed after an epoch (``", valid acc 97.10%"``)."""
        raise NotImplementedError

    # -- the model ---------------------------------------------------------------------------------
    def model_words(self) -> str:
        """The model in words, for the line printed when a run starts (``EGRU(256)``)."""
        raise NotImplementedError

    def nir_note(self) -> str:
        """What the exported NIR graph holds of the trained model (metrics.json's ``nir_note``)."""
        raise NotImplementedError

    # -- the end ---------------------------------------------------------------------------------
    def final_test(self) -> Tuple[Dict[str, float], Dict[str, Any], Dict[str, str]]:
        """The one pass over the test split: ``(figures, efficiency, absent)``.

        The activity tracker counts this pass and the raster of the first test sample is kept,
        so the test data are read once at the end of a run.
        """
        try:
            from .. import metrics
        except ImportError as err:
            reason = f"snntorch_egru.metrics is not available ({err})"
            return (
                self.evaluate("test", keep_raster=True),
                {},
                {k: reason for k in ("backward_sparsity", "effective_macs", "dense_macs")},
            )
        with metrics.track(self.model) as tracker:
            final = self.evaluate("test", keep_raster=True)
        summ = tracker.summary()
        keys = ("activity",) + EFFICIENCY_KEYS
        calls = sum(layer.get("samples", 1) for layer in summ.get("layers", [])) or 1
        reduced = D.all_reduce_sum([summ[k] * calls for k in keys] + [calls], self.info, self.device)
        out = {k: reduced[i] / reduced[-1] for i, k in enumerate(keys)}
        out["layers"] = summ.get("layers", [])
        return final, out, {}

    def keep_final_epoch_model(self) -> None:
        """Before the best epoch's model is restored: keep what a task's EvNN protocol tests besides it
        (nothing here)."""

    def shadow_figures(self) -> Optional[Dict[str, float]]:
        """Figures of the model kept by ``keep_final_epoch_model`` from the final test (None: none kept)."""
        return None

    def test_figures(self, final: Dict[str, float]) -> Dict[str, Any]:
        """The task's test figures (and the best validation figure) for metrics.json."""
        raise NotImplementedError

    def sample_counts(self) -> Dict[str, int]:
        """The sizes of the splits, for metrics.json (none here)."""
        return {}

    def protocols(self, t: FinalTest, history: List[Dict[str, Any]]) -> Tuple[str, Dict[str, Any]]:
        """Label of the reported test number and the number the EvNN code's protocol gives, labelled."""
        raise NotImplementedError
