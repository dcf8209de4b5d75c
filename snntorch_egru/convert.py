"""Conversion between the official EvNN checkpoint layout and ours.

EvNN stores, per layer, ``kernel`` ``[I, 3H]`` and ``recurrent_kernel`` ``[H, 3H]``
(used as ``x @ W``), ``bias`` and ``recurrent_bias`` ``[3H]`` and ``thr`` ``[H]``,
with the 3H axis chunked ``[z | r | g]``. Ours is ``torch.nn.GRU``'s: ``[3H, I]``
rows in order ``(r, z, n)``. Conversion is a reorder plus a transpose; the
inverse restores the original tensors bit for bit.

Example::

    >>> import torch
    >>> from snntorch_egru.convert import evnn_to_torch, torch_to_evnn
    >>> H, I = 4, 3
    >>> evnn = {"kernel": torch.randn(I, 3 * H), "recurrent_kernel": torch.randn(H, 3 * H),
    ...         "bias": torch.randn(3 * H), "recurrent_bias": torch.randn(3 * H), "thr": torch.rand(H)}
    >>> ours = evnn_to_torch(evnn)
    >>> back = torch_to_evnn(ours)
    >>> all(torch.equal(back[k], evnn[k]) for k in evnn)
    True
"""

from __future__ import annotations

from typing import Dict, Mapping

import torch

from ._layer_setup import LAYER_TENSOR_NAMES

__all__ = ["evnn_to_torch", "torch_to_evnn", "load_evnn_state_dict"]

_EVNN_KEYS = ("kernel", "recurrent_kernel", "bias", "recurrent_bias")


def _zrg_to_rzn(t: torch.Tensor, H: int) -> torch.Tensor:
    # last axis [z | r | g] -> [r | z | n]
    return torch.cat([t[..., H : 2 * H], t[..., 0:H], t[..., 2 * H : 3 * H]], dim=-1)


def _rzn_to_zrg(t: torch.Tensor, H: int) -> torch.Tensor:
    return torch.cat([t[..., H : 2 * H], t[..., 0:H], t[..., 2 * H : 3 * H]], dim=-1)


def _hidden(evnn: Mapping[str, torch.Tensor], key: str) -> int:
    t = evnn[key]
    if t.shape[-1] % 3:
        raise ValueError(f"{key} must have a last dimension of 3*hidden_size, got shape {tuple(t.shape)}")
    return t.shape[-1] // 3


def _expect(name: str, t: torch.Tensor, shape: tuple, what: str) -> None:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a tensor, got {type(t).__name__}")
    if tuple(t.shape) != shape:
        raise ValueError(
            f"{name} must have shape {list(shape)} ({what}), got {list(t.shape)}; "
            "the tensors of one layer must agree (nothing is truncated or padded)"
        )


