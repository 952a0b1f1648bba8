"""What a run is built from, read from the options: the network (and fine-tune weights), the
optimiser, the losses and their schedule, the validation sets and the gate's thresholds. Every
error names the options file and key, before any step."""

from __future__ import annotations

import dataclasses
import datetime as _dt
import inspect
import warnings
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from ..errors import ColorfidWarning, ConfigError, UnknownNameError, UsageError
from .._files import atomic_write_text
from ..losses.pixel import PIXEL_LOSSES
from .options import options_to_yaml_dict
from .state import sweep_temp_files

__all__ = ["known_losses", "build_loss", "loss_label", "build_network", "load_pretrained", "build_optimizer",
           "build_losses", "Validation", "build_validation", "val_set_from_dataset", "load_gate_thresholds", "prepare_experiment_dir"]


def known_losses() -> dict[str, type[nn.Module]]:
    """Every loss ``*_opt.type`` may name: colorfid.losses' and BasicSR's pixel losses."""
    from ..losses import BASICSR_LOSSES as colour_losses

    out = dict(colour_losses)
    out.update(PIXEL_LOSSES)
    return out


def build_loss(spec: Mapping[str, Any], key: str) -> nn.Module:
    """Build the loss of a normalised ``train.<key>`` section; ConfigError naming the key."""
    from ..metrics import MetricProtocol

    losses = known_losses()
    kind = spec["type"]
    if kind not in losses:
        raise UnknownNameError(f"train.{key}.type: unknown loss {kind!r}; known: {', '.join(sorted(losses))}")
    cls = losses[kind]
    kwargs = {k: v for k, v in spec.items() if k != "type"}
    if isinstance(kwargs.get("protocol"), Mapping):
        kwargs["protocol"] = MetricProtocol.from_dict(kwargs["protocol"])
    params = inspect.signature(cls).parameters
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        bad = [k for k in kwargs if k not in params]
        if bad:
            known = [k for k in params if k not in ("self",)]
            raise ConfigError(f"train.{key}: {kind} has no argument(s) {', '.join(bad)}; its arguments: {', '.join(known)}")
    try:
        return cls(**kwargs)
    except UsageError as exc:
        raise ConfigError(f"train.{key}: {exc}") from exc
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"train.{key}: cannot build {kind}({kwargs}): {exc}") from exc


def loss_label(key: str) -> str:
    return {"pixel_opt": "l_pix", "perceptual_opt": "l_percep"}.get(key, "l_" + key[: -len("_opt")])


def build_network(opt: Mapping[str, Any]) -> nn.Module:
    """The ``network_g`` of the options (NAFNet or NAFNetLocal)."""
    from ..models import nafnet

    spec = dict(opt["network_g"])
    kind = spec.pop("type")
    cls = {"NAFNet": nafnet.NAFNet, "NAFNetLocal": nafnet.NAFNetLocal}[kind]
    params = inspect.signature(cls).parameters
    bad = [k for k in spec if k not in params]
    if bad:
        raise ConfigError(f"{opt['source']}: network_g: {kind} has no argument(s) {', '.join(bad)}; "
                          f"its arguments: {', '.join(params)}")
    _check_network_budget(opt["source"], kind, spec, params)
    try:
        return cls(**spec)
    except (UsageError, TypeError, ValueError) as exc:
        raise ConfigError(f"{opt['source']}: network_g: {exc}") from exc


def _check_network_budget(source: Any, kind: str, spec: Mapping[str, Any], params: Mapping[str, Any]) -> None:
    """ConfigError before anything is built when ``network_g`` implies more blocks or parameters
    than colorfid builds (:func:`colorfid.models.checkpoint.check_nafnet_budget`,
    ``$COLORFID_MAX_PARAMS``): a 200,000-block configuration fails at once, not after minutes."""
    from ..models.checkpoint import check_nafnet_budget

    config = {k: spec.get(k, params[k].default) for k in ("img_channel", "width", "middle_blk_num", "enc_blk_nums",
                                                          "dec_blk_nums")}
    try:
        [int(config[k]) for k in ("img_channel", "width", "middle_blk_num")]
        [int(n) for k in ("enc_blk_nums", "dec_blk_nums") for n in config[k]]
    except (TypeError, ValueError, OverflowError):
        return  # malformed arguments: the constructor names them
    check_nafnet_budget(config, source=f"{source}: network_g", what=f"this {kind}", error=ConfigError)


