"""Models of ``snntorch-egru train``: an EGRU sequence classifier and an EGRU language model."""

from __future__ import annotations

import inspect
from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Tuple, cast

import torch
from torch import nn

from ..init import calibrate_thresholds
from ..modules import EGRU
from ..state import EGRURecord, EGRUState
from ._lm import locked_dropout
from ._tasks import config_options

__all__ = [
    "SequenceClassifier",
    "GRUClassifier",
    "DenseRecord",
    "dense_gru_macs",
    "MODELS",
    "LanguageModel",
    "FrameCNN",
    "build_egru",
    "READOUTS",
    "LM_STATES",
    "READOUT_DROPOUTS",
    "window_start_state",
    "zero_state",
    "layer_gradient_groups",
    "clip_layer_gradients",
    "calibrate_classifier",
    "CALIBRATION_SAMPLES",
]

READOUTS = ("last", "mean", "rate", "state")
READOUT_DROPOUTS = ("pooled", "step")
LM_STATES = ("full", "y")
MODELS = ("egru", "gru")


def window_start_state(state: EGRUState, mode: str) -> EGRUState:
    """The state a BPTT window starts from, given the previous window's final ``state``.

    ``mode="full"`` keeps ``(y, c, trace)``: the windows continue one sequence exactly.
    ``mode="y"`` is the EvNN recipe: only the last events ``y_T`` are passed on, the internal
    state ``c`` and the trace start from zero in every window (the EvNN op zeroes them on each
    call), in training and in evaluation.
    """
    if mode == "full":
        return state
    if mode == "y":
        return EGRUState(state.y, torch.zeros_like(state.c), torch.zeros_like(state.trace))
    raise ValueError(f"lm_state must be 'full' or 'y', got {mode!r}")


#: the :class:`~snntorch_egru.EGRU` arguments that :func:`build_egru` takes from the config as they are
EGRU_OPTIONS = (
    "zoneout",
    "dampening_factor",
    "pseudo_derivative_support",
    "thr_mean",
    "learn_threshold",
    "init",
    "backend",
)


def build_egru(
    cfg, input_size: int, hidden_size: int, num_layers: int = 1, dropconnect: Optional[float] = None
) -> EGRU:
    """An :class:`~snntorch_egru.EGRU` with the options of a training config."""
    return EGRU(
        input_size,
        hidden_size,
        num_layers=num_layers,
        dropout=cfg.dropout if num_layers > 1 else 0.0,
        dropconnect=cfg.dropconnect if dropconnect is None else dropconnect,
        **config_options(cfg, EGRU_OPTIONS),
    )


#: training samples in the batch that ``threshold_init="calibrated"`` calibrates the thresholds on
CALIBRATION_SAMPLES = 128


def calibrate_classifier(cfg, model: nn.Module, train: Any, collate: Any) -> Optional[Dict[str, Any]]:
    """``threshold_init="calibrated"``: set the EGRU thresholds of ``model`` from one training batch.

    The batch is :data:`CALIBRATION_SAMPLES` samples of ``train`` drawn with a generator seeded by
    ``cfg.seed`` (the global random stream is not used, so the rest of the run draws as before), stacked by
    ``collate``; :func:`snntorch_egru.init.calibrate_thresholds` then scales each layer's input weights to
    an input drive of standard deviation 1 and gives every unit an event rate of ``cfg.activity_target`` on it.
    Returns its report (plus the samples used), or None when nothing is
    calibrated (``threshold_init="beta"`` or a model without EGRU layers, e.g. the GRU baseline).
    """
    if cfg.threshold_init == "beta" or not any(isinstance(m, EGRU) for m in model.modules()):
        return None
    if cfg.threshold_init != "calibrated":
        raise ValueError(f"threshold_init must be 'calibrated' or 'beta', got {cfg.threshold_init!r}")
    g = torch.Generator().manual_seed(int(cfg.seed))
    idx = torch.randperm(len(train), generator=g)[:CALIBRATION_SAMPLES].tolist()
    x, _ = collate([train[i] for i in idx])
    p = next(model.parameters())
    report = calibrate_thresholds(model, x.to(p.device), cfg.activity_target, input_std=1.0)
    report["samples"] = len(idx)
    return report


