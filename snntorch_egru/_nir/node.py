"""The EGRU node type for NIR (public names re-exported by :mod:`snntorch_egru.nir`)."""

from __future__ import annotations

import dataclasses
import numbers
from dataclasses import dataclass
from typing import Any, Dict

import nir  # the third-party NIR package
import numpy as np

from .. import _checks
from .. import functional as F

#: Version of the EGRU node semantics written into every node (``spec_version``).
SPEC_VERSION = 1
#: Versions this reader understands.
SUPPORTED_SPEC_VERSIONS = (1,)
#: Time step used to convert between snnTorch decay factors and NIR time constants
#: (snnTorch hard-codes the same value in its exporter and importer).
DEFAULT_DT = 1e-4

_OUTPUTS = ("y", "trace")
_GATE_ORDERS = ("rzn",)
_show = _checks.show  # numpy scalars (as read back from HDF5) shown as plain Python values


_FINITE_BLOCK = 1 << 20  # elements per block of the finite check (bounded temporary memory)


def _all_finite(value: np.ndarray) -> bool:
    if value.size and not any(value.strides):  # one value broadcast (the reader's shape placeholders)
        return bool(np.isfinite(value.flat[0]))
    if not value.flags.c_contiguous:
        return bool(np.isfinite(value).all())
    flat = value.reshape(-1)
    return all(bool(np.isfinite(flat[i : i + _FINITE_BLOCK]).all()) for i in range(0, flat.size, _FINITE_BLOCK))


def _float32_array(name: str, value: Any) -> np.ndarray:
    if not isinstance(value, np.ndarray):
        raise TypeError(
            f"EGRU node field {name} must be a numpy.ndarray of dtype float32, got {type(value).__name__} "
            "(convert a tensor with .detach().cpu().numpy())"
        )
    if value.dtype.kind == "f" and value.dtype.itemsize == 4 and not value.dtype.isnative:
        # float32 stored in the other byte order (e.g. big-endian ">f4"): the same values, native order
        value = value.astype(np.float32)
    if value.dtype != np.float32:
        raise TypeError(
            f"EGRU node field {name} must have dtype float32, got {value.dtype} "
            "(cast explicitly with .astype(numpy.float32) if the precision loss is acceptable)"
        )
    if not _all_finite(value):
        raise ValueError(f"EGRU node field {name} must contain only finite values, got NaN or inf")
    return value


