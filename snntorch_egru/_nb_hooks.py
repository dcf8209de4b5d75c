"""The NeuroBench hooks of one EGRU module (:class:`_Observer`), for :mod:`snntorch_egru.neurobench`.

NeuroBench counts activations through ``NeuronHook`` objects and weight products through
``LayerHook`` objects; an :class:`_Observer` hooks one EGRU module (``EGRU``, ``EGRUCell`` or the
Norse flavour) with torch forward hooks and feeds one ``_EventHook`` per layer and one
``_ProductHook`` per weight product from what each call computed.
"""

from __future__ import annotations

from typing import Any, List, Optional, Tuple, cast

import torch
from neurobench.hooks.layer import LayerHook as _NBLayerHook
from neurobench.hooks.neuron import NeuronHook as _NBNeuronHook
from torch import nn

from .modules import EGRU, EGRUCell
from .norse import EGRURecurrent, EGRURecurrentCell
from .state import EGRURecurrentState

_ONE_LAYER = (EGRUCell, EGRURecurrent, EGRURecurrentCell)


class _NoHandle:
    """Stands in for a torch hook handle (NeuroBench removes/re-registers it; the observer owns the real ones)."""

    def remove(self) -> None:
        pass


class _WeightView(nn.Linear):
    """An ``nn.Linear`` (no bias) whose weight *is* one EGRU weight matrix (shared), so NeuroBench counts
    the product like a Linear layer's (from binary copies of weight and input); never a submodule."""

    def __init__(self, weight: torch.Tensor) -> None:
        nn.Module.__init__(self)
        self.out_features, self.in_features = weight.shape
        self.weight = weight
        self.register_parameter("bias", None)


class _ProductHook(_NBLayerHook):
    """NeuroBench connection hook of one EGRU weight product (input or recurrent)."""

    def __init__(self, observer: "_Observer", weight_name: str) -> None:
        super().__init__(None)
        self._observer = observer
        self.weight_name = weight_name
        self.layer = _WeightView(getattr(observer.module, weight_name))
        self.hook = _NoHandle()

    def push(self, inputs: torch.Tensor) -> None:
        # re-read the parameter: it may have been replaced (e.g. by load_state_dict(assign=True))
        weight = getattr(self._observer.module, self.weight_name)
        if self.layer.weight is not weight:
            self.layer = _WeightView(weight)
        self.inputs.append((inputs.detach(),))

    def register_hook(self) -> None:
        pass  # the observer feeds self.inputs; nothing to re-register

    def close(self) -> None:
        self._observer.close()


class _EventHook(_NBNeuronHook):
    """NeuroBench activation hook of one EGRU layer: events ``y`` and membrane ``c`` per step."""

    def __init__(self, observer: "_Observer", name: str) -> None:
        super().__init__(None, name)
        self._observer = observer
        self.layer = observer.module

    def push(self, y: torch.Tensor, c_prev: torch.Tensor, c: torch.Tensor, inputs: Any) -> None:
        self.activation_outputs.append(y.detach())
        self.activation_inputs.append(inputs)
        self.pre_fire_mem_potential.append(c_prev.detach())
        self.post_fire_mem_potential.append(c.detach())

    def close(self) -> None:
        self._observer.close()