def zero_state(egru: EGRU, batch: int, device=None, requires_grad: bool = False) -> EGRUState:
    """An all-zero :class:`~snntorch_egru.EGRUState` for ``egru`` (``[num_layers, batch, H]``).

    With ``requires_grad`` the events ``y`` are a leaf whose ``.grad`` receives the gradient of
    the initial state (what EvNN's in-op clip includes in each layer's norm).
    """
    p = next(egru.parameters())
    shape = (egru.num_layers, batch, egru.hidden_size)
    y = torch.zeros(shape, dtype=p.dtype, device=p.device if device is None else device)
    return EGRUState(y.requires_grad_(requires_grad), torch.zeros_like(y), torch.zeros_like(y))


def layer_gradient_groups(
    model: nn.Module, initial_states: Optional[Sequence[Optional[EGRUState]]] = None
) -> List[Tuple[List[torch.Tensor], Optional[torch.Tensor], int]]:
    """One ``(parameters, initial_y, k)`` group per EGRU layer of ``model`` (module order).

    ``parameters`` are layer ``k``'s trainable tensors (weights, biases, thresholds when
    learned); ``initial_y`` is the leaf ``y`` of the state that the EGRU module started from
    (``initial_states[i]`` for the ``i``-th EGRU module; None: not counted), of which row ``k``
    is this layer's.
    """
    egrus = [m for m in model.modules() if isinstance(m, EGRU)]
    if initial_states is not None and len(initial_states) != len(egrus):
        raise ValueError(
            f"initial_states must have one entry per EGRU module ({len(egrus)}), got {len(initial_states)}"
        )
    groups: List[Tuple[List[torch.Tensor], Optional[torch.Tensor], int]] = []
    for i, egru in enumerate(egrus):
        start = None if initial_states is None else initial_states[i]
        y0 = None if start is None else start.y
        for k in range(egru.num_layers):
            params: List[torch.Tensor] = [
                t for t in egru.layer_tensors(k).values() if isinstance(t, nn.Parameter) and t.requires_grad
            ]
            groups.append((params, y0, k))
    return groups


@torch.no_grad()
def clip_layer_gradients(
    groups: Sequence[Tuple[List[torch.Tensor], Optional[torch.Tensor], int]], max_norm: float
) -> List[float]:
    """EvNN's in-op clip, done after ``backward``: scale each layer's own gradients to at most ``max_norm``.

    For every group of :func:`layer_gradient_groups` the norm is taken over the layer's
    parameter gradients and the gradient of its initial events ``y_0`` (as EvNN's op: ``dW, dR,
    db_x, db_r, dtheta`` and ``dy_0``; the input gradient ``dx`` is neither counted nor scaled,
    it has already flowed on to the layers below). The parameter gradients are multiplied by
    ``min(1, max_norm / (norm + 1e-6))``. Run it before the global ``clip_grad_norm_``.
    Returns the norms before clipping.
    """
    norms = []
    for params, y0, k in groups:
        grads = [p.grad for p in params if p.grad is not None]
        sq = sum((g.double().pow(2).sum() for g in grads), torch.zeros((), dtype=torch.float64))
        if y0 is not None and y0.grad is not None:
            sq = sq + y0.grad[k].double().pow(2).sum()
        norm = float(sq.sqrt())
        coef = min(1.0, max_norm / (norm + 1e-6))
        if coef < 1.0:
            for g in grads:
                g.mul_(coef)
        norms.append(norm)
    return norms


