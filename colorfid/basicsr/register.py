"""Putting colorfid's losses, metrics, model types and NAFNet into BasicSR, and checking a YAML.

Two BasicSR flavours are known:

``"upstream"``
    ``basicsr`` from the package index (1.4.x): registries in ``basicsr.utils.registry``
    (``LOSS_REGISTRY``, ``METRIC_REGISTRY``, ``MODEL_REGISTRY``, ``ARCH_REGISTRY``). A registry
    names an object by its ``__name__`` and refuses a second object under the same name.
``"nafnet"``
    NAFNet's fork (``basicsr`` 1.2 from megvii-research/NAFNet's source): no registries; it looks
    names up as attributes -- losses of ``basicsr.models.losses``, metrics of ``basicsr.metrics``,
    model types of the ``basicsr.models.*_model`` modules.

Registration is idempotent: an object already registered under its name is skipped; a
*different* object under one of colorfid's names raises :class:`~colorfid.errors.UsageError`.
"""

from __future__ import annotations

import importlib
import types
import warnings
from typing import Any, Mapping

from ..errors import ColorfidWarning, ConfigError, MissingDependencyError, UnknownNameError, UsageError

__all__ = [
    "flavour",
    "register_metrics",
    "register_models",
    "register_archs",
    "register_all",
    "check_options",
    "MODEL_TYPES",
]

#: colorfid's model type per flavour and the base model type it extends.
MODEL_TYPES: dict[str, tuple[str, str]] = {
    "upstream": ("ColorfidSRModel", "SRModel"),
    "nafnet": ("ColorfidImageRestorationModel", "ImageRestorationModel"),
}

_METRIC_KEYS = ("crop_border", "input_order", "test_y_channel", "channel_order", "better", "protocol")


def flavour() -> str:
    """``"upstream"`` or ``"nafnet"`` for the importable ``basicsr``; raises
    :class:`~colorfid.errors.MissingDependencyError` (with the reason) when there is none."""
    try:
        importlib.import_module("basicsr")
    except Exception as exc:  # ImportError, or torchvision failing inside basicsr's own imports
        raise MissingDependencyError(
            f"colorfid.basicsr: cannot import basicsr ({type(exc).__name__}: {exc}). Install BasicSR "
            "(pip install basicsr) or NAFNet's fork (python setup.py develop --no_cuda_ext in its checkout); "
            "basicsr imports torchvision, which must match your torch build"
        ) from exc
    try:
        reg = importlib.import_module("basicsr.utils.registry")
        if hasattr(reg, "METRIC_REGISTRY") and hasattr(reg, "MODEL_REGISTRY"):
            return "upstream"
    except ImportError:
        pass
    try:
        importlib.import_module("basicsr.models.image_restoration_model")
        return "nafnet"
    except ImportError as exc:
        raise MissingDependencyError(
            "colorfid.basicsr: this basicsr has neither registries (basicsr.utils.registry) nor NAFNet's "
            f"basicsr.models.image_restoration_model ({exc}); supported: BasicSR 1.4.x and NAFNet's fork"
        ) from exc


def _register(registry: Any, objects: Mapping[str, Any], what: str) -> list[str]:
    """Register each object under its name (BasicSR's ``Registry.register(obj)`` uses ``__name__``)."""
    added: list[str] = []
    for name, obj in objects.items():
        if getattr(obj, "__name__", None) != name:
            raise UsageError(f"{what}: {obj!r} is named {getattr(obj, '__name__', None)!r}, not {name!r}")
        if name in registry:
            existing = registry.get(name)
            if existing is obj:
                continue
            raise UsageError(f"{what}: the registry already holds a different {name!r} "
                             f"({getattr(existing, '__module__', '?')}.{getattr(existing, '__qualname__', existing)})")
        registry.register(obj)
        added.append(name)
    return added


def _inject(namespace: Any, objects: Mapping[str, Any], what: str) -> list[str]:
    """NAFNet's fork: make each object an attribute of the module the fork looks names up in."""
    added: list[str] = []
    for name, obj in objects.items():
        existing = getattr(namespace, name, None)
        if existing is obj:
            continue
        if existing is not None:
            raise UsageError(f"{what}: {namespace.__name__} already has a different {name!r}")
        setattr(namespace, name, obj)
        added.append(name)
    return added


