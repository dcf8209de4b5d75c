"""Classification runs of ``snntorch-egru train`` (digits, MNIST tasks, DVS Gesture, SHD).

The model is an EGRU classifier (or, with ``model="gru"``, the same classifier around a dense
``torch.nn.GRU``). A validation split held out of the training data selects the epoch whose
model is tested; the test split is read once, at the end.
"""

from __future__ import annotations

import copy
from typing import Any, Dict, List, Optional, Tuple

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset
from torch.utils.data.distributed import DistributedSampler

from ._data import VALID_SEED, collate_time_first, dataset_len, load_task_classification, split_train_valid
from ._dvs import build_frontend
from ._models import GRUClassifier, SequenceClassifier, build_egru, calibrate_classifier, dense_gru_macs, zero_state
from ._run_base import FinalTest, _Run, regularisers
from ._tasks import config_options

__all__: List[str] = []

#: tasks whose EvNN code tests the final epoch's model (reported next to the best validation epoch's)
EVNN_FINAL_EPOCH_TASKS = ("smnist", "psmnist")
#: the classifier arguments that :func:`classifier_model` takes from the config as they are
READOUT_OPTIONS = ("readout", "dropout", "readout_steps", "readout_dropout")


def classifier_model(cfg: Any, input_shape: List[int], num_classes: int) -> SequenceClassifier:
    """The classifier of ``cfg`` for inputs of ``input_shape`` per step (frames: ``[C, H, W]``); its
    ``rnn_input_size`` attribute is the width entering the recurrent layer."""
    frontend: Optional[nn.Module] = None
    in_size = int(torch.tensor(input_shape).prod())
    if len(input_shape) == 3:  # frames
        frontend = build_frontend(cfg.cnn, input_shape[0], input_shape[-1], cfg.dropout)
        in_size = frontend.features
    elif cfg.input_encoder:
        frontend = nn.Linear(in_size, cfg.input_encoder)
        in_size = cfg.input_encoder
    readout = dict(frontend=frontend, **config_options(cfg, READOUT_OPTIONS))
    model: SequenceClassifier
    if cfg.model == "gru":
        model = GRUClassifier(in_size, cfg.hidden_size, num_classes, num_layers=cfg.num_layers, **readout)
    else:
        model = SequenceClassifier(build_egru(cfg, in_size, cfg.hidden_size, cfg.num_layers), num_classes, **readout)
    model.rnn_input_size = in_size
    return model


