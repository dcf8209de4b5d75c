"""Whether CuPy can be imported (private; public as :func:`snntorch_egru.cuda.cupy_available`).

Kept apart from the package's ``__init__`` so that the operator (``snntorch_egru._op``) can ask
without importing the ``"cupy"`` backend module, which itself enters the operator.
"""

from __future__ import annotations

import importlib.util
from typing import Optional

_CUPY: Optional[bool] = None


def cupy_available() -> bool:
    """Whether CuPy can be imported (checked once).

    Example::

        >>> from snntorch_egru import cuda
        >>> isinstance(cuda.cupy_available(), bool)
        True
    """
    global _CUPY
    if _CUPY is None:
        try:
            _CUPY = importlib.util.find_spec("cupy") is not None
            if _CUPY:
                import cupy  # noqa: F401
        except Exception:  # a broken CuPy install counts as missing
            _CUPY = False
    return bool(_CUPY)
