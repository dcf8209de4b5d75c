"""Registration of EGRU with snnTorch, Norse and NIR, so that their own functions handle it.

Neither snnTorch nor Norse offers a plugin hook for third-party neurons: their reset,
NIR export and NIR import functions check fixed lists of their own classes. After
:func:`register`, these upstream entry points also handle the EGRU modules and the EGRU
NIR node:

- ``snntorch.utils.reset(net)`` also resets every :class:`~snntorch_egru.EGRUCell` in ``net``, at any
  depth (the function is wrapped; snnTorch's own neurons are reset by the original, unchanged);
- ``snntorch.EGRUCell`` and ``snntorch.EGRU`` are the classes, next to ``snn.Leaky``;
- ``snntorch.export_to_nir`` (``snntorch.export_nir``) maps EGRU modules to EGRU nodes (wraps the
  per-module mapper ``_extract_snntorch_module``; other modules go to the original), the sequence layer
  :class:`~snntorch_egru.EGRU` as per-step EGRU nodes; where snnTorch's tracer fails on a network holding
  EGRU modules (e.g. a network of one module), the error names :func:`snntorch_egru.nir.export_to_nir`;
- ``snntorch.import_from_nir`` and ``nirtorch.nir_to_torch`` build EGRU nodes as
  :class:`~snntorch_egru.nir.EGRUStep` modules (an entry in nirtorch's default node map);
- ``norse.torch.to_nir`` maps EGRU modules to EGRU nodes (wraps ``_extract_norse_module``) and
  ``norse.torch.from_nir`` builds EGRU nodes as :class:`~snntorch_egru.nir.EGRUStep` (wraps
  ``_import_norse_module``);
- ``nir.read`` and ``nir.dict2NIRNode`` understand EGRU nodes
  (:func:`snntorch_egru.nir.register_nir_extension`).

``import snntorch_egru`` calls :func:`register` (set the environment variable
``SNNTORCH_EGRU_REGISTER=0`` before the import to opt out). Norse is an optional
dependency and slow to import, so its hooks are installed when Norse is imported (at
once if it already is). :func:`register` is idempotent; :func:`unregister` restores every
upstream object exactly (tests use it).

Example::

    >>> import torch, snntorch as snn, snntorch.utils
    >>> import snntorch_egru as se
    >>> se.registration.is_registered()["snntorch"]
    True
    >>> net = torch.nn.Sequential(torch.nn.Linear(3, 8), snn.EGRUCell(8, 8, init_hidden=True))
    >>> _ = net(torch.randn(2, 3))
    >>> snntorch.utils.reset(net)          # snnTorch's own function now resets the EGRU cell
    >>> net[1].c.abs().sum().item()
    0.0
"""

from __future__ import annotations

import functools
import os
import sys
from typing import Any, Callable, Dict, Optional

from torch import nn

from . import _nb_register
from ._import_hook import PostImportHook

__all__ = ["register", "unregister", "is_registered", "ENV_VAR"]

#: Environment variable read at ``import snntorch_egru``: ``0`` skips the automatic :func:`register`.
ENV_VAR = "SNNTORCH_EGRU_REGISTER"

# (owner object, attribute name) -> the original value (or _MISSING), for exact restoration
_MISSING = object()
_saved: Dict[tuple, Any] = {}
_nir_before: Dict[str, Any] = {}
_active = {"snntorch": False, "norse": False, "nir": False}

_NORSE_EXPORT = "norse.torch.utils.export_nir"
_NORSE_IMPORT = "norse.torch.utils.import_nir"


def _set(owner: Any, name: str, value: Any) -> None:
    key = (id(owner), name)
    if key not in _saved:
        _saved[key] = (
            owner,
            name,
            owner.__dict__.get(name, _MISSING) if hasattr(owner, "__dict__") else getattr(owner, name, _MISSING),
        )
    setattr(owner, name, value)


def _restore(prefix_owner: Optional[Any] = None) -> None:
    for key in list(_saved):
        owner, name, original = _saved[key]
        if prefix_owner is not None and owner is not prefix_owner:
            continue
        if original is _MISSING:
            if name in getattr(owner, "__dict__", {}):
                delattr(owner, name)
        else:
            setattr(owner, name, original)
        del _saved[key]


def _is_ours(obj: Any) -> bool:
    return getattr(obj, "__snntorch_egru_wrapper__", False)


def _mark(fn: Callable) -> Callable:
    fn.__snntorch_egru_wrapper__ = True  # type: ignore[attr-defined]
    return fn


# ------------------------------------------------------------------------------------------
# EGRU modules and nodes, as the upstream mappers need them