def load_pretrained(net: nn.Module, path: Path, param_key: str, strict: bool) -> str | None:
    """Load fine-tune weights into ``net``; returns a note for the log when another key than
    ``param_key`` was used."""
    from ..models.checkpoint import check_state_dict, read_state_dict

    note = None
    sd, used = read_state_dict(path, param_key=param_key, return_key=True)
    if used is not None and used != param_key:
        note = f"{path}: no {param_key!r} entry; loaded {used!r}"
    if strict:
        check_state_dict(net, sd, source=str(path))
        net.load_state_dict(sd, strict=True)
        return note
    own = net.state_dict()
    fit = {k: v for k, v in sd.items() if k in own and tuple(own[k].shape) == tuple(v.shape)}
    skipped = sorted(set(sd) - set(fit))
    missing = sorted(set(own) - set(fit))
    net.load_state_dict(fit, strict=False)
    if skipped or missing:
        warnings.warn(f"{path}: strict_load_g is false: {len(fit)} tensors loaded, {len(skipped)} skipped "
                      f"(unexpected or other shape: {', '.join(skipped[:8])}), {len(missing)} left at their "
                      f"initial values ({', '.join(missing[:8])})", ColorfidWarning, stacklevel=4)
    return note


def build_optimizer(params: list[nn.Parameter], spec: Mapping[str, Any]) -> torch.optim.Optimizer:
    """The ``train.optim_g`` optimiser (Adam or AdamW) over ``params``."""
    cls = {"Adam": torch.optim.Adam, "AdamW": torch.optim.AdamW}[spec["type"]]
    return cls(params, lr=spec["lr"], betas=tuple(spec["betas"]), eps=spec["eps"], weight_decay=spec["weight_decay"],
               amsgrad=spec["amsgrad"])


def build_losses(opt: Mapping[str, Any], device: torch.device) -> tuple[dict[str, nn.Module], Any]:
    """The ``train.*_opt`` losses by key (on ``device``) and the ``train.loss_schedule`` (None
    when unset); every schedule name must reach a loss key or a term of a configured loss."""
    from ..losses import LossWeightSchedule

    losses: dict[str, nn.Module] = {key: build_loss(spec, key).to(device) for key, spec in opt["train"]["losses"].items()}
    schedule = None
    sched = opt["train"]["loss_schedule"]
    if sched:
        terms: list[str] = list(losses)
        for m in losses.values():
            terms += [t for t in getattr(m, "TERMS", ()) if t not in terms]
        d = dict(sched)
        d.setdefault("known_keys", terms)
        try:
            schedule = LossWeightSchedule.from_dict(d)
        except UsageError as exc:
            raise type(exc)(f"{opt['source']}: train.loss_schedule: {exc}") from exc
        for name in schedule.keys:
            if name not in losses and not any(name in getattr(m, "TERMS", ()) for m in losses.values()):
                raise UnknownNameError(f"{opt['source']}: train.loss_schedule: {name!r} is neither a loss "
                                       f"key ({', '.join(losses)}) nor a term of a configured loss")
    return losses, schedule


@dataclasses.dataclass
class Validation:
    """The validation of a run: its sets, the gate's thresholds (None: no gate), the grayscale LQ
    files to write before training, and whether the EMA weights are validated."""

    sets: list[Any] = dataclasses.field(default_factory=list)
    thresholds: Any = None
    inputs_to_make: list[tuple[Path, Path]] = dataclasses.field(default_factory=list)
    use_ema: bool = False