def evnn_to_torch(evnn: Mapping[str, torch.Tensor], prefix: str = "", suffix: str = "") -> Dict[str, torch.Tensor]:
    """Convert one EvNN layer's tensors to ours.

    Args:
        evnn: mapping with ``{prefix}kernel``, ``{prefix}recurrent_kernel``,
            ``{prefix}bias``, ``{prefix}recurrent_bias`` and ``{prefix}thr`` (or
            ``{prefix}thr_reparam`` of v0.1.0 checkpoints, converted by a sigmoid).
        prefix: key prefix in ``evnn`` (e.g. ``"rnns.0."``).
        suffix: suffix for our names (``""`` for :class:`EGRUCell`, ``"_l0"`` for :class:`EGRU`).

    Returns:
        ``{weight_ih, weight_hh, bias_ih, bias_hh, threshold}`` with ``suffix`` appended:
        ``weight_ih [3H, I]``, ``weight_hh [3H, H]``, biases ``[3H]``, ``threshold [H]``.

    Raises:
        KeyError: a required EvNN key is missing.
        ValueError: the 3H axis is not a multiple of 3, or the tensors' shapes disagree
            (``kernel [I, 3H]``, ``recurrent_kernel [H, 3H]``, biases ``[3H]``, ``thr [H]``).

    Example::

        >>> import torch
        >>> from snntorch_egru.convert import evnn_to_torch
        >>> H, I = 4, 3
        >>> evnn = {"rnns.0.kernel": torch.randn(I, 3 * H), "rnns.0.recurrent_kernel": torch.randn(H, 3 * H),
        ...         "rnns.0.bias": torch.zeros(3 * H), "rnns.0.recurrent_bias": torch.zeros(3 * H),
        ...         "rnns.0.thr": torch.rand(H)}
        >>> ours = evnn_to_torch(evnn, prefix="rnns.0.", suffix="_l0")
        >>> sorted(ours)
        ['bias_hh_l0', 'bias_ih_l0', 'threshold_l0', 'weight_hh_l0', 'weight_ih_l0']
        >>> ours["weight_ih_l0"].shape                                   # [3H, I]
        torch.Size([12, 3])
        >>> torch.equal(ours["weight_ih_l0"][:H], evnn["rnns.0.kernel"][:, H:2 * H].T)   # EvNN's r block
        True
    """
    missing = [prefix + k for k in _EVNN_KEYS if prefix + k not in evnn]
    if missing:
        raise KeyError(f"EvNN state is missing {missing}; expected keys {[prefix + k for k in _EVNN_KEYS]}")
    H = _hidden(evnn, prefix + "recurrent_kernel")
    rk, k = evnn[prefix + "recurrent_kernel"], evnn[prefix + "kernel"]
    _expect(prefix + "recurrent_kernel", rk, (H, 3 * H), "[H, 3H], H from its last dimension")
    if not isinstance(k, torch.Tensor) or k.dim() != 2:
        raise ValueError(
            f"{prefix}kernel must be a 2-D tensor [I, 3H], got "
            f"{list(k.shape) if isinstance(k, torch.Tensor) else type(k).__name__}"
        )
    _expect(prefix + "kernel", k, (k.shape[0], 3 * H), f"[I, 3H] with H = {H}")
    for key in ("bias", "recurrent_bias"):
        _expect(prefix + key, evnn[prefix + key], (3 * H,), f"[3H] with H = {H}")
    for key in ("thr", "thr_reparam"):
        if prefix + key in evnn:
            _expect(prefix + key, evnn[prefix + key], (H,), f"[H] with H = {H}")
            break
    out = {
        "weight_ih": _zrg_to_rzn(evnn[prefix + "kernel"], H).T.contiguous(),
        "weight_hh": _zrg_to_rzn(evnn[prefix + "recurrent_kernel"], H).T.contiguous(),
        "bias_ih": _zrg_to_rzn(evnn[prefix + "bias"], H).clone(),
        "bias_hh": _zrg_to_rzn(evnn[prefix + "recurrent_bias"], H).clone(),
    }
    if prefix + "thr" in evnn:
        out["threshold"] = evnn[prefix + "thr"].clone()
    elif prefix + "thr_reparam" in evnn:
        out["threshold"] = torch.sigmoid(evnn[prefix + "thr_reparam"])
    else:
        raise KeyError(f"EvNN state has neither {prefix}thr nor {prefix}thr_reparam")
    return {k + suffix: v for k, v in out.items()}


