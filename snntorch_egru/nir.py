"""NIR (Neuromorphic Intermediate Representation) export and import for EGRU models.

NIR 1.0.8 has no sigmoid, tanh or signal-by-signal product, so an EGRU layer
cannot be built from stock NIR primitives. This module adds one custom node type,
:class:`EGRU` (a ``nir.NIRNode`` dataclass holding one EGRU layer with all its
semantics in typed fields; see ``docs/nir_egru_spec.md``), and keeps every other
part of a model a stock NIR node (Affine, Linear, Conv1d/2d, Flatten, LIF,
CubaLIF, the snnTorch RLeaky/RSynaptic sub-graphs), so the standard part of a
mixed graph stays readable by snnTorch's and Norse's own importers.

* :func:`export_to_nir` traces a model (``nirtorch.torch_to_nir``) and returns a
  ``nir.NIRGraph``; a multi-layer :class:`~snntorch_egru.EGRU` becomes a nested
  ``NIRGraph`` of chained EGRU nodes.
* :func:`write` / :func:`read` store and load graphs with EGRU nodes
  (:func:`read` works without touching NIR internals; stock ``nir.read`` needs
  the opt-in :func:`register_nir_extension`).
* :func:`import_from_nir` builds a torch module that advances one time step per
  call, ``(x_t, state=None) -> (y_t, state)``.

The third-party package is imported as ``nir`` (absolute import); this module is
``snntorch_egru.nir``.

Example::

    >>> import torch, snntorch_egru as se
    >>> from snntorch_egru import nir as senir
    >>> net = torch.nn.Sequential(torch.nn.Linear(4, 8), se.EGRUCell(8, 16, init_hidden=True),
    ...                           torch.nn.Linear(16, 3))
    >>> graph = senir.export_to_nir(net, torch.randn(2, 4))
    >>> sorted(type(n).__name__ for n in graph.nodes.values())
    ['Affine', 'Affine', 'EGRU', 'Input', 'Output']
    >>> step = senir.import_from_nir(graph)
    >>> y, state = step(torch.randn(2, 4))
    >>> y, state = step(torch.randn(2, 4), state)
    >>> y.shape
    torch.Size([2, 3])
"""

from __future__ import annotations

import numpy as np  # noqa: F401  (EGRU's field annotations, ``np.ndarray``, resolve in this namespace)

from ._nir import io as _io
from ._nir import node as _node
from ._nir.export import _egru_attrs, _egru_node, _map_egru_layer, export_to_nir  # noqa: F401  (registration.py uses them)
from ._nir.graph import NIRStepModule, import_from_nir
from ._nir.io import read, register_nir_extension, write
from ._nir.node import EGRU
from ._nir.step import CubaLIFStep, EGRUStep, LIFStep

__all__ = [
    "EGRU",
    "SPEC_VERSION",
    "SUPPORTED_SPEC_VERSIONS",
    "DEFAULT_DT",
    "DEFAULT_MAX_READ_BYTES",
    "DEFAULT_MAX_READ_OBJECTS",
    "export_to_nir",
    "import_from_nir",
    "read",
    "write",
    "register_nir_extension",
    "NIRStepModule",
    "EGRUStep",
    "LIFStep",
    "CubaLIFStep",
]

#: Version of the EGRU node semantics written into every node (``spec_version``).
SPEC_VERSION = _node.SPEC_VERSION
#: Versions this reader understands.
SUPPORTED_SPEC_VERSIONS = _node.SUPPORTED_SPEC_VERSIONS
#: Time step used to convert between snnTorch decay factors and NIR time constants
#: (snnTorch hard-codes the same value in its exporter and importer).
DEFAULT_DT = _node.DEFAULT_DT
#: Default limit on the total bytes a NIR file may declare (sum over its datasets, from their shapes
#: and dtypes, checked before anything is read): 1 GiB. Override with ``read(..., max_bytes=...)``.
DEFAULT_MAX_READ_BYTES = _io.DEFAULT_MAX_READ_BYTES
#: Default limit on the number of HDF5 groups and datasets in a NIR file (checked while its structure is
#: walked, before any array is read). Override with ``read(..., max_objects=...)``.
DEFAULT_MAX_READ_OBJECTS = _io.DEFAULT_MAX_READ_OBJECTS

# The classes and functions live in the underscore rooms (``snntorch_egru._nir``) but belong to this
# page: they say so in ``__module__`` (as NumPy's ``set_module`` does), so reprs, pickles and the error
# messages of foreign importers keep naming ``snntorch_egru.nir.EGRU`` and friends.
for _name in __all__:
    _obj = globals()[_name]
    if isinstance(_obj, type) or callable(_obj):
        _obj.__module__ = __name__
del _name, _obj