class _Observer:
    """Hooks one EGRU module and feeds its NeuroBench hooks (post-hooks prepended: observers of a module nest)."""

    def __init__(self, module: nn.Module, name: str) -> None:
        self.module = module
        self.name = name or type(module).__name__
        if isinstance(module, _ONE_LAYER):
            suffixes = [""]
            names = [self.name]
        else:
            num_layers = cast(int, module.num_layers)  # an EGRU
            suffixes = [f"_l{k}" for k in range(num_layers)]
            names = [f"{self.name}.l{k}" for k in range(num_layers)]
        self.events = [_EventHook(self, n) for n in names]
        self.input_products = [_ProductHook(self, f"weight_ih{s}") for s in suffixes]
        self.recurrent_products = [_ProductHook(self, f"weight_hh{s}") for s in suffixes]
        self._pending: List[Tuple[Any, ...]] = []
        pre, post = next(
            hooks
            for cls, hooks in (
                (EGRUCell, (self._cell_pre, self._cell_post)),
                (EGRU, (self._layer_pre, self._layer_post)),
                (EGRURecurrentCell, (None, self._norse_cell_post)),
                (EGRURecurrent, (self._norse_layer_pre, self._norse_layer_post)),
            )
            if isinstance(module, cls)
        )
        self._handles = [module.register_forward_hook(post, with_kwargs=True, always_call=True, prepend=True)]
        if pre is not None:
            self._handles.append(module.register_forward_pre_hook(pre, with_kwargs=True))

    @property
    def hooks(self) -> Tuple[List[_EventHook], List[_ProductHook]]:
        return self.events, self.input_products + self.recurrent_products

    def close(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []

    def _check_eval(self) -> None:
        m = self.module
        dropout = getattr(m, "dropout", 0.0) > 0.0 and getattr(m, "num_layers", 1) > 1
        if m.training and (getattr(m, "dropconnect", 0.0) > 0.0 or dropout):
            raise RuntimeError(
                f"NeuroBench counts of {self.name} need the model in eval mode: in training, "
                "dropout/DropConnect change the inputs and weights the counts are taken from; "
                "call model.eval() (NeuroBench's wrappers do so when they are built)"
            )

    # -- EGRUCell: one step per call ---------------------------------------------------------
    def _cell_pre(self, module: EGRUCell, args: tuple, kwargs: dict) -> None:
        self._pending.append((args, kwargs, module.y, module.c))

    def _cell_post(self, module: EGRUCell, args: tuple, kwargs: dict, output: Any) -> None:
        _, _, y_stored, c_stored = self._pending.pop()
        if output is None:  # the call raised
            return
        self._check_eval()
        x = args[0] if args else kwargs["input_"]
        given = list(args[1:3]) + [None] * (2 - len(args[1:3]))
        y_given = given[0] if given[0] is not None else kwargs.get("y")
        c_given = given[1] if given[1] is not None else kwargs.get("c")
        shape = module.y.shape  # (B, H) or (H,): the state the step started from has this shape

        def previous(given_t: Optional[torch.Tensor], stored: torch.Tensor) -> torch.Tensor:
            if given_t is not None:
                return given_t
            if stored.shape == shape:
                return stored
            return torch.zeros_like(module.y)  # the cell re-zeroes a state of another shape

        y_prev, c_prev = previous(y_given, y_stored), previous(c_given, c_stored)
        self.input_products[0].push(x)
        self.recurrent_products[0].push(y_prev)
        self.events[0].push(module.y, c_prev, module.c, args)

    # -- EGRU: whole sequences per call -------------------------------------------------------
    def _layer_pre(self, module: EGRU, args: tuple, kwargs: dict) -> Tuple[tuple, dict]:
        asked = bool(kwargs.get("return_internals", False))
        self._pending.append((asked,))
        kwargs = dict(kwargs)
        kwargs["return_internals"] = True
        return args, kwargs

    def _layer_post(self, module: EGRU, args: tuple, kwargs: dict, output: Any) -> Any:
        (asked,) = self._pending.pop()
        if output is None:  # the call raised
            return None
        out, state, record = output
        self._check_eval()
        x = args[0] if args else kwargs["x"]
        state_in = args[1] if len(args) > 1 else kwargs.get("state")
        self._push_sequence(x.detach(), record.y.detach(), record.c.detach(), module.batch_first, state_in)
        return output if asked else (out, state)

    def _push_sequence(
        self, x: torch.Tensor, y: torch.Tensor, c: torch.Tensor, batch_first: bool, state_in: Any
    ) -> None:
        """Feed the hooks with a sequence: ``x`` as given, ``y``/``c`` ``[L, T, (B,) H]`` (batch-first if so)."""
        if x.dim() == 2:  # unbatched [T, I]
            x, y, c = x.unsqueeze(1), y.unsqueeze(2), c.unsqueeze(2)
        elif batch_first:
            x, y, c = x.transpose(0, 1), y.transpose(1, 2), c.transpose(1, 2)
        L, T, B, H = y.shape
        if state_in is None:
            y0 = c0 = y.new_zeros(L, B, H)
        else:
            y0, c0 = (s.detach().reshape(L, B, H) for s in (state_in.y, state_in.c))
        if T > 0:
            for k in range(L):
                layer_in = x if k == 0 else y[k - 1]  # eval mode: no dropout between layers
                y_prev = torch.cat([y0[k].unsqueeze(0), y[k][:-1]], 0)
                c_prev = torch.cat([c0[k].unsqueeze(0), c[k][:-1]], 0)
                self.input_products[k].push(layer_in)
                self.recurrent_products[k].push(y_prev)
                for t in range(T):
                    self.events[k].push(y[k, t], c_prev[t], c[k, t], (layer_in[t],))

    # -- Norse flavour: the state is passed in and returned ---------------------------------------
    def _norse_cell_post(self, module: EGRURecurrentCell, args: tuple, kwargs: dict, output: Any) -> None:
        if output is None:  # the call raised
            return
        self._check_eval()
        x = args[0] if args else kwargs["input_tensor"]
        state_in = args[1] if len(args) > 1 else kwargs.get("state")
        y, new = output
        zeros = torch.zeros_like(y)
        y_prev = zeros if state_in is None else state_in[0]
        c_prev = zeros if state_in is None else state_in[1]
        self.input_products[0].push(x)
        self.recurrent_products[0].push(y_prev.detach())
        self.events[0].push(y, c_prev, new.c, (x,))

    def _norse_layer_pre(self, module: EGRURecurrent, args: tuple, kwargs: dict) -> None:
        # every step's c is needed (membrane potentials): record the states for this call only
        self._pending.append((module.record_states,))
        module.record_states = True

    def _norse_layer_post(self, module: EGRURecurrent, args: tuple, kwargs: dict, output: Any) -> Any:
        (asked,) = self._pending.pop()
        module.record_states = asked
        if output is None:  # the call raised
            return None
        self._check_eval()
        x = args[0] if args else kwargs["input_tensor"]
        state_in = args[1] if len(args) > 1 else kwargs.get("state")
        out, states = output
        T = x.shape[0]
        if T > 0:
            if state_in is not None:
                state_in = EGRURecurrentState(state_in[0].unsqueeze(0), state_in[1].unsqueeze(0), None)
            self._push_sequence(x.detach(), out.detach().unsqueeze(0), states.c.detach().unsqueeze(0), False, state_in)
        if asked or T == 0:
            return output
        return out, EGRURecurrentState(*(f[-1] for f in states))