def build_validation(opt: Mapping[str, Any], root: Path, has_ema: bool) -> Validation:
    """The ``val`` section and ``datasets.val*`` as a :class:`Validation` (sets resolved and
    thresholds loaded now, so errors come before training)."""
    v = opt["val"]
    val = Validation()
    if v is None:
        return val
    if v["gate"] is not False:
        val.thresholds = load_gate_thresholds(v["gate"], opt["source"])
    if v["sets"]:
        from ..stress import resolve_sets

        specs = list(v["sets"]) if val.thresholds is None else val.thresholds.resolve_set_names(v["sets"])
        val.sets.extend(resolve_sets(specs))
    for key, d in opt["datasets"]["val"].items():
        val.sets.append(val_set_from_dataset(opt, root, key, d, val.inputs_to_make))
    names = [s.name for s in val.sets]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ConfigError(f"{opt['source']}: validation sets share the name(s) {dup}")
    from ..metrics import get_metric

    for i, m in enumerate(v["best_metrics"]):
        try:
            get_metric(m)
        except UnknownNameError as exc:
            raise UnknownNameError(f"{opt['source']}: val.best_metrics[{i}]: {exc}") from None
    val.use_ema = has_ema if v["use_ema"] == "auto" else bool(v["use_ema"])
    if val.use_ema and not has_ema:
        raise ConfigError(f"{opt['source']}: val.use_ema is true but train.ema_decay is 0 (no EMA)")
    return val


def val_set_from_dataset(opt: Mapping[str, Any], root: Path, key: str, d: Mapping[str, Any],
                         to_make: list[tuple[Path, Path]]) -> Any:
    """A ``datasets.val*`` folder pair as a colorfid StressSet; for grayscale degradation the LQ
    files are listed in ``to_make`` (written at the start of training, under ``root``)."""
    from ..stress import Pair, StressSet
    from .data import paired_paths

    src = opt["source"]
    try:
        pairs = paired_paths(d["dataroot_gt"], d["dataroot_lq"], filename_tmpl=d["filename_tmpl"])
    except ConfigError as exc:
        raise ConfigError(f"{src}: datasets.{key}: {exc}") from exc
    if d["degradation"] == "grayscale":
        out = root / "val_inputs" / d["name"] / "lq"
        pairs = [(gt, out / (gt.stem + ".png")) for gt, _ in pairs]
        to_make.extend(pairs)
    return StressSet(name=d["name"], root=Path(d["dataroot_gt"]).parent, kind="lq",
                     pairs=[Pair(name=gt.stem, gt=gt, lq=lq, pred=None) for gt, lq in pairs],
                     description=f"datasets.{key} ({d['dataroot_gt']})", protocol_overrides={})


def load_gate_thresholds(spec: Path | Mapping[str, Any] | str, source: str) -> Any:
    """``val.gate``: a thresholds TOML path, an inline mapping (the TOML's content), or ``auto``
    (``colorfid.toml`` / ``[tool.colorfid]`` in the cwd, else the bundled ``golden/colorfid.toml``,
    else no gate)."""
    from .. import gate

    if isinstance(spec, Mapping):
        return gate.parse_thresholds(dict(spec), source=f"{source}: val.gate")
    if spec == "auto":
        found = gate.find_thresholds()
        return None if found is None else gate.load_thresholds(found)
    return gate.load_thresholds(spec)


def prepare_experiment_dir(tr: Any) -> Path | None:
    """On rank 0 before the first step: move an earlier run's folder aside (unless resuming;
    returns where it went), make the folders, sweep stale temporary files, save the options and
    write the grayscale LQ inputs of the validation sets."""
    if not tr.is_main:
        return None
    archived = None
    if tr.resume_path is None and tr.root.exists() and any(tr.root.iterdir()):
        stamp = _dt.datetime.now().strftime("%Y%m%d_%H%M%S")
        archived = tr.root.with_name(f"{tr.root.name}_archived_{stamp}")
        tr.root.rename(archived)
    for d in (tr.root, tr.models_dir, tr.states_dir):
        d.mkdir(parents=True, exist_ok=True)
    sweep_temp_files(tr.models_dir, tr.states_dir)
    import yaml

    atomic_write_text(tr.root / f"options_{tr.iteration}.yml",
                      yaml.safe_dump(options_to_yaml_dict(tr.opt), sort_keys=False))
    if tr.val_inputs_to_make:
        from ..io import read_image, write_image
        from .data import to_grayscale

        for gt, lq in tr.val_inputs_to_make:
            if not lq.exists():
                lq.parent.mkdir(parents=True, exist_ok=True)
                write_image(lq, to_grayscale(read_image(gt)), bits=16)
    return archived
