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

from typing import Callable

import torch

from ._checks import positive_float as _positive_float

__all__ = [
    "EGRUSurrogate",
    "pseudo_derivative",
    "triangle",
    "heaviside",
    "HeavisideTriangle",
    "surrogate_support",
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

    @staticmethod
    def forward(ctx, v: torch.Tensor, gamma: float, epsilon: float) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(v)
        ctx.gamma = gamma
        ctx.epsilon = epsilon
        return (v > 0).to(v.dtype)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):  # type: ignore[override]
        (v,) = ctx.saved_tensors
        psi = ctx.gamma * torch.clamp(1.0 - ctx.epsilon * v.abs(), min=0.0)
        return grad_out * psi, None, None


class EGRUSurrogate:
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

    def __call__(self, v: torch.Tensor) -> torch.Tensor:
        return HeavisideTriangle.apply(v, self.gamma, self.epsilon)

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
        return (
            isinstance(other, EGRUSurrogate)
            and self.gamma == other.gamma
            and self.epsilon == other.epsilon
        )

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


class _HeavisideNoGrad:
    """Plain Heaviside step without gradient (``surrogate_disable=True``)."""

    def __call__(self, v: torch.Tensor) -> torch.Tensor:
        return (v.detach() > 0).to(v.dtype)

    def __repr__(self) -> str:
        return "heaviside()"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _HeavisideNoGrad)

    def __hash__(self) -> int:
        return hash(_HeavisideNoGrad)


def heaviside() -> Callable[[torch.Tensor], torch.Tensor]:
    """The strict Heaviside step with no gradient (picklable).

    Example::

        >>> import torch
        >>> from snntorch_egru.surrogate import heaviside
        >>> heaviside()(torch.tensor([0.0, 1.0]))
        tensor([0., 1.])
    """
    return _HeavisideNoGrad()


def surrogate_support(spike_fn: object) -> float | None:
    """Half-width of the region where ``spike_fn``'s gradient is non-zero.

    Returns ``1 / epsilon`` for :class:`EGRUSurrogate`, ``0.0`` for a
    gradient-free step, and ``None`` when the support is unknown or unbounded
    (e.g. snnTorch's ``atan``), in which case sparse backward paths must fall back
    to dense gradients.

    Example::

        >>> from snntorch_egru.surrogate import EGRUSurrogate, surrogate_support
        >>> surrogate_support(EGRUSurrogate(0.7, 2.0))
        0.5
    """
    if isinstance(spike_fn, EGRUSurrogate):
        return spike_fn.support
    if isinstance(spike_fn, _HeavisideNoGrad):
        return 0.0
    return None
