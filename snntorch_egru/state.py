"""State containers: the sequence layer's :class:`EGRUState` and :class:`EGRURecord`, and the
Norse flavour's ``EGRURecurrentState`` (documented and exported by :mod:`snntorch_egru.norse`;
defined here so that every module can tell the two flavours' states apart)."""

from __future__ import annotations

from typing import NamedTuple, Optional, cast

import torch

__all__ = ["EGRUState", "EGRURecord"]


class EGRUState(NamedTuple):
    """Recurrent state of :class:`~snntorch_egru.EGRU`, carried between calls.

    Each field is ``[num_layers, B, H]`` (``[num_layers, H]`` for unbatched input).

    Use the fields by name. Unlike ``torch.nn.GRU``'s ``h_n`` (one tensor), the
    state holds three tensors, so ``state[-1]`` would silently be the *trace*
    field rather than the last layer: integer and slice indexing therefore raise
    ``TypeError`` (use ``state.y[-1]`` for the last layer's events, the
    counterpart of ``h_n[-1]``). Unpacking (``y, c, trace = state``), iteration,
    ``len``, ``_replace``, pickling, pytrees (``torch.compile``, ``torch.export``)
    and DDP work as for any named tuple.

    Attributes:
        y: last graded events of each layer (the recurrent input of the next step).
        c: internal state of each layer, after its reset.
        trace: exponential moving average (0.9 / 0.1) of each layer's events.

    Example::

        >>> import torch, snntorch_egru as se
        >>> layer = se.EGRU(3, 8, num_layers=2)
        >>> x = torch.randn(20, 4, 3)
        >>> out1, s = layer(x[:10])
        >>> out2, _ = layer(x[10:], s)          # continues the sequence exactly
        >>> s.y.shape
        torch.Size([2, 4, 8])
        >>> last_layer_events = s.y[-1]          # not s[-1] (that raises TypeError)
        >>> y, c, trace = s                      # unpacking works
    """

    y: torch.Tensor
    c: torch.Tensor
    trace: torch.Tensor

    def __getitem__(self, index: object) -> "torch.Tensor":  # type: ignore[override]
        raise TypeError(
            f"EGRUState cannot be indexed (got state[{index!r}]): its fields are y, c and trace, "
            "each [num_layers, B, H]; use state.y[-1] for the last layer's events (torch.nn.GRU's "
            "h_n[-1]), state.c / state.trace for the other fields, or unpack y, c, trace = state"
        )

    @classmethod
    def from_gru_hidden(cls, h0: torch.Tensor) -> "EGRUState":
        """State equivalent to a ``torch.nn.GRU`` hidden state ``h0``: ``y = c = h0``, zero trace.

        Use it with an EGRU built by :meth:`~snntorch_egru.EGRU.from_gru`.

        Example::

            >>> import torch, snntorch_egru as se
            >>> s = se.EGRUState.from_gru_hidden(torch.ones(1, 2, 4))   # [num_layers, B, H]
            >>> torch.equal(s.y, s.c), s.trace.abs().sum().item()
            (True, 0.0)
        """
        return cls(h0, h0, torch.zeros_like(h0))

    def detach(self) -> "EGRUState":
        """A copy with every tensor detached from the autograd graph (truncated BPTT).

        Example::

            >>> import torch, snntorch_egru as se
            >>> _, s = se.EGRU(3, 4)(torch.randn(5, 2, 3))
            >>> s.y.requires_grad, s.detach().y.requires_grad
            (True, False)
        """
        return EGRUState(self.y.detach(), self.c.detach(), self.trace.detach())


