"""BasicSR model types that log colorfid's loss components and accept several ``*_opt`` losses.

``ColorfidSRModel`` (upstream BasicSR; a subclass of ``basicsr.models.sr_model.SRModel``) and
``ColorfidImageRestorationModel`` (NAFNet's fork; a subclass of its ``ImageRestorationModel``)
train exactly as their base -- the base's ``optimize_parameters`` runs unchanged (EMA, the fork's
gradient clipping and multi-output loop included) -- with three additions:

1. **Several losses**: besides ``pixel_opt`` (and ``perceptual_opt``, which the base handles),
   every other ``train.<name>_opt`` entry is built as a loss and added to the pixel loss:
   ``loss(output, gt)``. (Plain BasicSR ignores such keys silently.)
2. **Components in the log**: the base logs one ``l_pix``; these models log ``l_pix`` (the
   pixel_opt loss alone, as before), ``l_<name>`` for each other ``<name>_opt``, and for every
   loss that reports components (:class:`colorfid.losses.ColorAwareLoss`) its raw, unweighted
   terms as ``l_<label>_<term>`` -- ``l_pix_l1``, ``l_pix_chroma``, ``l_pix_hue``,
   ``l_pix_delta_e``, ``l_pix_ssim``, ``l_pix_deficit`` (active terms only). They go through the
   base's ``reduce_loss_dict`` (averaged over GPUs under DDP) into ``log_dict``, so BasicSR's
   ``MessageLogger`` prints them and writes them to TensorBoard as ``losses/<key>``.
3. **colorfid's directions for best tracking** (upstream): for a colorfid metric in
   ``val.metrics`` whose ``better`` is omitted, the direction comes from
   :data:`colorfid.metrics.METRICS`; ``better: target`` tracks the value closest to the metric's
   target (``sat_ratio_hc`` closest to 1.0).

``train.loss_schedule`` (the mapping of :class:`colorfid.losses.LossWeightSchedule`, as in
colorfid's own trainer) is applied at every iteration: a name is either a loss key
(``color_opt``: multiplies that whole loss) or a term of a configured loss (``hue``).

The classes are built on first use from whichever BasicSR is importable
(:func:`model_class`); :func:`colorfid.basicsr.register_all` registers them.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import Any, Callable, Mapping

from torch import Tensor, nn

from ..errors import ConfigError, UsageError

__all__ = ["LossSum", "ColorfidModelMixin", "model_class", "loss_label", "BASE_LOSS_KEYS"]

#: ``*_opt`` keys the base models build themselves.
BASE_LOSS_KEYS = ("pixel_opt", "perceptual_opt")


def loss_label(key: str) -> str:
    """Log label of a ``train.<name>_opt`` key, as BasicSR names its own: ``pixel_opt`` -> ``l_pix``,
    ``perceptual_opt`` -> ``l_percep``, ``<name>_opt`` -> ``l_<name>``."""
    return {"pixel_opt": "l_pix", "perceptual_opt": "l_percep"}.get(key, "l_" + key[: -len("_opt")])


def _has_components(module: nn.Module) -> bool:
    # ColorAwareLoss: forward(..., return_components=True) -> (loss, {term: tensor, "total": ...})
    return hasattr(module, "components") and hasattr(module, "TERMS") and hasattr(module, "set_weights")


class LossSum(nn.Module):
    """The sum of several losses in ``cri_pix``'s place, recording each one for the log.

    ``losses`` maps ``train`` keys (``pixel_opt``, ``color_opt``, ...) to loss modules called as
    ``loss(pred, target)``. Each call adds, detached, to :meth:`take`'s dict: the loss's value
    under :func:`loss_label` and, for losses with components, each raw term under
    ``<label>_<term>`` (several calls per step, as the fork makes for multi-output networks,
    add up like the base's ``l_pix``).
    """

    def __init__(self, losses: Mapping[str, nn.Module]) -> None:
        super().__init__()
        if not losses:
            raise UsageError("LossSum: no losses")
        self.losses = nn.ModuleDict(dict(losses))
        self.outer: dict[str, float] = {k: 1.0 for k in self.losses}
        labels: dict[str, str] = {}
        for key, m in self.losses.items():
            label = loss_label(key)
            names = [label] + ([f"{label}_{t}" for t in m.TERMS] if _has_components(m) else [])
            for n in names:
                if n in labels:
                    raise ConfigError(f"train.{key}: its log key {n!r} is also produced by train.{labels[n]}; "
                                      "rename one of the *_opt entries")
                labels[n] = key
        self._pending: OrderedDict[str, Tensor] = OrderedDict()

    def terms(self) -> list[str]:
        """The term names of the losses that have components (schedule names besides the keys)."""
        out: list[str] = []
        for m in self.losses.values():
            if _has_components(m):
                out += [t for t in m.TERMS if t not in out]
        return out

    def set_weights(self, weights: Mapping[str, float]) -> None:
        """Apply one iteration's schedule weights: loss keys scale whole losses, term names go to
        each loss that has the term (``set_weights``)."""
        for key, m in self.losses.items():
            if key in weights:
                self.outer[key] = float(weights[key])
            if _has_components(m):
                sub = {k: v for k, v in weights.items() if k in m.TERMS}
                if sub:
                    m.set_weights(sub)

    def forward(self, pred: Tensor, target: Tensor, weight: Tensor | None = None, **kwargs: Any) -> Tensor:
        extra = dict(kwargs)
        if weight is not None:
            extra["weight"] = weight
        total: Tensor | None = None
        for key, m in self.losses.items():
            label = loss_label(key)
            parts: Mapping[str, Tensor] = {}
            if _has_components(m):
                value, parts = m(pred, target, return_components=True, **extra)
            else:
                value = m(pred, target, **extra)
            ow = self.outer[key]
            if ow != 1.0:
                value = value * ow
            self._add(label, value)
            for term, v in parts.items():
                if term != "total":
                    self._add(f"{label}_{term}", v)
            total = value if total is None else total + value
        assert total is not None
        return total

    def _add(self, key: str, value: Tensor) -> None:
        v = value.detach()
        self._pending[key] = v if key not in self._pending else self._pending[key] + v

    def reset(self) -> None:
        """Forget what the calls since the last :meth:`take` recorded."""
        self._pending = OrderedDict()

    def take(self) -> OrderedDict[str, Tensor]:
        """What the calls since the last :meth:`take` / :meth:`reset` recorded; clears it."""
        out, self._pending = self._pending, OrderedDict()
        return out

    def merge_into(self, loss_dict: Mapping[str, Tensor]) -> OrderedDict[str, Tensor]:
        """The base's ``loss_dict`` with its ``l_pix`` (this module's total) replaced by the
        recorded entries, in place; entries are appended if the base logged no ``l_pix``."""
        pending = self.take()
        out: OrderedDict[str, Tensor] = OrderedDict()
        placed = False
        for k, v in loss_dict.items():
            if k == "l_pix" and not placed:
                out.update(pending)
                placed = True
            elif k not in pending:
                out[k] = v
        if not placed:
            out.update(pending)
        return out


# ----------------------------------------------------------------------------------------------
# Best-metric tracking with colorfid's directions
# ----------------------------------------------------------------------------------------------


def metric_tracking(content: Mapping[str, Any], metric: str) -> tuple[str, float | None]:
    """(better, target) for one ``val.metrics`` entry: the YAML's ``better`` or, for a colorfid
    metric, colorfid's direction; ``target`` is set for ``better == "target"``."""
    from .metrics import PREFIX, get_basicsr_metric

    kind = content.get("type")
    given = content.get("better")
    if isinstance(kind, str) and kind.startswith(PREFIX):
        spec = get_basicsr_metric(kind).colorfid_spec  # type: ignore[attr-defined]
        better = given if given is not None else spec.better
        if better not in (spec.better,):
            raise ConfigError(f"val.metrics.{metric}: better: {better} contradicts colorfid's direction for "
                              f"{kind} ({spec.better})")
        return better, spec.target if better == "target" else None
    if given == "target":
        raise ConfigError(f"val.metrics.{metric}: better: target is only known for colorfid metrics; "
                          f"{kind!r} needs higher or lower")
    return (given if given is not None else "higher"), None