class FrameCNN(nn.Module):
    """Small per-frame CNN front end: ``[T, B, P, S, S]`` frames to ``[T, B, features]``.

    Three strided convolutions (16, 32, 64 channels) with ReLU, global average pooling,
    then a linear layer to ``features`` (256 in the DVS preset; the recipe's AlexNet-like
    CNN is larger).
    """

    def __init__(self, in_channels: int = 2, features: int = 256) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(in_channels, 16, 5, stride=2, padding=2),
            nn.ReLU(),
            nn.Conv2d(16, 32, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(32, 64, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(64, features),
            nn.ReLU(),
        )
        self.features = features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        T, B = x.shape[:2]
        return self.net(x.reshape((T * B,) + tuple(x.shape[2:]))).reshape(T, B, self.features)


class SequenceClassifier(nn.Module):
    """Optional front end -> EGRU -> linear readout of the output trace.

    Args:
        egru: the recurrent layer(s).
        num_classes: number of classes.
        frontend: module mapping ``[T, B, *F]`` to ``[T, B, egru.input_size]`` (or None).
        readout: ``"last"`` (trace at the final step), ``"mean"`` (trace averaged over steps),
            ``"rate"`` (the Linear readout applied to the events ``y`` at every step and the
            logits averaged over the steps, rate-coded like snnTorch's ``ce_rate_loss``; as the
            readout is linear this equals the Linear of the time-averaged events, and it is
            exactly the per-step graph of the NIR export plus a time average outside it)
            or ``"state"`` (internal state ``c`` after the final step, like a GRU's ``h_T``).
        dropout: dropout on the readout's input (trace, events or state).
        readout_dropout: ``"pooled"`` drops the pooled readout input once (for ``"mean"``: the
            time-averaged trace, one mask per sample); ``"step"`` (the EvNN DVS recipe) drops the
            per-step input at every step with independent masks, applies the Linear at every
            step and averages the logits (``"mean"`` and ``"rate"``; the same as ``"pooled"``
            for ``"last"`` and ``"state"``, which read one step).

    Inputs: ``x`` of shape ``[T, B, *F]``. Outputs: ``logits [B, num_classes]`` and the
    :class:`~snntorch_egru.EGRURecord` of the EGRU.
    """

    #: the width entering the recurrent layer (set by ``_run_classify.classifier_model``)
    rnn_input_size: int

    def __init__(
        self,
        egru: EGRU,
        num_classes: int,
        frontend: Optional[nn.Module] = None,
        readout: str = "last",
        dropout: float = 0.0,
        readout_steps: int = 0,
        readout_dropout: str = "pooled",
    ) -> None:
        super().__init__()
        if readout not in READOUTS:
            raise ValueError(f"readout must be 'last', 'mean', 'rate' or 'state', got {readout!r}")
        if readout_dropout not in READOUT_DROPOUTS:
            raise ValueError(f"readout_dropout must be 'pooled' or 'step', got {readout_dropout!r}")
        self.readout_dropout = readout_dropout
        self.frontend = frontend
        self.egru = egru
        self.readout = readout
        self.readout_steps = int(readout_steps)
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(egru.hidden_size, num_classes)

    def _sequences(self, x: torch.Tensor, state: Optional[Any]) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, Any]:
        """``(events y [T, B, H], trace [T, B, H], final state c [B, H], record)`` of the last layer."""
        _, _, rec = self.egru(x, state, return_internals=True)
        return rec.y[-1], rec.trace[-1], rec.c[-1, -1], rec

    def _readout(self, y: torch.Tensor, trace: torch.Tensor, c_last: torch.Tensor) -> torch.Tensor:
        if self.readout_dropout == "step" and self.readout in ("mean", "rate"):
            seq = y if self.readout == "rate" else trace
            if self.readout == "rate" and self.readout_steps:
                seq = seq[-self.readout_steps :]
            return self.head(self.drop(seq)).mean(0)  # a new mask at every step, logits averaged
        if self.readout == "rate":
            if self.readout_steps:
                y = y[-self.readout_steps :]
            feat = y.mean(0)  # mean_t head(y_t) == head(mean_t y_t): the head is linear
        elif self.readout == "state":
            feat = c_last  # internal state of the last layer after the last step
        else:
            feat = trace[-1] if self.readout == "last" else trace.mean(0)
        return self.head(self.drop(feat))

    def forward(self, x: torch.Tensor, state: Optional[EGRUState] = None) -> Tuple[torch.Tensor, EGRURecord]:
        if self.frontend is not None:
            x = self.frontend(x)
        y, trace, c_last, rec = self._sequences(x, state)
        return self._readout(y, trace, c_last), rec