def _egru_module_types() -> tuple:
    from . import norse as _norse
    from .modules import EGRU, EGRUCell

    return (EGRUCell, EGRU, _norse.EGRURecurrentCell, _norse.EGRURecurrent)


def _egru_to_nir(module: nn.Module) -> Any:
    """The NIR node of one EGRU module (``None`` if ``module`` is not one)."""
    from . import nir as senir
    from .modules import EGRU

    if isinstance(module, EGRU):
        return senir._map_egru_layer(module)
    if isinstance(module, _egru_module_types()):
        tensors = senir._egru_attrs(module)
        assert tensors is not None  # the package's own cells have every EGRU tensor
        return senir._egru_node(module, tensors, type(module).__name__)
    return None


def _egru_from_nir(node: Any) -> nn.Module:
    from . import nir as senir

    return senir.EGRUStep(node)


# ------------------------------------------------------------------------------------------
# snnTorch


def _register_snntorch() -> None:
    import snntorch
    import snntorch.export_nir as export_nir
    import snntorch.utils as snn_utils

    from .modules import EGRU, EGRUCell

    original_reset = snn_utils.reset
    if not _is_ours(original_reset):

        @functools.wraps(original_reset)
        def reset(*args: Any, **kwargs: Any) -> Any:
            out = original_reset(*args, **kwargs)  # snnTorch's neurons: snnTorch's own behaviour
            net = kwargs.get("net", args[0] if args else None)
            if isinstance(net, nn.Module):
                for m in net.modules():
                    if isinstance(m, EGRUCell):
                        m.reset_mem()
            return out

        _set(snn_utils, "reset", _mark(reset))

    original_extract = export_nir._extract_snntorch_module
    if not _is_ours(original_extract):

        @functools.wraps(original_extract)
        def extract(module: nn.Module) -> Any:
            node = _egru_to_nir(module)
            return node if node is not None else original_extract(module)

        _set(export_nir, "_extract_snntorch_module", _mark(extract))

    original_export = export_nir.export_to_nir
    if not _is_ours(original_export):

        @functools.wraps(original_export)
        def export_to_nir(module: nn.Module, *args: Any, **kwargs: Any) -> Any:
            try:
                return original_export(module, *args, **kwargs)
            except ValueError as err:  # nirtorch's tracer: e.g. a network of one module has no input edge
                if not isinstance(module, nn.Module) or not any(
                    isinstance(m, _egru_module_types()) for m in module.modules()
                ):
                    raise
                raise ValueError(
                    f"snntorch.export_nir.export_to_nir could not export this network holding EGRU modules "
                    f"({err}); snnTorch's exporter needs at least two modules called one after the other and "
                    "ignore_dims=[0] with a one-step sample [B, features]. Use "
                    "snntorch_egru.nir.export_to_nir(model, sample_input), which exports any such network "
                    "(a lone EGRU or EGRUCell included) to a graph that snntorch's import_from_nir reads"
                ) from err

        _set(export_nir, "export_to_nir", _mark(export_to_nir))

    for name, cls in (("EGRUCell", EGRUCell), ("EGRU", EGRU)):
        existing = getattr(snntorch, name, None)
        if existing is not None and existing is not cls:
            raise RuntimeError(
                f"snntorch already defines {name} ({existing!r}); refusing to shadow it. "
                f"Use snntorch_egru.{name} directly"
            )
        _set(snntorch, name, cls)
    _active["snntorch"] = True


# ------------------------------------------------------------------------------------------
# NIR and nirtorch


def _register_nir() -> None:
    import nir as nir_pkg
    import nirtorch.nir_interpreter as interp

    from . import nir as senir

    registry = nir_pkg.ir.__dict__.get("__all_ir")
    had_name = "EGRU" in registry if isinstance(registry, list) else True
    had_attr = "EGRU" in nir_pkg.ir.__dict__
    senir.register_nir_extension()
    _nir_before.update(registry=registry, had_name=had_name, had_attr=had_attr)
    default_map = interp.DEFAULT_MAP
    if senir.EGRU not in default_map:
        default_map[senir.EGRU] = _egru_from_nir
    _active["nir"] = True


def _unregister_nir() -> None:
    import nir as nir_pkg
    import nirtorch.nir_interpreter as interp

    from . import nir as senir

    interp.DEFAULT_MAP.pop(senir.EGRU, None)
    registry = _nir_before.pop("registry", None)
    had_name = _nir_before.pop("had_name", True)
    had_attr = _nir_before.pop("had_attr", True)
    if isinstance(registry, list) and not had_name and "EGRU" in registry:
        registry.remove("EGRU")
    if not had_attr and nir_pkg.ir.__dict__.get("EGRU") is senir.EGRU:
        delattr(nir_pkg.ir, "EGRU")
    _active["nir"] = False


