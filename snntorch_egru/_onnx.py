"""The EGRU recurrence as exporters see it: one ``scan`` over time, so exported graphs keep a dynamic length.

``torch.onnx.export(..., dynamo=True)`` (and ``torch.export``) trace the model with symbolic shapes. The
step-by-step reference (:func:`snntorch_egru.functional.egru_sequence`) is a Python loop: tracing unrolls it
and fixes the sequence length to the example's. Here the same step runs inside ``torch``'s ``scan``
higher-order operator, which the ONNX exporter translates to one ONNX ``Scan`` node: the exported graph runs
any sequence length and batch size (``dynamic_shapes``). The step is the reference's own
:func:`~snntorch_egru.functional.egru_step_projected`, so the values are the reference's.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import torch

from . import functional as F
from ._engine import exporting_to_onnx

__all__ = ["egru_sequence_export", "exporting_to_onnx", "scan_available"]


def _scan() -> Optional[Callable[..., Any]]:
    try:
        from torch._higher_order_ops.scan import scan
    except ImportError:  # pragma: no cover - torch without the scan operator
        return None
    return scan


def scan_available() -> bool:
    """Whether this torch has the ``scan`` operator (else exports unroll the reference loop).

    Example::

        >>> from snntorch_egru._onnx import scan_available
        >>> isinstance(scan_available(), bool)
        True
    """
    return _scan() is not None


def egru_sequence_export(
    x: torch.Tensor, y0: torch.Tensor, c0: torch.Tensor, trace0: torch.Tensor, weight_ih: torch.Tensor,
    weight_hh: torch.Tensor, bias_ih: Optional[torch.Tensor], bias_hh: Optional[torch.Tensor], threshold: torch.Tensor,
    *, spike_fn: Optional[F.SpikeFn] = None, reset: str = "subtract", zoneout_mask: Optional[torch.Tensor] = None,
    zoneout_p: float = 0.0,
) -> F.EGRUStepOutput:  # fmt: skip
    """:func:`snntorch_egru.functional.egru_sequence` as one ``scan`` over time (same arguments, same values).

    Used while a model is exported (``torch.onnx.export``): the graph holds one loop whose length is the
    input's, not the example's. Falls back to the step-by-step reference on a torch without ``scan``.

    Example::

        >>> import torch
        >>> from snntorch_egru import functional as F
        >>> from snntorch_egru._onnx import egru_sequence_export
        >>> T, B, I, H = 5, 2, 3, 4
        >>> z = torch.zeros(B, H)
        >>> args = (torch.randn(T, B, I), z, z, z, torch.randn(3 * H, I), torch.randn(3 * H, H), None, None,
        ...         torch.full((H,), 0.2))
        >>> torch.equal(egru_sequence_export(*args).y, F.egru_sequence(*args).y)
        True
    """
    scan = _scan()
    if scan is None:  # pragma: no cover - torch without the scan operator
        tensors = (x, y0, c0, trace0, weight_ih, weight_hh, bias_ih, bias_hh, threshold)
        return F.egru_sequence(*tensors, spike_fn=spike_fn, reset=reset, zoneout_mask=zoneout_mask, zoneout_p=zoneout_p)
    run_step = F.layer_step(weight_hh, bias_hh, threshold, spike_fn=spike_fn, reset=reset, zoneout_p=zoneout_p)
    gi_all = F.input_projection(x, weight_ih, bias_ih)

    def step(carry: Any, xs: Any) -> Any:
        y, c, tr = carry
        gi, mask = xs if zoneout_mask is not None else (xs, None)
        out = run_step(gi, y, c, tr, mask)
        # scan's outputs must not alias its inputs or each other: the carry and the per-step outputs are copies
        return (out.y.clone(), out.c.clone(), out.trace.clone()), (
            out.y.clone(),
            out.c.clone(),
            out.o.clone(),
            out.trace.clone(),
        )

    xs = (gi_all, zoneout_mask) if zoneout_mask is not None else gi_all
    _, (ys, cs, os_, trs) = scan(step, (y0.clone(), c0.clone(), trace0.clone()), xs)
    return F.EGRUStepOutput(ys, cs, os_, trs)