def torch_to_evnn(ours: Mapping[str, torch.Tensor], suffix: str = "") -> Dict[str, torch.Tensor]:
    """Inverse of :func:`evnn_to_torch` for one layer (``thr`` layout of EvNN v0.2.0).

    Args:
        ours: mapping with ``weight_ih``, ``weight_hh``, ``bias_ih``, ``bias_hh`` and
            ``threshold`` (each with ``suffix`` appended), e.g. a module's ``state_dict()``.
        suffix: suffix of our names (``""`` for :class:`~snntorch_egru.EGRUCell`,
            ``"_l{k}"`` for layer ``k`` of :class:`~snntorch_egru.EGRU`).

    Returns:
        ``{kernel [I, 3H], recurrent_kernel [H, 3H], bias [3H], recurrent_bias [3H], thr [H]}``
        with the 3H axis in EvNN's ``[z | r | g]`` order.

    Example::

        >>> import torch, snntorch_egru as se
        >>> from snntorch_egru.convert import torch_to_evnn
        >>> rnn = se.EGRU(3, 4, num_layers=2)
        >>> evnn = torch_to_evnn(rnn.state_dict(), suffix="_l1")
        >>> evnn["kernel"].shape, evnn["thr"].shape
        (torch.Size([4, 12]), torch.Size([4]))
    """
    names = [n + suffix for n in LAYER_TENSOR_NAMES]
    missing = [n for n in names if n not in ours]
    if missing:
        raise KeyError(f"state is missing {missing}; expected keys {names}")
    whh = ours["weight_hh" + suffix]
    if not isinstance(whh, torch.Tensor) or whh.dim() != 2:
        raise ValueError(f"weight_hh{suffix} must be a 2-D tensor [3H, H]")
    H = whh.shape[1]
    _expect("weight_hh" + suffix, whh, (3 * H, H), "[3H, H], H from its last dimension")
    wih = ours["weight_ih" + suffix]
    if not isinstance(wih, torch.Tensor) or wih.dim() != 2:
        raise ValueError(f"weight_ih{suffix} must be a 2-D tensor [3H, I]")
    _expect("weight_ih" + suffix, wih, (3 * H, wih.shape[1]), f"[3H, I] with H = {H}")
    for key in ("bias_ih", "bias_hh"):
        _expect(key + suffix, ours[key + suffix], (3 * H,), f"[3H] with H = {H}")
    _expect("threshold" + suffix, ours["threshold" + suffix], (H,), f"[H] with H = {H}")
    return {
        "kernel": _rzn_to_zrg(ours["weight_ih" + suffix].T, H).contiguous(),
        "recurrent_kernel": _rzn_to_zrg(ours["weight_hh" + suffix].T, H).contiguous(),
        "bias": _rzn_to_zrg(ours["bias_ih" + suffix], H).clone(),
        "recurrent_bias": _rzn_to_zrg(ours["bias_hh" + suffix], H).clone(),
        "thr": ours["threshold" + suffix].clone(),
    }


def load_evnn_state_dict(module: torch.nn.Module, evnn_layers: list[Mapping[str, torch.Tensor]]) -> None:
    """Load EvNN per-layer tensors into an :class:`~snntorch_egru.EGRU` (one mapping per layer)
    or an :class:`~snntorch_egru.EGRUCell` (a list of one mapping).

    Each mapping is converted with :func:`evnn_to_torch` and the result is loaded
    with ``load_state_dict(strict=True)``.

    Args:
        module: the :class:`~snntorch_egru.EGRU` or :class:`~snntorch_egru.EGRUCell` to fill in place.
        evnn_layers: one mapping of EvNN tensors (``kernel``, ``recurrent_kernel``,
            ``bias``, ``recurrent_bias``, ``thr``) per layer, bottom layer first.

    Raises:
        ValueError: the number of mappings does not match the module's layers.
        TypeError: ``module`` is neither an EGRU nor an EGRUCell.

    Example::

        >>> import torch, snntorch_egru as se
        >>> from snntorch_egru.convert import load_evnn_state_dict, torch_to_evnn
        >>> src, dst = se.EGRU(3, 4, num_layers=2), se.EGRU(3, 4, num_layers=2)
        >>> layers = [torch_to_evnn(src.state_dict(), suffix=f"_l{k}") for k in range(2)]
        >>> load_evnn_state_dict(dst, layers)
        >>> torch.equal(dst.weight_hh_l1, src.weight_hh_l1)
        True
    """
    from .modules import EGRU, EGRUCell

    if isinstance(module, EGRU):
        if len(evnn_layers) != module.num_layers:
            raise ValueError(f"evnn_layers must hold {module.num_layers} layers, got {len(evnn_layers)}")
        sd: Dict[str, torch.Tensor] = {}
        for k, layer in enumerate(evnn_layers):
            sd.update(evnn_to_torch(layer, suffix=f"_l{k}"))
    elif isinstance(module, EGRUCell):
        if len(evnn_layers) != 1:
            raise ValueError(f"an EGRUCell takes one EvNN layer, got {len(evnn_layers)}")
        sd = evnn_to_torch(evnn_layers[0])
    else:
        raise TypeError(f"module must be an EGRU or EGRUCell, got {type(module).__name__}")
    module.load_state_dict(sd, strict=True)