def register_metrics(registry: Any = None) -> list[str]:
    """Register every ``colorfid_*`` metric function (:func:`colorfid.basicsr.metrics.basicsr_metrics`)
    in BasicSR's ``METRIC_REGISTRY`` (or in ``registry``: any object with BasicSR's
    ``register(obj)`` / ``__contains__`` / ``get``; or, for NAFNet's fork, the ``basicsr.metrics``
    module). Returns the names added."""
    from .metrics import basicsr_metrics

    fns = basicsr_metrics()
    if registry is None:
        if flavour() == "nafnet":
            return _inject(importlib.import_module("basicsr.metrics"), fns, "register_metrics")
        registry = importlib.import_module("basicsr.utils.registry").METRIC_REGISTRY
    if isinstance(registry, types.ModuleType):  # a module: the fork's lookup namespace
        return _inject(registry, fns, "register_metrics")
    return _register(registry, fns, "register_metrics")


def _upstream_build_loss(spec: dict, key: str) -> Any:
    from basicsr.losses import build_loss  # type: ignore[import-not-found]

    return build_loss(spec)


def _fork_build_loss(spec: dict, key: str) -> Any:
    losses = importlib.import_module("basicsr.models.losses")
    spec = dict(spec)
    kind = spec.pop("type")
    cls = getattr(losses, kind, None)
    if cls is None:
        raise UnknownNameError(f"train.{key}: basicsr.models.losses has no {kind!r} (colorfid's losses are added "
                               "by colorfid.basicsr.register_all)")
    return cls(**spec)


def register_models(registry: Any = None, *, base: type | None = None, which: str | None = None) -> list[str]:
    """Register colorfid's model type: ``ColorfidSRModel`` (upstream, from ``SRModel``) or
    ``ColorfidImageRestorationModel`` (NAFNet's fork, from ``ImageRestorationModel``).

    ``registry`` / ``base`` / ``which`` (the flavour) override the discovery (tests use them
    with a stand-in base class)."""
    from .model import model_class

    which = which or flavour()
    name, base_name = MODEL_TYPES[which]
    if which == "upstream":
        if base is None:
            base = importlib.import_module("basicsr.models.sr_model").SRModel
        cls = model_class(base, name, _upstream_build_loss, which)
        if registry is None:
            registry = importlib.import_module("basicsr.utils.registry").MODEL_REGISTRY
        return _register(registry, {name: cls}, "register_models")
    module = importlib.import_module("basicsr.models.image_restoration_model") if registry is None else registry
    if base is None:
        base = getattr(module, base_name)
    cls = model_class(base, name, _fork_build_loss, which)
    return _inject(module, {name: cls}, "register_models")


def register_archs(registry: Any = None) -> list[str]:
    """Upstream BasicSR has no NAFNet: register colorfid's ``NAFNet`` and ``NAFNetLocal`` (the
    official module names, so checkpoints move both ways) in ``ARCH_REGISTRY`` -- unless a
    ``NAFNet`` is there already (then nothing is added). NAFNet's fork has its own: nothing to do."""
    from ..models.nafnet import NAFNet, NAFNetLocal

    if registry is None:
        if flavour() == "nafnet":
            return []
        importlib.import_module("basicsr.archs")  # fills ARCH_REGISTRY with BasicSR's own
        registry = importlib.import_module("basicsr.utils.registry").ARCH_REGISTRY
    todo = {n: c for n, c in (("NAFNet", NAFNet), ("NAFNetLocal", NAFNetLocal)) if n not in registry}
    return _register(registry, todo, "register_archs")


def register_all() -> dict[str, list[str]]:
    """Everything, into the importable BasicSR: losses (:func:`colorfid.losses.register_basicsr`
    or the fork's ``basicsr.models.losses``), metrics, the model type and (upstream) NAFNet.
    Returns the names added per kind."""
    from ..losses import BASICSR_LOSSES, register_basicsr

    which = flavour()
    if which == "upstream":
        importlib.import_module("basicsr.losses")  # BasicSR's own first, as its build_loss does
        losses = register_basicsr()
    else:
        losses = _inject(importlib.import_module("basicsr.models.losses"), BASICSR_LOSSES, "register_all")
    return {
        "flavour": [which],
        "losses": losses,
        "metrics": register_metrics(),
        "models": register_models(which=which),
        "archs": register_archs(),
    }


# ----------------------------------------------------------------------------------------------
# Checking a YAML before BasicSR runs it
# ----------------------------------------------------------------------------------------------


