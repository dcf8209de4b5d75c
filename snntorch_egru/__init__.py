"""snntorch-egru: the Event-based GRU (EGRU) for the spiking-network ecosystem.

Subramoney et al., "Efficient recurrent architectures through activity sparsity
and sparse back-propagation through time", ICLR 2023.

Example::

    >>> import torch, snntorch_egru as se
    >>> rnn = se.EGRU(input_size=16, hidden_size=64)
    >>> out, state = rnn(torch.randn(100, 8, 16))   # [T, B, I] -> [T, B, H]
"""

from . import backends, convert, cuda, functional, interop, metrics, norse, registration, sparse, surrogate, utils

# isort: split
# _op registers the "torch" backend (the event-driven CPU path) and cuda the "cupy" backend (GPU kernels,
# CuPy imported lazily); norse is the Norse flavour (Norse itself is imported only for its threshold methods).
from . import _op  # noqa: F401  (imported for its registration)
from ._version import __version__
from .modules import EGRU, EGRUCell
from .state import EGRURecord, EGRUState
from .streaming import Streamer

registration._register_at_import()  # snnTorch/Norse/NIR entry points handle EGRU (opt out: SNNTORCH_EGRU_REGISTER=0)

__all__ = [
    "EGRU",
    "EGRUCell",
    "EGRUState",
    "EGRURecord",
    "Streamer",
    "functional",
    "surrogate",
    "utils",
    "convert",
    "backends",
    "metrics",
    "sparse",
    "cuda",
    "interop",
    "norse",
    "registration",
    "__version__",
]