class ColorfidModelMixin:
    """The additions described in the module docstring; mixed into a BasicSR model class."""

    #: ``(spec, key) -> loss module``: BasicSR's ``build_loss`` (upstream) or the fork's lookup.
    colorfid_build_loss: Callable[[dict, str], nn.Module]
    colorfid_loss_schedule: Any = None

    def __init__(self, opt: dict) -> None:
        from .register import check_options

        check_options(opt, flavour=self.colorfid_flavour)  # type: ignore[attr-defined]
        super().__init__(opt)  # type: ignore[call-arg]

    # -- losses --------------------------------------------------------------------------
    def init_training_settings(self) -> None:
        train_opt = self.opt["train"]  # type: ignore[attr-defined]
        extra = [k for k, v in train_opt.items() if k.endswith("_opt") and k not in BASE_LOSS_KEYS and v]
        super().init_training_settings()  # type: ignore[misc]
        losses: OrderedDict[str, nn.Module] = OrderedDict()
        if getattr(self, "cri_pix", None) is not None:
            losses["pixel_opt"] = self.cri_pix  # type: ignore[has-type]
        for key in extra:
            spec = dict(train_opt[key])
            if "type" not in spec:
                raise ConfigError(f"train.{key}: needs a type (a loss name)")
            try:
                module = self.colorfid_build_loss(spec, key)
            except (KeyError, AttributeError, TypeError, ValueError) as exc:
                if isinstance(exc, UsageError):
                    raise
                raise ConfigError(f"train.{key}: cannot build loss {spec.get('type')!r}: {exc}") from exc
            losses[key] = module.to(self.device)  # type: ignore[attr-defined]
        if losses:
            self.cri_pix = LossSum(losses)
            self.colorfid_loss_schedule = self._colorfid_schedule(train_opt.get("loss_schedule"), self.cri_pix)

    @staticmethod
    def _colorfid_schedule(spec: Any, losses: LossSum) -> Any:
        if not spec:
            return None
        from ..losses import LossWeightSchedule

        if not isinstance(spec, Mapping):
            raise ConfigError(f"train.loss_schedule: expected a mapping, got {type(spec).__name__}")
        d = dict(spec)
        d.setdefault("known_keys", list(losses.losses) + losses.terms())
        try:
            return LossWeightSchedule.from_dict(d)
        except UsageError as exc:
            raise type(exc)(f"train.loss_schedule: {exc}") from exc

    def optimize_parameters(self, current_iter: int, *args: Any, **kwargs: Any) -> Any:
        s = getattr(self, "cri_pix", None)
        if isinstance(s, LossSum):
            s.reset()
            if self.colorfid_loss_schedule is not None:
                s.set_weights(self.colorfid_loss_schedule.weights(int(current_iter)))
        return super().optimize_parameters(current_iter, *args, **kwargs)  # type: ignore[misc]

    def reduce_loss_dict(self, loss_dict: Mapping[str, Tensor]) -> Any:
        s = getattr(self, "cri_pix", None)
        if isinstance(s, LossSum):
            loss_dict = s.merge_into(loss_dict)
        return super().reduce_loss_dict(loss_dict)  # type: ignore[misc]

    # -- best-metric tracking (upstream BasicSR's SRModel) --------------------------------
    def _initialize_best_metric_results(self, dataset_name: str) -> None:
        if hasattr(self, "best_metric_results") and dataset_name in self.best_metric_results:
            return
        if not hasattr(self, "best_metric_results"):
            self.best_metric_results: dict[str, dict[str, dict[str, Any]]] = {}
        record: dict[str, dict[str, Any]] = {}
        for metric, content in self.opt["val"]["metrics"].items():  # type: ignore[attr-defined]
            better, target = metric_tracking(content, metric)
            init = -math.inf if better == "higher" else math.inf
            record[metric] = dict(better=better, val=init, iter=-1, target=target)
        self.best_metric_results[dataset_name] = record

    def _update_best_metric_result(self, dataset_name: str, metric: str, val: float, current_iter: int) -> None:
        rec = self.best_metric_results[dataset_name][metric]
        if rec["better"] == "target":
            t = rec["target"]
            if abs(val - t) <= abs(rec["val"] - t):  # NaN never wins, as in BasicSR
                rec["val"], rec["iter"] = val, current_iter
            return
        super()._update_best_metric_result(dataset_name, metric, val, current_iter)  # type: ignore[misc]


_CLASSES: dict[tuple[type, str], type] = {}


def model_class(base: type, name: str, build_loss: Callable[[dict, str], nn.Module], flavour: str) -> type:
    """``class <name>(ColorfidModelMixin, base)``, built once per (base, name) and cached, so
    registering twice finds the same class."""
    key = (base, name)
    cls = _CLASSES.get(key)
    if cls is None:
        doc = (f"{base.__name__} plus colorfid's additions (several *_opt losses, loss components in "
               f"log_dict, colorfid metric directions): see colorfid.basicsr.model.")
        cls = type(name, (ColorfidModelMixin, base), {
            "__module__": __name__,
            "__qualname__": name,
            "__doc__": doc,
            "colorfid_build_loss": staticmethod(build_loss),
            "colorfid_flavour": flavour,
        })
        _CLASSES[key] = cls
    return cls
