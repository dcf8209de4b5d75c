"""snntorch-egru: the Event-based GRU (EGRU) for the spiking-network ecosystem.

Subramoney et al., "Efficient recurrent architectures through activity sparsity
and sparse back-propagation through time", ICLR 2023.

Example::

    >>> import torch, snntorch_egru as se
    >>> rnn = se.EGRU(input_size=16, hidden_size=64)
    >>> out, state = rnn(torch.randn(100, 8, 16))   # [T, B, I] -> [T, B, H]
"""

from ._version import __version__
from . import backends, convert, functional, surrogate, utils
from . import _op, metrics, sparse  # _op registers the "torch" backend (the event-driven CPU path)
from . import cuda  # registers the "cupy" backend (GPU kernels; CuPy is imported lazily)
from .modules import EGRU, EGRUCell
from .state import EGRURecord, EGRUState
from .streaming import Streamer
from . import interop, norse  # Norse flavour (Norse itself is imported only for Norse threshold methods)
from . import registration

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