class EGRURecord(NamedTuple):
    """Per-step internals of every layer, returned by ``EGRU(..., return_internals=True)``.

    Each field is ``[num_layers, T, B, H]`` (batch dimension dropped for unbatched input).
    They stay in the autograd graph, so activity and voltage regularisers can use them.

    Attributes:
        y: graded events of each layer and step.
        c: internal state after the reset (the "voltage" of voltage regularisers).
        o: binary events ``H(c_hat - theta)`` (differentiable through the surrogate).
        trace: output trace of each layer and step.

    Example::

        >>> import torch, snntorch_egru as se
        >>> layer = se.EGRU(3, 8, num_layers=2)
        >>> out, state, rec = layer(torch.randn(20, 4, 3), return_internals=True)
        >>> rec.c.shape                          # [num_layers, T, B, H]
        torch.Size([2, 20, 4, 8])
        >>> torch.equal(rec.y[-1], out)          # the top layer's events are the output
        True
        >>> activity_loss = rec.o.mean()         # e.g. an activity regulariser
    """

    y: torch.Tensor
    c: torch.Tensor
    o: torch.Tensor
    trace: torch.Tensor


class EGRURecurrentState(NamedTuple):
    """State of the Norse-flavour EGRU, each field ``[B, H]`` (``[H]`` unbatched).

    The state that :class:`~snntorch_egru.norse.EGRURecurrentCell` and
    :class:`~snntorch_egru.norse.EGRURecurrent` take and return (named as Norse
    names the states of its recurrent cells, e.g. ``IzhikevichRecurrentState``).
    With ``EGRURecurrent(record_states=True)`` the returned state holds every step,
    each field ``[T, B, H]``. Formerly ``snntorch_egru.norse.EGRUState(y, c)``: that
    name remains as a deprecated alias, and ``EGRURecurrentState(y, c)`` (no trace)
    still means a zero trace.

    Attributes:
        y: graded events of the last step (the recurrent input of the next step).
        c: internal state after the reset.
        trace: exponential moving average (0.9 / 0.1) of the events, carried from
            step to step as in :class:`~snntorch_egru.EGRUState`; ``None`` means zeros.

    Example::

        >>> import torch
        >>> from snntorch_egru.norse import EGRURecurrentCell, EGRURecurrentState
        >>> s = EGRURecurrentState(torch.zeros(2, 8), torch.zeros(2, 8))   # zero trace
        >>> y, s = EGRURecurrentCell(3, 8)(torch.randn(2, 3), s)
        >>> s.trace.shape
        torch.Size([2, 8])
    """

    y: torch.Tensor
    c: torch.Tensor
    trace: Optional[torch.Tensor] = None


EGRURecurrentState.__module__ = "snntorch_egru.norse"  # its public home (pickles and docs name it there)


def _register_for_serialization() -> None:
    """Name the state types for pytree serialization, so ``torch.export.save`` of a model that takes or
    returns them works (namedtuples are pytree nodes already; this adds a stable serialized name)."""
    from collections import namedtuple

    from torch.fx import _pytree as fx_pytree
    from torch.utils import _pytree as pytree

    # An exported module flattens its namedtuple inputs with d[i], which EGRUState refuses (its fields
    # go by name): flatten every namedtuple with tuple.__getitem__ instead, the same values for any
    # namedtuple that keeps tuple's indexing.
    # torch's pytree keys every namedtuple under the factory function ``namedtuple`` itself (its tables
    # are typed by ``type``): the cast names that key for mypy, the value is ``namedtuple`` unchanged
    nt_key = cast(type, namedtuple)
    exact = fx_pytree.SUPPORTED_NODES_EXACT_MATCH.get(nt_key)
    fx_pytree.register_pytree_flatten_spec(
        nt_key, lambda d, spec: [tuple.__getitem__(d, i) for i in range(spec.num_children)], exact
    )

    for cls, name in (
        (EGRUState, "snntorch_egru.EGRUState"),
        (EGRURecord, "snntorch_egru.EGRURecord"),
        (EGRURecurrentState, "snntorch_egru.norse.EGRURecurrentState"),
    ):
        if cls in pytree.SUPPORTED_SERIALIZED_TYPES:  # a re-import of this module
            continue
        try:
            pytree._register_namedtuple(cls, serialized_type_name=name)
        except ValueError:  # registered already (e.g. by an older copy of this module)
            pass
    # plain tuples of tensors: torch.load(weights_only=True) may rebuild them (torch.export.load does, for
    # the example inputs it stores; without this it falls back through a warning torch cannot format)
    torch.serialization.add_safe_globals([EGRUState, EGRURecord, EGRURecurrentState])


_register_for_serialization()
