"""Surrogate gradients for the EGRU threshold.

The forward pass of every surrogate here is the strict Heaviside step
``H(v) = 1 if v > 0 else 0`` (so ``H(0) = 0``, as in snnTorch and Norse). The
backward pass replaces the Dirac delta by a pseudo-derivative.

The paper's pseudo-derivative (Subramoney et al., ICLR 2023) is a triangle::

    psi(v) = gamma * max(0, 1 - epsilon * |v|)

with peak ``gamma`` (``dampening_factor``, default 0.7) at the threshold and
half-width ``1 / epsilon`` (``pseudo_derivative_support``, default 1.0).

Surrogates follow snnTorch's calling convention: a *factory* returns a callable
``f(v) -> H(v)`` where ``v`` is the already shifted ``state - threshold``. Unlike
snnTorch's closures, :class:`EGRUSurrogate` is a plain class instance, so whole
models that hold it can be pickled with ``torch.save(model)``.

Any snnTorch surrogate (``snntorch.surrogate.atan()``, ``fast_sigmoid()``, ...)
can be passed as ``spike_grad`` to the EGRU modules instead.

Example::

    >>> import torch
    >>> from snntorch_egru import surrogate
    >>> spike = surrogate.pseudo_derivative(dampening_factor=0.7, support=1.0)
    >>> v = torch.tensor([-0.5, 0.0, 0.5], requires_grad=True)
    >>> o = spike(v)
    >>> o.tolist()
    [0.0, 0.0, 1.0]
    >>> o.sum().backward()
    >>> v.grad
    tensor([0.3500, 0.7000, 0.3500])
"""

from __future__ import annotations

from typing import Any, Optional, Tuple

import torch

from ._checks import positive_float as _positive_float

__all__ = [
    "SpikeFunction",
    "EGRUSurrogate",
    "HeavisideNoGrad",
    "pseudo_derivative",
    "triangle",
    "heaviside",
    "HeavisideTriangle",
    "surrogate_support",
    "kernel_params",
]


class HeavisideTriangle(torch.autograd.Function):
    """Heaviside forward, triangular pseudo-derivative backward (autograd function).

    ``forward(v, gamma, epsilon)`` returns ``(v > 0)`` in ``v``'s dtype; the
    gradient is ``gamma * max(0, 1 - epsilon * |v|)`` times the incoming gradient.
    ``gamma`` and ``epsilon`` are Python floats and receive no gradient.
    Use it through ``HeavisideTriangle.apply(v, gamma, epsilon)``;
    :class:`EGRUSurrogate` wraps it as a picklable spike function.

    Example::

        >>> import torch
        >>> from snntorch_egru.surrogate import HeavisideTriangle
        >>> v = torch.tensor([-0.5, 0.0, 0.25, 2.0], requires_grad=True)
        >>> o = HeavisideTriangle.apply(v, 0.7, 1.0)
        >>> o.tolist()
        [0.0, 0.0, 1.0, 1.0]
        >>> o.sum().backward()
        >>> v.grad                      # 0.7 * max(0, 1 - |v|)
        tensor([0.3500, 0.7000, 0.5250, 0.0000])
    """

    # torch.func transforms (grad, jacrev, vmap): setup_context and a generated vmap rule (jvp: see below)
    generate_vmap_rule = True

    @staticmethod
    def forward(v: torch.Tensor, gamma: float, epsilon: float) -> torch.Tensor:
        return (v > 0).to(v.dtype)

    @staticmethod
    def setup_context(ctx: Any, inputs: Tuple[Any, ...], output: torch.Tensor) -> None:
        v, gamma, epsilon = inputs
        ctx.save_for_backward(v)
        ctx.save_for_forward(v)
        ctx.gamma = gamma
        ctx.epsilon = epsilon

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor):
        (v,) = ctx.saved_tensors
        return grad_out * _triangle(v, ctx.gamma, ctx.epsilon), None, None