def check_options(opt: Mapping[str, Any], *, flavour: str = "upstream", source: str = "options") -> list[str]:
    """Check what BasicSR would accept silently but get wrong; return the warnings given.

    Raises :class:`~colorfid.errors.ConfigError` / :class:`~colorfid.errors.UnknownNameError`:

    * a ``val.metrics`` entry of a ``colorfid_*`` type that does not exist, or with an option the
      metric does not know, ``test_y_channel: true``, or a ``better`` that contradicts colorfid;
    * upstream, a model type that is not colorfid's: a lower-is-better colorfid metric without
      ``better: lower`` (BasicSR would track the *worst* value as best);
    * NAFNet's fork: ``val.use_image: false`` with colorfid metrics (they read 8-bit images), a
      train set with ``num_worker_per_gpu: 0`` (the fork's loader sets ``persistent_workers``).

    Warns (:class:`~colorfid.errors.ColorfidWarning`) where the value is right but a line of the
    log would mislead: a target metric (``colorfid_sat_ratio_hc``) under a model type that cannot
    track it; ``path.param_key_g`` in the fork (it reads ``param_key``) or ``param_key`` upstream
    (it reads ``param_key_g``).
    """
    from .metrics import PREFIX, get_basicsr_metric

    if flavour not in MODEL_TYPES:
        raise UnknownNameError(f"check_options: unknown flavour {flavour!r}; known: {list(MODEL_TYPES)}")
    given: list[str] = []

    def warn(msg: str) -> None:
        given.append(msg)
        warnings.warn(f"{source}: {msg}", ColorfidWarning, stacklevel=3)

    ours = MODEL_TYPES[flavour][0]
    model_type = opt.get("model_type")
    val = opt.get("val") or {}
    metrics = val.get("metrics") or {}
    if not isinstance(metrics, Mapping):
        raise ConfigError(f"{source}: val.metrics must be a mapping of name -> {{type: ...}}")
    uses_colorfid = False
    for name, content in metrics.items():
        if not isinstance(content, Mapping):
            continue
        kind = content.get("type")
        if not (isinstance(kind, str) and kind.startswith(PREFIX)):
            continue
        uses_colorfid = True
        where = f"{source}: val.metrics.{name}"
        try:
            spec = get_basicsr_metric(kind).colorfid_spec  # type: ignore[attr-defined]
        except UnknownNameError as exc:
            raise UnknownNameError(f"{where}: {exc}") from None
        unknown = sorted(str(k) for k in content if k != "type" and k not in _METRIC_KEYS)
        if unknown:
            raise ConfigError(f"{where}: unknown option(s) {', '.join(unknown)}; known: {', '.join(_METRIC_KEYS)}")
        if content.get("test_y_channel"):
            raise ConfigError(f"{where}: test_y_channel: true; colour metrics on the luma channel make no sense")
        better = content.get("better")
        if better is not None and better != spec.better:
            raise ConfigError(f"{where}: better: {better} contradicts colorfid ({kind}: {spec.better}"
                              + (f" {spec.target:g}; track {kind}_deviation with better: lower" if spec.better == "target" else "")
                              + ")")
        if flavour == "upstream" and model_type != ours:
            if spec.better == "lower" and better is None:
                raise ConfigError(f"{where}: {kind} is better lower; add 'better: lower' (BasicSR assumes higher "
                                  f"and would report the worst value as best), or use model_type: {ours}")
            if spec.better == "target":
                warn(f"val.metrics.{name}: {kind} is best at {spec.target:g}; model_type {model_type} tracks "
                     f"'Best' as the highest value. Use model_type: {ours} (better: target) or {kind}_deviation "
                     "(better: lower) for best tracking")
    if flavour == "nafnet":
        if uses_colorfid and val.get("use_image", True) is False:
            raise ConfigError(f"{source}: val.use_image: false hands tensors to the metrics; colorfid's BasicSR "
                              "metrics read the 8-bit images (use_image: true, the default)")
        train = (opt.get("datasets") or {}).get("train") or {}
        if opt.get("train") is not None and train and int(train.get("num_worker_per_gpu") or 0) < 1:
            raise ConfigError(f"{source}: datasets.train.num_worker_per_gpu must be >= 1 in NAFNet's fork (its "
                              "data loader sets persistent_workers=True, which needs workers)")
    path = opt.get("path") or {}
    if path.get("pretrain_network_g"):
        if flavour == "nafnet" and "param_key_g" in path and "param_key" not in path:
            warn("path.param_key_g is upstream BasicSR's name; NAFNet's fork reads path.param_key (default 'params')")
        if flavour == "upstream" and "param_key" in path and "param_key_g" not in path:
            warn("path.param_key is NAFNet's fork's name; BasicSR reads path.param_key_g (default 'params')")
    return given