@dataclass(eq=False)
class EGRU(nir.NIRNode):
    r"""NIR node for one Event-based GRU layer (a discrete-time map, one call per time step).

    Semantics (``docs/nir_egru_spec.md``), gate order (r, z, n) as ``torch.nn.GRU``::

        r  = sigmoid(W_ir x + b_ir + W_hr y' + b_hr)
        z  = sigmoid(W_iz x + b_iz + W_hz y' + b_hz)
        n  = tanh(W_in x + b_in + r * (W_hn y' + b_hn))
        c^ = (1 - z) n + z c'              then  c^ = p c' + (1 - p) c^  (zoneout p)
        o  = 1 if c^ > theta else 0
        y  = o c^                          (graded event)
        c  = c^ - o theta | c^ (1 - o) | c^   (reset "subtract" | "zero" | "none")
        tr = 0.9 tr' + 0.1 y

    ``y', c', tr'`` are the previous step's values, all zero before the first step.
    The node outputs ``y`` (``output="y"``) or ``tr`` (``output="trace"``).

    Args:
        weight_ih: ``float32 [3H, I]`` input weights, rows (r, z, n).
        weight_hh: ``float32 [3H, H]`` recurrent weights (multiply the previous ``y``).
        bias_ih: ``float32 [3H]`` input bias.
        bias_hh: ``float32 [3H]`` recurrent bias (``b_hn`` sits inside the reset-gated term).
        threshold: ``float32 [H]`` per-unit thresholds (the effective values, e.g. after clamping).
        reset: ``"subtract"``, ``"zero"`` or ``"none"``. Default: ``"subtract"``.
        zoneout: eval-mode zoneout blend ``p`` in [0, 1). Default: 0.
        output: ``"y"`` (graded events) or ``"trace"``. Default: ``"y"``.
        gate_order: must be ``"rzn"``.
        spec_version: semantics version, one of :data:`SUPPORTED_SPEC_VERSIONS`.
        metadata: free-form, informational only (never needed to run the node).

    ``input_type = {"input": [I]}``, ``output_type = {"output": [H]}``.

    Example::

        >>> import numpy as np
        >>> from snntorch_egru.nir import EGRU
        >>> H, I = 4, 3
        >>> z = lambda *s: np.zeros(s, dtype=np.float32)
        >>> node = EGRU(z(3 * H, I), z(3 * H, H), z(3 * H), z(3 * H), z(H) + 0.3)
        >>> node.input_type["input"], node.output_type["output"]
        (array([3]), array([4]))
    """

    weight_ih: np.ndarray
    weight_hh: np.ndarray
    bias_ih: np.ndarray
    bias_hh: np.ndarray
    threshold: np.ndarray
    reset: str = "subtract"
    zoneout: float = 0.0
    output: str = "y"
    gate_order: str = "rzn"
    spec_version: int = SPEC_VERSION

    def __post_init__(self) -> None:
        for name in F.LAYER_TENSOR_NAMES:
            setattr(self, name, _float32_array(name, getattr(self, name)))
        theta = self.threshold
        if theta.ndim != 1 or theta.shape[0] == 0:
            raise ValueError(f"EGRU node field threshold must have shape [H] with H >= 1, got {list(theta.shape)}")
        H = theta.shape[0]
        w_ih = self.weight_ih
        if w_ih.ndim != 2 or w_ih.shape[0] != 3 * H or w_ih.shape[1] == 0:
            raise ValueError(
                f"EGRU node field weight_ih must have shape [3H, I] = [{3 * H}, I] (H = {H} from threshold), "
                f"got {list(w_ih.shape)}"
            )
        for name, shape in (("weight_hh", (3 * H, H)), ("bias_ih", (3 * H,)), ("bias_hh", (3 * H,))):
            got = getattr(self, name).shape
            if tuple(got) != shape:
                raise ValueError(
                    f"EGRU node field {name} must have shape {list(shape)} (H = {H} from threshold), got {list(got)}"
                )
        if not isinstance(self.reset, str) or self.reset not in _checks.RESET_CODES:  # NIR's tuple-style message
            raise ValueError(f"EGRU node field reset must be one of {F.RESET_MECHANISMS}, got {_show(self.reset)}")
        if not isinstance(self.output, str) or self.output not in _OUTPUTS:
            raise ValueError(f"EGRU node field output must be one of {_OUTPUTS}, got {_show(self.output)}")
        if not isinstance(self.gate_order, str) or self.gate_order not in _GATE_ORDERS:
            raise ValueError(
                f"EGRU node field gate_order must be 'rzn' (rows r, z, n as torch.nn.GRU), got {_show(self.gate_order)}"
            )
        if (
            isinstance(self.zoneout, (bool, np.bool_))
            or not isinstance(self.zoneout, numbers.Real)
            or not (0.0 <= float(self.zoneout) < 1.0)
        ):
            raise ValueError(f"EGRU node field zoneout must be a float in [0, 1), got {_show(self.zoneout)}")
        self.zoneout = float(self.zoneout)
        if (
            isinstance(self.spec_version, (bool, np.bool_))
            or not isinstance(self.spec_version, numbers.Integral)
            or int(self.spec_version) not in SUPPORTED_SPEC_VERSIONS
        ):
            raise ValueError(
                f"EGRU node field spec_version must be one of {SUPPORTED_SPEC_VERSIONS} (this reader's versions), "
                f"got {_show(self.spec_version)}; a newer file needs a newer snntorch-egru"
            )
        self.spec_version = int(self.spec_version)
        self.input_type = {"input": np.array([w_ih.shape[1]])}
        self.output_type = {"output": np.array([H])}

    @property
    def hidden_size(self) -> int:
        """Number of units ``H``."""
        return int(self.threshold.shape[0])

    @property
    def input_size(self) -> int:
        """Number of inputs ``I``."""
        return int(self.weight_ih.shape[1])

    @classmethod
    def from_dict(cls, kwargs: Dict[str, Any]) -> "EGRU":
        """Build from the dictionary stored in a NIR file; rejects unknown or missing fields."""
        d = dict(kwargs)
        d.pop("type", None)
        allowed = {f.name for f in dataclasses.fields(cls) if f.init}
        unknown = sorted(set(d) - allowed)
        if unknown:
            raise ValueError(f"EGRU node has unknown fields {unknown}; known fields: {sorted(allowed)}")
        missing = [n for n in F.LAYER_TENSOR_NAMES if n not in d]
        if missing:
            raise ValueError(f"EGRU node is missing the fields {missing}")
        if "spec_version" not in d:
            raise ValueError(
                f"EGRU node is missing the field spec_version (expected one of {SUPPORTED_SPEC_VERSIONS}, the "
                "EGRU semantics version every writer stores; got no such field): the file was not written by "
                "snntorch_egru.nir.write / nir.write of an EGRU node, or it was damaged"
            )
        for key in ("reset", "output", "gate_order"):
            if isinstance(d.get(key), bytes):
                d[key] = d[key].decode("utf8")
        return cls(**d)