class _HeavisideTriangleForwardAD(HeavisideTriangle):
    """:class:`HeavisideTriangle` with a forward-mode rule (``torch.func.jvp``, ``forward_ad``). A separate
    class because ``torch.compile`` cannot trace an autograd Function that defines ``jvp``."""

    @staticmethod
    def jvp(ctx: Any, v_t: torch.Tensor, *_: Any) -> torch.Tensor:
        """The transpose of :meth:`backward`: ``psi(v) * dv`` (what ``jacrev`` gives)."""
        (v,) = ctx.saved_tensors
        return v_t * _triangle(v, ctx.gamma, ctx.epsilon)


def _forward_ad_possible() -> bool:
    """A ``torch.func`` transform or a ``forward_ad.dual_level`` is active (never under ``torch.compile``)."""
    if torch.compiler.is_compiling():
        return False
    return (
        torch._C._functorch.maybe_current_level() is not None
        or getattr(torch.autograd.forward_ad, "_current_level", -1) >= 0
    )


def _triangle(v: torch.Tensor, gamma: float, epsilon: float) -> torch.Tensor:
    return gamma * torch.clamp(1.0 - epsilon * v.abs(), min=0.0)


class SpikeFunction:
    """Base of the package's spike functions: a Heaviside step that tells the backends its gradient.

    Calling an instance on ``v = state - threshold`` returns ``(v > 0)`` in ``v``'s dtype.
    Subclasses say, without ``isinstance`` chains in the backends, what their gradient is:

    * :attr:`support`: half-width of the region ``|v| < support`` where the gradient is non-zero
      (the sparse backward pass needs only those units);
    * :meth:`kernel_params`: ``(gamma, epsilon)`` of the triangle ``gamma * max(0, 1 - epsilon |v|)``
      that the native CPU helper and the CUDA kernels compute (``gamma = 0``: no gradient).

    Any other callable (e.g. ``snntorch.surrogate.atan()``) is still a valid ``spike_grad``;
    the backends then fall back to the autograd reference.

    Example::

        >>> from snntorch_egru.surrogate import SpikeFunction, EGRUSurrogate, HeavisideNoGrad
        >>> [isinstance(f, SpikeFunction) for f in (EGRUSurrogate(), HeavisideNoGrad())]
        [True, True]
        >>> EGRUSurrogate(0.7, 2.0).kernel_params(), HeavisideNoGrad().kernel_params()
        ((0.7, 2.0), (0.0, 1.0))
    """

    @property
    def support(self) -> float:
        """Half-width of the region where the gradient is non-zero (``0.0``: nowhere).

        Example::

            >>> from snntorch_egru.surrogate import EGRUSurrogate, HeavisideNoGrad
            >>> [f.support for f in (EGRUSurrogate(0.7, 2.0), HeavisideNoGrad())]
            [0.5, 0.0]
        """
        raise NotImplementedError

    def kernel_params(self) -> Tuple[float, float]:
        """``(gamma, epsilon)`` of the triangular pseudo-derivative the kernels implement.

        Example::

            >>> from snntorch_egru.surrogate import EGRUSurrogate
            >>> EGRUSurrogate(gamma=0.5, epsilon=4.0).kernel_params()
            (0.5, 4.0)
        """
        raise NotImplementedError

    def __call__(self, v: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class EGRUSurrogate(SpikeFunction):
    """The paper's triangular pseudo-derivative as a picklable spike function.

    Calling the instance on ``v = state - threshold`` returns the strict Heaviside
    step ``(v > 0)``; its gradient is ``gamma * max(0, 1 - epsilon * |v|)``.

    Args:
        gamma: peak of the triangle (EGRU's ``dampening_factor``). Must be > 0.
        epsilon: inverse half-width of the triangle (EGRU's
            ``pseudo_derivative_support``); the gradient is non-zero only for
            ``|v| < 1 / epsilon``. Must be > 0.

    Shape:
        - Input: ``v`` of any shape.
        - Output: same shape and dtype as ``v``, values in {0, 1}.

    Example::

        >>> import torch
        >>> from snntorch_egru.surrogate import EGRUSurrogate
        >>> spike = EGRUSurrogate(gamma=0.7, epsilon=1.0)
        >>> spike(torch.tensor([-0.2, 0.3]))
        tensor([0., 1.])
    """

    def __init__(self, gamma: float = 0.7, epsilon: float = 1.0) -> None:
        gamma = _positive_float("gamma", gamma)
        epsilon = _positive_float("epsilon", epsilon)
        self.gamma = gamma
        self.epsilon = epsilon

    @property
    def support(self) -> float:
        """Half-width ``1 / epsilon`` of the region where the gradient is non-zero.

        Example::

            >>> from snntorch_egru.surrogate import EGRUSurrogate
            >>> EGRUSurrogate(gamma=0.7, epsilon=4.0).support
            0.25
        """
        return 1.0 / self.epsilon

    def kernel_params(self) -> Tuple[float, float]:
        """``(gamma, epsilon)`` as floats (see :meth:`SpikeFunction.kernel_params`).

        Example::

            >>> from snntorch_egru.surrogate import EGRUSurrogate
            >>> EGRUSurrogate(gamma=0.7, epsilon=1.0).kernel_params()
            (0.7, 1.0)
        """
        return float(self.gamma), float(self.epsilon)

    def __call__(self, v: torch.Tensor) -> torch.Tensor:
        fn = _HeavisideTriangleForwardAD if _forward_ad_possible() else HeavisideTriangle
        return fn.apply(v, self.gamma, self.epsilon)

    def derivative(self, v: torch.Tensor) -> torch.Tensor:
        """The pseudo-derivative ``psi(v)`` itself (no autograd), same shape as ``v``.

        Example::

            >>> import torch
            >>> from snntorch_egru.surrogate import EGRUSurrogate
            >>> EGRUSurrogate(gamma=0.7, epsilon=1.0).derivative(torch.tensor([0.0, 0.5, -1.5]))
            tensor([0.7000, 0.3500, 0.0000])
        """
        return self.gamma * torch.clamp(1.0 - self.epsilon * v.abs(), min=0.0)

    def __repr__(self) -> str:
        return f"EGRUSurrogate(gamma={self.gamma}, epsilon={self.epsilon})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, EGRUSurrogate) and self.gamma == other.gamma and self.epsilon == other.epsilon

    def __hash__(self) -> int:
        return hash((EGRUSurrogate, self.gamma, self.epsilon))


def pseudo_derivative(dampening_factor: float = 0.7, support: float = 1.0) -> EGRUSurrogate:
    """Factory for the paper's triangular pseudo-derivative (snnTorch style).

    Args:
        dampening_factor: peak height ``gamma`` of the triangle (default 0.7).
        support: ``pseudo_derivative_support`` ``epsilon``, the *inverse*
            half-width of the triangle (default 1.0).

    Returns:
        A picklable callable ``f(v) -> H(v)`` with the triangular gradient.

    Example::

        >>> import snntorch_egru as se
        >>> cell = se.EGRUCell(4, 8, spike_grad=se.surrogate.pseudo_derivative(0.7, 2.0))
    """
    return EGRUSurrogate(gamma=dampening_factor, epsilon=support)


def triangle(dampening_factor: float = 0.7, support: float = 1.0) -> EGRUSurrogate:
    """Alias of :func:`pseudo_derivative` (a correct triangle, unlike
    ``snntorch.surrogate.triangular``, whose gradient is a signed step).

    Args:
        dampening_factor: peak height ``gamma`` of the triangle (default 0.7).
        support: inverse half-width ``epsilon`` of the triangle (default 1.0).

    Returns:
        An :class:`EGRUSurrogate`.

    Example::

        >>> import torch
        >>> from snntorch_egru.surrogate import triangle
        >>> spike = triangle(0.7, 2.0)
        >>> spike
        EGRUSurrogate(gamma=0.7, epsilon=2.0)
        >>> spike.derivative(torch.tensor([0.0, 0.25, 0.5]))   # zero from |v| = 1/epsilon on
        tensor([0.7000, 0.3500, 0.0000])
    """
    return pseudo_derivative(dampening_factor, support)


class HeavisideNoGrad(SpikeFunction):
    """The strict Heaviside step ``(v > 0)`` with no gradient (``surrogate_disable=True``).

    Picklable; :func:`heaviside` returns one. The backends run it on their sparse path with
    ``gamma = 0`` (:meth:`kernel_params`) and an empty gradient support.

    Shape:
        - Input: ``v`` of any shape.
        - Output: same shape and dtype as ``v``, values in {0, 1}, detached from the graph.

    Example::

        >>> import torch
        >>> from snntorch_egru.surrogate import HeavisideNoGrad
        >>> step = HeavisideNoGrad()
        >>> v = torch.tensor([-1.0, 0.0, 0.5], requires_grad=True)
        >>> step(v), step(v).requires_grad
        (tensor([0., 0., 1.]), False)
    """

    @property
    def support(self) -> float:
        """Always ``0.0``: the gradient is zero everywhere.

        Example::

            >>> from snntorch_egru.surrogate import HeavisideNoGrad
            >>> HeavisideNoGrad().support
            0.0
        """
        return 0.0

    def kernel_params(self) -> Tuple[float, float]:
        """``(0.0, 1.0)``: a triangle of height 0.

        Example::

            >>> from snntorch_egru.surrogate import HeavisideNoGrad
            >>> HeavisideNoGrad().kernel_params()
            (0.0, 1.0)
        """
        return 0.0, 1.0

    def __call__(self, v: torch.Tensor) -> torch.Tensor:
        return (v.detach() > 0).to(v.dtype)

    def __repr__(self) -> str:
        return "heaviside()"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, HeavisideNoGrad)

    def __hash__(self) -> int:
        return hash(HeavisideNoGrad)