# ------------------------------------------------------------------------------------------
# Norse (optional; hooked when imported)


def _patch_norse_export(module: Any) -> None:
    original = module._extract_norse_module
    if _is_ours(original):
        return

    @functools.wraps(original)
    def extract(m: nn.Module, *args: Any, **kwargs: Any) -> Any:
        node = _egru_to_nir(m)
        return node if node is not None else original(m, *args, **kwargs)

    _set(module, "_extract_norse_module", _mark(extract))


def _patch_norse_import(module: Any) -> None:
    from . import nir as senir

    original = module._import_norse_module
    if _is_ours(original):
        return

    @functools.wraps(original)
    def load(node: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(node, senir.EGRU):
            return _egru_from_nir(node)
        return original(node, *args, **kwargs)

    _set(module, "_import_norse_module", _mark(load))


_NORSE_PATCHES = {_NORSE_EXPORT: _patch_norse_export, _NORSE_IMPORT: _patch_norse_import}


def _patch_loaded_norse() -> None:
    for name, patch in _NORSE_PATCHES.items():
        mod = sys.modules.get(name)
        if mod is not None:
            patch(mod)
    if all(name in sys.modules for name in _NORSE_PATCHES):
        _active["norse"] = True


def _patch_norse_module(name: str) -> Callable[[Any], None]:
    def patch(module: Any) -> None:
        _NORSE_PATCHES[name](module)
        _patch_loaded_norse()

    return patch


_hook = PostImportHook({name: _patch_norse_module(name) for name in _NORSE_PATCHES})


def _register_norse() -> None:
    _hook.install()
    _patch_loaded_norse()


def _unregister_norse() -> None:
    _hook.uninstall()
    for name in _NORSE_PATCHES:
        mod = sys.modules.get(name)
        if mod is not None:
            _restore(mod)
    _active["norse"] = False


# ------------------------------------------------------------------------------------------
# public API


def register(*, snntorch: bool = True, norse: bool = True, nir: bool = True) -> None:
    """Make snnTorch's, Norse's and NIR's own functions handle EGRU (see the module docs).

    Idempotent; ``import snntorch_egru`` already calls it (opt out with the
    environment variable ``SNNTORCH_EGRU_REGISTER=0``). Nothing changes for upstream's
    own neurons: every wrapper hands anything that is not an EGRU module or node to the
    original function.

    Args:
        snntorch: hook ``snntorch.utils.reset``, ``snntorch.export_to_nir`` and add
            ``snntorch.EGRUCell`` / ``snntorch.EGRU``.
        norse: hook ``norse.torch.to_nir`` / ``from_nir`` (now if Norse is imported,
            else as soon as it is).
        nir: let ``nir.read`` and nirtorch's importer (used by ``snntorch.import_from_nir``)
            understand EGRU nodes.

    Raises:
        RuntimeError: snnTorch or NIR already define a different ``EGRUCell``/``EGRU``.

    Example::

        >>> import snntorch_egru as se
        >>> se.registration.register()          # already done at import; calling again is harmless
        >>> se.registration.is_registered()["nir"]
        True
    """
    if nir and not _active["nir"]:
        _register_nir()
    if snntorch:
        _register_snntorch()
    if norse:
        _register_norse()
    _nb_register.install()  # NeuroBench's own wrappers count EGRU layers (when NeuroBench is imported)


def unregister() -> None:
    """Undo :func:`register`: every upstream function, attribute and registry entry is restored.

    Example::

        >>> import snntorch, snntorch_egru as se
        >>> se.registration.unregister()
        >>> hasattr(snntorch, "EGRUCell")
        False
        >>> se.registration.register()
        >>> snntorch.EGRUCell is se.EGRUCell
        True
    """
    _unregister_norse()
    _nb_register.uninstall()
    if _active["nir"]:
        _unregister_nir()
    _restore()
    _active["snntorch"] = False


def is_registered() -> Dict[str, bool]:
    """Which hooks are active: ``{"snntorch": ..., "norse": ..., "nir": ...}``.

    ``"norse"`` is True once Norse's NIR modules are imported and hooked (before that,
    registration waits for the import).

    Example::

        >>> import snntorch_egru as se
        >>> sorted(se.registration.is_registered())
        ['nir', 'norse', 'snntorch']
    """
    if _hook.active:
        _patch_loaded_norse()
    return dict(_active)


def _register_at_import() -> None:
    if os.environ.get(ENV_VAR, "1") != "0":
        register()