class DenseRecord(NamedTuple):
    """What a dense GRU "emits": ``o [num_layers, T, B, H]``, 1 where a unit's output is non-zero."""

    o: torch.Tensor


class GRUClassifier(SequenceClassifier):
    """The same classifier around a dense :class:`torch.nn.GRU` (the baseline of ``--baseline gru``).

    Same front end, hidden size, layers, readout and dropout as the EGRU classifier: the arguments after
    ``num_layers`` are :class:`SequenceClassifier`'s after ``num_classes`` (``frontend``, ``readout``,
    ``dropout``, ``readout_steps``, ``readout_dropout``), by position or name. The GRU's
    output ``h`` plays the part of the events, of the trace and (``h_T``) of the final state.
    ``forward`` returns ``(logits, DenseRecord)``; a dense GRU's activity is the fraction of
    non-zero outputs (1.0 in practice).

    Example::

        >>> import torch
        >>> from snntorch_egru.training._models import GRUClassifier
        >>> m = GRUClassifier(1, 8, 10, readout="last")
        >>> logits, rec = m(torch.rand(5, 2, 1))
        >>> logits.shape, rec.o.shape
        (torch.Size([2, 10]), torch.Size([1, 5, 2, 8]))
    """

    def __init__(
        self, input_size: int, hidden_size: int, num_classes: int, num_layers: int = 1, *args: Any, **kwargs: Any
    ) -> None:
        # the rest are SequenceClassifier's arguments after num_classes, checked by its signature
        options = inspect.signature(SequenceClassifier.__init__).bind(self, None, num_classes, *args, **kwargs)
        options.apply_defaults()
        dropout = options.arguments["dropout"]
        gru = nn.GRU(input_size, hidden_size, num_layers=num_layers, dropout=dropout if num_layers > 1 else 0.0)
        # a dense nn.GRU in the EGRU's place: called alike, has hidden_size
        super().__init__(gru, num_classes, *args, **kwargs)  # type: ignore[arg-type]

    def _sequences(self, x: torch.Tensor, state: Optional[Any]) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, Any]:
        h, _ = self.egru(x, state)
        return h, h, h[-1], DenseRecord((h != 0).to(h.dtype)[None])


def dense_gru_macs(input_size: int, hidden_size: int, num_layers: int, steps: int) -> int:
    """Multiply-accumulates of a dense GRU per sample (the package's ``dense_macs`` convention).

    ``3 H (I + H)`` per layer and step (gate matrices; biases and readout not counted).

    Example::

        >>> from snntorch_egru.training._models import dense_gru_macs
        >>> dense_gru_macs(1, 4, 1, 64) == 64 * 3 * 4 * (1 + 4)
        True
    """
    total, i = 0, input_size
    for _ in range(num_layers):
        total += 3 * hidden_size * (i + hidden_size)
        i = hidden_size
    return steps * total


