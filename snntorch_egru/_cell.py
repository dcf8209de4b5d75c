"""The snnTorch-style single-step EGRU layer :class:`EGRUCell` (re-exported by :mod:`snntorch_egru`).

It holds parameters and state only; the math lives in :mod:`snntorch_egru.functional`, and the
inference steps of the native event path in :mod:`snntorch_egru._cell_fast`.
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Tuple, Union

import torch

from . import _cell_fast, _layer
from . import functional as F
from ._layer import EGRULayerBase, nan_threshold_propagates

__all__ = ["EGRUCell"]

SpikeFn = Callable[[torch.Tensor], torch.Tensor]


class EGRUCell(EGRULayerBase):
    """Event-based GRU neuron, one time step per call (snnTorch conventions).

    A GRU whose units communicate only through sparse graded events: a unit emits
    ``y = c_hat`` when its internal state ``c_hat`` crosses its trainable threshold
    ``theta`` and is then reset; otherwise it sends 0. See
    :mod:`snntorch_egru.functional` for the equations.

    Like ``snn.RLeaky``, the state is kept on the module: passing ``y``/``c``
    stores them, omitting them continues from the stored state (re-zeroed when
    the batch size changes). With ``init_hidden=True`` the cell returns only
    ``y`` so it fits into ``torch.nn.Sequential``.

    Args:
        input_size: number of input features ``I``.
        hidden_size: number of units ``H``.
        bias: use ``bias_ih`` and ``bias_hh``. Default: True.
        dropconnect: probability of dropping each recurrent weight in training
            (mask drawn when the state is reset, scaled by ``1/(1-p)``). Default: 0.
        zoneout: probability that a unit keeps its previous state in training
            (expectation ``p c_prev + (1-p) c_hat`` in eval). Default: 0.
        dampening_factor: peak ``gamma`` of the triangular pseudo-derivative. Default: 0.7.
        pseudo_derivative_support: inverse half-width ``epsilon`` of it. Default: 1.0.
        thr_mean: mean of the Beta-distributed initial thresholds, in (0, 1). Default: 0.3.
        reset_mechanism: ``"subtract"`` (c = c_hat - o theta), ``"zero"`` or ``"none"``.
        learn_threshold: thresholds are an ``nn.Parameter`` (else a buffer). Default: True.
        spike_grad: surrogate spike function ``f(v) -> H(v)``; ``None`` means the
            paper's pseudo-derivative. Any snnTorch surrogate works.
        surrogate_disable: plain Heaviside without gradient. Default: False.
        init_hidden: keep the state on the module and return only ``y``. Default: False.
        output: with ``init_hidden=True``, return ``(y, c)`` instead of ``y``. Default: False.
        threshold_clamp: clamp thresholds to [0, 1] in the forward pass. Default: True.
        init: ``"evnn"`` (xavier-normal weights, zero biases; the official code)
            or ``"torch"`` (``torch.nn.GRU``'s uniform init). Default: ``"evnn"``.
        device, dtype: of the parameters, as ``torch.nn.GRU``'s (``"meta"``: then ``to_empty()`` and
            :meth:`reset_parameters`). Default: the default device and dtype.

    Inputs: ``input_, y, c``
        - **input_** of shape ``[B, I]`` (or ``[I]``): input at this step.
        - **y** of shape ``[B, H]``: previous events (optional).
        - **c** of shape ``[B, H]``: previous internal state (optional).

    .. warning::
        The second argument is the previous *events* ``y`` (as ``snn.RLeaky(cur, spk, mem)``), not
        the state (``snn.Leaky(cur, mem)``): write ``y, c = cell(x, y, c)`` from ``y, c = cell.init_egru()``,
        or ``cell(x)``. ``y, mem = cell(x, mem)`` raises ``TypeError`` where it can be seen.

    Outputs: ``y, c``
        - **y** ``[B, H]``: graded events of this step.
        - **c** ``[B, H]``: internal state after the reset.

    Parameters: ``weight_ih [3H, I]``, ``weight_hh [3H, H]``, ``bias_ih [3H]``,
    ``bias_hh [3H]``, ``threshold [H]`` (rows in gate order r, z, n).

    Example::

        >>> import torch, snntorch as snn, snntorch_egru as se
        >>> net = torch.nn.Sequential(
        ...     torch.nn.Linear(10, 32),
        ...     se.EGRUCell(32, 64, init_hidden=True),
        ...     torch.nn.Linear(64, 5),
        ...     snn.Leaky(beta=0.9, init_hidden=True, output=True),
        ... )
        >>> _ = se.utils.reset(net)
        >>> x = torch.randn(25, 8, 10)                  # [T, B, I]
        >>> spk = torch.stack([net(x_t)[0] for x_t in x])
        >>> spk.shape
        torch.Size([25, 8, 5])
    """

    # parameters and state buffers (declared for type checkers; registered in __init__)
    weight_ih: torch.Tensor
    weight_hh: torch.Tensor
    bias_ih: Optional[torch.Tensor]
    bias_hh: Optional[torch.Tensor]
    threshold: torch.Tensor
    y: torch.Tensor
    c: torch.Tensor
    trace: torch.Tensor

    def __init__(
        self, input_size: int, hidden_size: int, bias: bool = True, dropconnect: float = 0.0, zoneout: float = 0.0,
        dampening_factor: float = 0.7, pseudo_derivative_support: float = 1.0, thr_mean: float = 0.3,
        reset_mechanism: str = "subtract", learn_threshold: bool = True, spike_grad: Optional[SpikeFn] = None,
        surrogate_disable: bool = False, init_hidden: bool = False, output: bool = False, *,
        threshold_clamp: bool = True, init: str = "evnn", device: Optional[Union[torch.device, str]] = None,
        dtype: Optional[torch.dtype] = None,
    ) -> None:  # fmt: skip
        super().__init__()
        self._setup(locals())  # every argument checked by one table (_layer_setup.OPTION_CHECKS)
        self._register_layer("", self.input_size, device=device, dtype=dtype)
        # States live in non-persistent buffers (follow .to(), not in state_dict), as in snnTorch.
        ref = self.weight_ih
        self.register_buffer("y", ref.new_zeros(0), persistent=False)
        self.register_buffer("c", ref.new_zeros(0), persistent=False)
        self.register_buffer("trace", ref.new_zeros(0), persistent=False)
        self._dropconnect_mask: Optional[torch.Tensor] = None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Re-draw weights (per ``init``), zero the biases and re-draw thresholds.

        Example::

            >>> import torch, snntorch_egru as se
            >>> cell = se.EGRUCell(3, 4)
            >>> cell.reset_parameters()
            >>> bool(cell.bias_ih.eq(0).all())       # init="evnn": zero biases
            True
        """
        self._reset_layer("")

    # -- state handling -------------------------------------------------------------------------

    def reset_mem(self) -> Tuple[torch.Tensor, torch.Tensor]:
        """Zero the stored state (``y``, ``c``, ``trace``) and re-draw the DropConnect mask.

        Call it before each new sequence (``snntorch_egru.utils.reset(model)`` does it
        for every neuron in a model). Returns the zeroed ``(y, c)``.

        Example::

            >>> import torch, snntorch_egru as se
            >>> cell = se.EGRUCell(3, 4)
            >>> y, c = cell(torch.randn(2, 3))
            >>> y0, c0 = cell.reset_mem()
            >>> c0.shape, c0.abs().sum().item()
            (torch.Size([2, 4]), 0.0)
        """
        self.y = torch.zeros_like(self.y)
        self.c = torch.zeros_like(self.c)
        self.trace = torch.zeros_like(self.trace)
        self._dropconnect_mask = None
        return self.y, self.c

    reset_hidden = reset_mem

    def init_egru(self) -> Tuple[torch.Tensor, torch.Tensor]:
        """Forget the stored state and return empty ``(y, c)`` for the explicit-state idiom.

        As snnTorch's ``init_leaky()`` / ``init_rleaky()``: the returned tensors have shape
        ``[0]`` and mean "start from zeros"; pass them on the first step and the cell sizes
        them to the batch. A passed state that is all zeros but sized for another batch
        (e.g. from :meth:`reset_mem` before a smaller last batch) is re-sized too, which is
        exact: a zero state carries nothing. A non-zero state of the wrong shape is an error.

        Example::

            >>> import torch, snntorch_egru as se
            >>> cell = se.EGRUCell(3, 8)
            >>> y, c = cell.init_egru()
            >>> y.shape
            torch.Size([0])
            >>> for x_t in torch.randn(5, 2, 3):       # snnTorch's explicit-state loop
            ...     y, c = cell(x_t, y, c)
            >>> y.shape
            torch.Size([2, 8])
        """
        ref = self.weight_ih
        self.y, self.c, self.trace = (ref.new_zeros(0) for _ in range(3))
        self._dropconnect_mask = None
        return self.y, self.c

    def _explicit_state(self, name: str, s: Any, shape: tuple[int, ...], w: torch.Tensor) -> torch.Tensor:
        """A state passed by the caller: ``[0]`` or an all-zero state of another batch size means zeros."""
        if (
            isinstance(s, torch.Tensor)
            and s.dim() >= 1
            and tuple(s.shape) != shape
            and (s.numel() == 0 or (s.shape[-1] == shape[-1] and not bool(s.detach().any())))
        ):
            _layer.same_device(name, s, w)
            return torch.zeros(shape, dtype=w.dtype, device=w.device)
        return _layer.state_tensor(name, s, shape, w)

    def detach_hidden(self) -> None:
        """Detach the stored state from the autograd graph (truncated BPTT).

        Example::

            >>> import torch, snntorch_egru as se
            >>> cell = se.EGRUCell(3, 4)
            >>> _ = cell(torch.randn(2, 3))
            >>> cell.detach_hidden()
            >>> cell.c.requires_grad
            False
        """
        self.y = self.y.detach()
        self.c = self.c.detach()
        self.trace = self.trace.detach()

    def _state_shape(self, x: torch.Tensor) -> tuple[int, ...]:
        return (self.hidden_size,) if x.dim() == 1 else (x.shape[0], self.hidden_size)

    def forward(
        self, input_: torch.Tensor, y: Optional[torch.Tensor] = None, c: Optional[torch.Tensor] = None
    ) -> Union[torch.Tensor, Tuple[torch.Tensor, torch.Tensor]]:
        if torch.compiler.is_exporting():  # torch.export / ONNX: one pure step, the stored state is left as it was
            saved = (self.y, self.c, self.trace)
            try:
                return self._step(input_, y, c)
            finally:
                self.y, self.c, self.trace = saved
        if not torch.is_grad_enabled():  # inference: the native event path, when it applies
            out = _cell_fast.try_step(self, input_, y, c)
            if out is not None:
                return out
        if isinstance(input_, torch.Tensor) and _layer.autocast_active(input_):
            # autocast policy (see EGRU.forward): the step runs in the parameters' dtype
            ref = self.weight_ih
            input_ = _layer.to_param_dtype(input_, ref)
            y, c = (_layer.to_param_dtype(t, ref) if isinstance(t, torch.Tensor) else t for t in (y, c))
            with _layer.float32_region(input_):
                return self._step(input_, y, c)
        return self._step(input_, y, c)

    def _load_state(
        self, y: Optional[torch.Tensor], c: Optional[torch.Tensor], shape: tuple[int, ...]
    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The step's starting ``(y, c, trace)``: the passed ``y``/``c``, else the stored ones; states of
        another shape (first call, new batch size), dtype or device start from zero. The check is against
        ``(B, hidden_size)``, never the input's shape. Nothing is stored here (see :meth:`_step`)."""
        w = self.weight_ih
        start = [
            self.y if y is None else self._explicit_state("y", y, shape, w),
            self.c if c is None else self._explicit_state("c", c, shape, w),
            self.trace,
        ]
        for i, s in enumerate(start):
            if tuple(s.shape) != shape or s.dtype != w.dtype or s.device != w.device:
                start[i] = torch.zeros(shape, dtype=w.dtype, device=w.device)
        return start[0], start[1], start[2]

    def _recurrent_weight(self) -> torch.Tensor:
        """``weight_hh``, times the DropConnect mask in training (one mask per sequence, see reset_mem)."""
        w_hh = self.weight_hh
        if self.training and self.dropconnect > 0.0:
            mask = self._dropconnect_mask
            if mask is None or mask.shape != w_hh.shape or mask.device != w_hh.device:
                mask = self._dropconnect_mask = F.dropconnect_mask(w_hh.detach(), self.dropconnect)
            w_hh = w_hh * mask
        return w_hh

    def _step(
        self, input_: torch.Tensor, y: Optional[torch.Tensor], c: Optional[torch.Tensor]
    ) -> Union[torch.Tensor, Tuple[torch.Tensor, torch.Tensor]]:
        if self.init_hidden and (y is not None or c is not None):
            raise TypeError(
                "EGRUCell with init_hidden=True keeps its own state: call it as cell(input_) "
                "without y or c, or build it with init_hidden=False to pass the state explicitly"
            )
        _layer.cell_state_order(y, self.y, self.c)
        w = self.weight_ih
        _layer.tensor_input("input_", input_, (1, 2), self.input_size, w, "[B, input_size] or [input_size]")
        shape = self._state_shape(input_)
        # run by a backward pass (a checkpoint recomputation); traced code (torch.compile) is not
        recomputing = not torch.compiler.is_compiling() and torch._C._current_graph_task_id() != -1
        if recomputing and (y is None or c is None):
            raise RuntimeError(_layer.RECOMPUTED_STORED_STATE)
        y0, c0, tr0 = self._load_state(y, c, shape)
        w_hh = self._recurrent_weight()
        zo_mask, zo_p = self._zoneout_args(shape, w)
        theta = self._effective_threshold(self.threshold)
        step = F.egru_step(
            input_,
            y0,
            c0,
            tr0,
            self.weight_ih,
            w_hh,
            self.bias_ih,
            self.bias_hh,
            theta,
            spike_fn=self.spike_grad,
            reset=self.reset_mechanism,
            zoneout_mask=zo_mask,
            zoneout_p=zo_p,
        )
        step = nan_threshold_propagates(theta, step)
        if not recomputing:  # a recomputation (checkpoint) leaves the stored state, a later step's, as it is
            self.y, self.c, self.trace = step.y, step.c, step.trace
        if self.init_hidden and not self.output:
            return step.y
        return step.y, step.c

    def extra_repr(self) -> str:
        s = self._common_repr()
        if self.init_hidden:
            s += ", init_hidden=True"
        if self.output:
            s += ", output=True"
        return s