class _ClassifyRun(_Run):
    """A run of a classification task; ``shadow`` (set before the final test) is a second model whose
    figures on the same test batches are collected in ``shadow_sums`` (the EvNN protocol's model)."""

    best_metric = "accuracy"
    best_mode = "max"
    model: SequenceClassifier  # or its subclass GRUClassifier
    shadow: Optional[nn.Module] = None

    # -- data and model ------------------------------------------------------------------------
    def _loader(self, ds: Dataset, batch: int, drop_last: bool = False) -> DataLoader:
        shard = Subset(ds, range(self.info.rank, dataset_len(ds), self.info.world_size))
        return DataLoader(
            shard,
            batch_size=batch,
            shuffle=False,
            collate_fn=collate_time_first,
            num_workers=self.cfg.num_workers,
            drop_last=drop_last,
        )

    def _splits(self, data: Any) -> Tuple[Dataset, Optional[Dataset], Dataset]:
        """``(train, valid, test)``: the task's fixed validation split, else ``valid_fraction`` of train."""
        cfg = self.cfg
        train, valid, test = data.train, data.valid, data.test
        if valid is not None:
            self.validation = {
                "source": "the task's fixed split of the training set (EvNN: random_split, seed "
                f"{VALID_SEED}, the last 20 % of the permutation)"
            }
        elif cfg.valid_fraction > 0:
            train, valid = split_train_valid(train, cfg.valid_fraction, VALID_SEED)
            self.validation = {
                "source": f"{cfg.valid_fraction:g} of the training set held out (random split, "
                f"seed {VALID_SEED}, independent of --seed)"
            }
        else:
            self.validation = {"source": "none (--valid-fraction 0): the last epoch's model is tested"}
        if cfg.limit_train:
            train = Subset(train, range(min(cfg.limit_train, len(train))))
        if cfg.limit_test:
            test = Subset(test, range(min(cfg.limit_test, len(test))))
            if valid is not None:
                valid = Subset(valid, range(min(cfg.limit_test, len(valid))))
        return train, valid, test

    def _build(self) -> Tuple[nn.Module, bool]:
        cfg, info = self.cfg, self.info
        data = load_task_classification(cfg, cfg.download)
        train, valid, test = self._splits(data)
        self.sampler: DistributedSampler[Any] = DistributedSampler(
            train, num_replicas=info.world_size, rank=info.rank, shuffle=True, seed=cfg.seed, drop_last=False
        )
        self.train_loader = DataLoader(
            train,
            batch_size=cfg.batch_size // info.world_size,
            sampler=self.sampler,
            collate_fn=collate_time_first,
            num_workers=cfg.num_workers,
        )
        self.test_loader = self._loader(test, cfg.test_batch_size or cfg.eval_batch_size, cfg.test_drop_last)
        self.n_train, self.n_test = dataset_len(train), dataset_len(test)
        if valid is not None:
            self.valid_loader = self._loader(valid, cfg.eval_batch_size)
            self.n_valid = dataset_len(valid)
            self.validation["samples"] = self.n_valid
        self.steps = data.steps
        self.sample_step = torch.zeros((1,) + tuple(data.input_shape))
        model = self._model(data)
        self.calibration = calibrate_classifier(cfg, model, train, collate_time_first)
        return model, valid is not None

    def _model(self, data: Any) -> SequenceClassifier:
        self.spec = {"input_shape": [int(d) for d in data.input_shape], "num_classes": int(data.num_classes)}
        model = classifier_model(self.cfg, self.spec["input_shape"], self.spec["num_classes"])
        self.rnn_input_size = model.rnn_input_size
        return model

    # -- batches ---------------------------------------------------------------------------------
    def _train_batches(self, epoch: int, sums: List[float], desc: str) -> None:
        cfg = self.cfg
        egru = cfg.model == "egru"
        self.sampler.set_epoch(epoch)
        bar = self._bar(self.train_loader, len(self.train_loader), desc)
        for x, y in bar:
            x, y = x.to(self.device), y.to(self.device)
            start = (
                zero_state(self.model.egru, x.shape[1], requires_grad=True)
                if cfg.layer_grad_clip > 0 and egru
                else None
            )
            logits, rec = self.net(x) if start is None else self.net(x, start)
            ce = nn.functional.cross_entropy(logits, y)
            self._step(ce + regularisers(cfg, [rec], self.model) if egru else ce, [start] if egru else None)
            n = y.numel()
            act = rec.o.detach().mean().item()
            sums[0] += ce.item() * n
            sums[1] += (logits.argmax(1) == y).sum().item()
            sums[2] += act * n
            sums[3] += n
            bar.set_postfix(loss=f"{ce.item():.3f}", acc=f"{sums[1] / sums[3]:.3f}", act=f"{act:.3f}")

    def _eval_batches(self, split: str, keep_raster: bool, sums: List[float]) -> None:
        shadow = self.shadow if split == "test" else None
        if shadow is not None:
            shadow.eval()
            self.shadow_sums = [0.0] * self.N_SUMS
        for x, y in self.valid_loader if split == "valid" else self.test_loader:
            x, y = x.to(self.device), y.to(self.device)
            rec = _accumulate(self.model, x, y, sums)
            if shadow is not None:
                _accumulate(shadow, x, y, self.shadow_sums)
            if keep_raster and self.raster is None:
                self.raster = rec.o[-1, :, 0].cpu()

    # -- the end ---------------------------------------------------------------------------------
    def keep_final_epoch_model(self) -> None:
        """For the EvNN protocol: keep a copy of the final epoch's model before the best one is
        restored; the final test gives its figures from the same single pass over the test batches."""
        if self.cfg.task in EVNN_FINAL_EPOCH_TASKS:
            self.shadow = copy.deepcopy(self.model)

    def final_test(self) -> Tuple[Dict[str, float], Dict[str, Any], Dict[str, str]]:
        if self.cfg.model == "egru":
            return super().final_test()
        final = self.evaluate("test", keep_raster=True)
        macs = float(dense_gru_macs(self.rnn_input_size, self.cfg.hidden_size, self.cfg.num_layers, self.steps))
        eff = {
            "activity": final["activity"],
            "effective_macs": macs,
            "dense_macs": macs,
            "batch_union_activity": final["activity"],
            "layers": [],
        }
        why = "a dense GRU has no events: its backward pass is dense"
        return final, eff, {"backward_sparsity": why, "backward_macs": why}

    def shadow_figures(self) -> Optional[Dict[str, float]]:
        return self._eval_figures(self.shadow_sums) if self.shadow is not None else None

    # -- figures and words ------------------------------------------------------------------------
    def _train_figures(self, s: List[float]) -> Dict[str, float]:
        return {"train_accuracy": s[1] / s[3]}

    def _task_figures(self, out: Dict[str, float], s: List[float], n: float) -> Dict[str, float]:
        return {"accuracy": s[1] / n, "correct": s[1]}

    def epoch_words(self, ev: Dict[str, float]) -> str:
        return f", {self.select_split} acc {100 * ev['accuracy']:.2f}%"

    def model_words(self) -> str:
        cfg = self.cfg
        what = ("dense GRU" if cfg.model == "gru" else "EGRU") + f"({cfg.hidden_size})"
        return f"{cfg.num_layers}-layer {what}" if cfg.num_layers > 1 else what

    def nir_note(self) -> str:
        cfg = self.cfg
        if cfg.readout == "rate":
            steps = f"the last {cfg.readout_steps} steps" if cfg.readout_steps else "all steps"
            return (
                "front end -> EGRU -> readout Linear applied to the events y; the trained model's logits are "
                f"this graph's outputs averaged over {steps} (faithful)"
            )
        what = "internal state c" if cfg.readout == "state" else "trace"
        return (
            "front end -> EGRU -> readout Linear applied to the events y "
            f"(training read out the {cfg.readout!r} {what}, which this graph does not represent)"
        )

    def test_figures(self, final: Dict[str, float]) -> Dict[str, Any]:
        m: Dict[str, Any] = {"test_accuracy": final["accuracy"], "test_correct": int(round(final["correct"]))}
        if self.best is not None and self.best.value is not None:
            m["valid_accuracy"] = self.best.value
        return m

    def sample_counts(self) -> Dict[str, int]:
        counts = {"train_samples": self.n_train, "test_samples": self.n_test}
        if self.valid_loader is not None:
            counts["valid_samples"] = self.n_valid
        return counts

    def protocols(self, t: FinalTest, history: List[Dict[str, Any]]) -> Tuple[str, Dict[str, Any]]:
        if self.best is not None:
            if self.cfg.task not in EVNN_FINAL_EPOCH_TASKS:
                return "best validation epoch, tested once", {"label": "no EvNN recipe for this task"}
            rec = {
                "label": "EvNN sMNIST code: the final epoch's model on the test set (validation only printed)",
                "test_accuracy": (t.last_test or t.final)["accuracy"],
                "epoch": t.completed,
            }
            return "best validation epoch, tested once", rec
        if self.cfg.task != "dvsgesture":
            return "last epoch (no validation split), tested once", {"label": "no EvNN recipe for this task"}
        if not history:
            return "last epoch (no validation split)", {"label": "no epoch trained", "epoch": 0}
        accs = [h["eval_accuracy"] for h in history]
        k = max(range(len(accs)), key=accs.__getitem__)
        rec = {
            "label": "EvNN DVS code: best test accuracy over the epochs (the test set doubles as validation: "
            "optimistic, not a held-out figure; how the paper's 97.8 % was selected)",
            "test_accuracy": accs[k],
            "epoch": history[k]["epoch"],
        }
        return "last epoch (no validation split), tested once", rec


def _accumulate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, sums: List[float]) -> Any:
    """Add one batch's loss, correct answers, activity and count to ``sums``; returns the record."""
    logits, rec = model(x)
    n = y.numel()
    sums[0] += nn.functional.cross_entropy(logits, y, reduction="sum").item()
    sums[1] += (logits.argmax(1) == y).sum().item()
    sums[2] += rec.o.mean().item() * n
    sums[3] += n
    return rec