class LanguageModel(nn.Module):
    """Word-level EGRU language model with tied input and output embeddings.

    ``Embedding(V, E) -> EGRU(E, h1) -> ... -> EGRU(h_{n-1}, E) -> Linear(E, V)`` whose
    weight is the embedding matrix. Each layer is a one-layer :class:`~snntorch_egru.EGRU`
    so that sizes may differ. ``cfg.lm_state`` says what a window starts from when given the
    previous window's states (:func:`window_start_state`): ``"full"`` ``(y, c, trace)``, or
    ``"y"`` (the EvNN recipe: ``c`` and the trace zero at every window start). The same
    applies to a converted EvNN checkpoint (:func:`snntorch_egru.convert.load_evnn_state_dict`)
    evaluated in this model.

    Inputs: ``tokens [T, B]`` and a list of per-layer states (or None; :meth:`zero_states`).
    Outputs: ``logits [T, B, V]``, the new states, and the per-layer records.
    """

    def __init__(self, cfg, vocab_size: int) -> None:
        super().__init__()
        sizes: Sequence[int] = list(cfg.hidden_sizes or [cfg.hidden_size] * cfg.num_layers)
        if sizes[-1] != cfg.emb_size:
            sizes = list(sizes[:-1]) + [cfg.emb_size]  # tied weights need last size == embedding size
        self.embedding = nn.Embedding(vocab_size, cfg.emb_size)
        nn.init.uniform_(self.embedding.weight, -0.1, 0.1)
        ins = [cfg.emb_size] + list(sizes[:-1])
        self.layers = nn.ModuleList(build_egru(cfg, i, h) for i, h in zip(ins, sizes))
        self.decoder = nn.Linear(cfg.emb_size, vocab_size)
        self.decoder.weight = self.embedding.weight
        nn.init.zeros_(self.decoder.bias)
        self.dropout_emb, self.dropout_words = cfg.dropout_emb, cfg.dropout_words
        self.dropout_hidden, self.dropout_out = cfg.dropout, cfg.dropout_out
        self.dropout_mask = getattr(cfg, "dropout_mask", "time")  # variational masks (see ._lm)
        self.state_mode = getattr(cfg, "lm_state", "full")
        window_start_state(EGRUState(torch.zeros(1), torch.zeros(1), torch.zeros(1)), self.state_mode)  # validate

    def load_evnn_checkpoint(self, state_dict: Dict[str, torch.Tensor]) -> None:
        """Fill this model from an EvNN ``benchmarks/lm`` checkpoint (``model.state_dict()`` of its
        ``LanguageModel``, no projection): ``embeddings.weight``, ``decoder.decoder.bias`` and per
        layer ``rnns.{k}.{kernel, recurrent_kernel, bias, recurrent_bias, thr}``, converted with
        :func:`snntorch_egru.convert.evnn_to_torch`. Evaluate it with ``lm_state="y"`` (the
        preset) to run it as EvNN does.
        """
        from ..convert import load_evnn_state_dict

        for key in ("embeddings.weight", "decoder.decoder.bias"):
            if key not in state_dict:
                raise KeyError(f"EvNN LM checkpoint: missing {key!r} (got keys {sorted(state_dict)[:8]} ...)")
        layers = []
        for k in range(len(self.layers)):
            prefix = f"rnns.{k}."
            layers.append({n[len(prefix) :]: v for n, v in state_dict.items() if n.startswith(prefix)})
        extra = [n for n in state_dict if n.startswith("rnns.") and int(n.split(".")[1]) >= len(self.layers)]
        if extra:
            raise ValueError(f"EvNN LM checkpoint has more layers than this model ({len(self.layers)}): {extra[:3]}")
        with torch.no_grad():
            self.embedding.weight.copy_(state_dict["embeddings.weight"])
            self.decoder.bias.copy_(state_dict["decoder.decoder.bias"])
        for layer, tensors in zip(self.layers, layers):
            load_evnn_state_dict(layer, [tensors])

    def zero_states(self, batch: int, requires_grad: bool = False) -> List[EGRUState]:
        """All-zero start states of every layer (``y`` a leaf with ``requires_grad``: see :func:`zero_state`)."""
        return [zero_state(cast(EGRU, layer), batch, requires_grad=requires_grad) for layer in self.layers]

    def forward(
        self, tokens: torch.Tensor, states: Optional[List[EGRUState]] = None
    ) -> Tuple[torch.Tensor, List[EGRUState], List[EGRURecord]]:
        weight = self.embedding.weight
        if self.training and self.dropout_words > 0:
            keep = torch.empty(weight.shape[0], 1, device=weight.device).bernoulli_(1 - self.dropout_words)
            weight = weight * keep / (1 - self.dropout_words)
        x = nn.functional.embedding(tokens, weight)
        x = locked_dropout(x, self.dropout_emb, self.training, self.dropout_mask)
        new_states, records = [], []
        for k, layer in enumerate(self.layers):
            start = None if states is None else window_start_state(states[k], self.state_mode)
            _, st, rec = layer(x, start, return_internals=True)
            x = rec.y[-1]
            p = self.dropout_out if k == len(self.layers) - 1 else self.dropout_hidden
            x = locked_dropout(x, p, self.training, self.dropout_mask)
            new_states.append(st)
            records.append(rec)
        return self.decoder(x), new_states, records