#: Old private name of :class:`HeavisideNoGrad` (kept so that older pickles and callers still work).
_HeavisideNoGrad = HeavisideNoGrad


def heaviside() -> HeavisideNoGrad:
    """The strict Heaviside step with no gradient (picklable).

    Example::

        >>> import torch
        >>> from snntorch_egru.surrogate import heaviside
        >>> heaviside()(torch.tensor([0.0, 1.0]))
        tensor([0., 1.])
    """
    return HeavisideNoGrad()


def surrogate_support(spike_fn: object) -> Optional[float]:
    """Half-width of the region where ``spike_fn``'s gradient is non-zero.

    Returns ``spike_fn.support`` for the package's :class:`SpikeFunction` s (``1 / epsilon``
    for :class:`EGRUSurrogate`, ``0.0`` for :class:`HeavisideNoGrad`), and ``None`` when the
    support is unknown or unbounded (e.g. snnTorch's ``atan``), in which case sparse backward
    paths must fall back to dense gradients.

    Example::

        >>> from snntorch_egru.surrogate import EGRUSurrogate, surrogate_support
        >>> surrogate_support(EGRUSurrogate(0.7, 2.0))
        0.5
    """
    if isinstance(spike_fn, SpikeFunction):
        return float(spike_fn.support)
    return None


def kernel_params(spike_fn: object) -> Optional[Tuple[float, float]]:
    """``(gamma, epsilon)`` of a spike function the native and CUDA kernels implement, else ``None``.

    The kernels compute the triangle ``gamma * max(0, 1 - epsilon |v|)``; a
    :class:`SpikeFunction` says its own parameters (:meth:`SpikeFunction.kernel_params`).
    ``None`` (any other callable) means: run the autograd reference instead.

    Example::

        >>> import snntorch
        >>> from snntorch_egru.surrogate import EGRUSurrogate, heaviside, kernel_params
        >>> kernel_params(EGRUSurrogate(0.7, 2.0)), kernel_params(heaviside())
        ((0.7, 2.0), (0.0, 1.0))
        >>> kernel_params(snntorch.surrogate.atan()) is None
        True
    """
    if isinstance(spike_fn, SpikeFunction):
        return spike_fn.kernel_params()
    return None
