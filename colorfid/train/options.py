"""Trainer options: YAML in the NAFNet / BasicSR layout, validated before anything trains.

``load_options(path)`` reads a YAML file and ``parse_options(mapping)`` validates an already
loaded mapping. Both return a *normalised* nested ``dict``: every supported key is present
(defaults filled in), numbers have their proper types (``!!float 2e4`` for an iteration count
becomes ``20000``; ``"1e-3"``, which YAML 1.1 reads as a string, becomes ``0.001``), paths are
absolute :class:`pathlib.Path` objects.

Rules
-----
* A supported key with a bad value raises :class:`~colorfid.errors.ConfigError` naming the file
  and the dotted key (``options.yml: train.optim_g.lr: expected a number > 0, got 'fast'``).
* Keys colorfid does not support produce **one** :class:`~colorfid.errors.ColorfidWarning` that
  lists all of them (dotted), so a team's existing NAFNet / BasicSR YAML still runs and nothing is
  dropped silently. Exceptions: unknown arguments of ``network_g`` (a different network than the
  one asked for would be built) and every ``train.<name>_opt`` loss entry (each is built, or an
  error names it: nothing is ignored the way BasicSR ignores loss keys it does not know).
* Relative paths are resolved as BasicSR resolves them: relative to the **current working
  directory** of the process (BasicSR's ``train.py`` is run from the repository root and opens
  ``./datasets/...`` as given). ``path.root`` (default: the cwd) only decides where
  ``experiments/<name>`` goes, as in BasicSR.

Supported keys (defaults in brackets)
-------------------------------------
top level: ``name`` (required), ``manual_seed`` [random, logged and saved], ``model_type``,
``scale`` [1; only 1], ``num_gpu`` (informational; DDP comes from ``torchrun``), ``is_train``,
``dist_params: {backend, port}``.

``datasets.train`` / ``datasets.val*``: ``name``, ``type`` [PairedImageDataset], ``dataroot_gt``,
``dataroot_lq`` (not with ``degradation``), ``filename_tmpl`` ['{}'], ``io_backend: {type: disk}``,
``gt_size`` [null = whole images], ``use_hflip`` / ``use_flip`` [true], ``use_rot`` [true],
``use_shuffle`` [true], ``batch_size_per_gpu`` (required), ``num_worker_per_gpu`` [0],
``dataset_enlarge_ratio`` [1], ``pin_memory`` [false], ``persistent_workers`` [true when workers],
``prefetch_mode`` [null], ``phase``, ``scale``, ``degradation`` [null | ``grayscale``],
``color_jitter`` (LQ only, off by default: ``prob`` [1.0], ``exposure`` [EV stops range],
``contrast`` [factor range], ``white_balance`` [gain range], ``saturation`` [factor range]; each range
null = that part off).

``network_g``: ``type`` (NAFNet | NAFNetLocal) + the constructor's arguments.

``path``: ``pretrain_network_g`` (fine-tune from), ``strict_load_g`` [true], ``param_key_g`` /
``param_key`` ['params'], ``resume_state`` (exact continuation), ``auto_resume`` [false],
``root`` [cwd], ``experiments_root`` [<root>/experiments/<name>].

``train``: ``optim_g: {type: Adam|AdamW, lr, betas, eps, weight_decay, amsgrad}``,
``scheduler: {type: CosineAnnealingRestartLR (periods, restart_weights, eta_min) |
TrueCosineAnnealingLR (T_max, eta_min) | MultiStepLR / MultiStepRestartLR (milestones, gamma,
restarts, restart_weights)}`` [null = constant], ``total_iter`` (required), ``warmup_iter``
[-1 = none], ``pixel_opt`` and any other ``<name>_opt`` loss ``{type, loss_weight, ...}``,
``loss_schedule`` (a mapping handed to colorfid.losses' schedule), ``grad_clip_norm`` [null = no
clipping], ``grad_clip_norm_type`` [2.0], ``use_grad_clip`` (NAFNet's flag; true needs an explicit
``grad_clip_norm``), ``ema_decay`` [0 = off], ``scale_schedule`` [false: a ``total_iter`` shorter
than the scheduler's length or a loss-schedule stage start only warns; true: the schedule is
scaled to ``total_iter``, see :func:`colorfid.train.schedulers.fit_schedule`], ``amp`` [auto: bf16 on CUDA, off on CPU | bf16 |
fp16 | off], ``channels_last`` [auto: on CUDA], ``max_nonfinite_steps`` [10].

``val``: ``val_freq`` [null = only at the end], ``sets`` (bundled stress-set names or folders),
``gate`` [auto: ``colorfid.toml`` / ``[tool.colorfid]`` in the cwd, else the bundled
``golden/colorfid.toml`` | a thresholds TOML path | an inline mapping | false = no gate], ``report`` [false], ``best_metrics``
[de00_p95, sat_ratio_hc, psnr], ``use_ema`` [auto], ``tile``, ``overlap`` [32].

``logger``: ``print_freq`` [100], ``save_checkpoint_freq`` [5000], ``use_tb_logger`` [false].
"""

from __future__ import annotations

import copy
import math
import os
import re
import warnings
from pathlib import Path
from typing import Any, Callable, Mapping

from .._files import read_text
from ..errors import ColorfidWarning, ConfigError
from ..losses.pixel import PIXEL_LOSSES

__all__ = [
    "load_options",
    "parse_options",
    "options_to_yaml_dict",
    "SUPPORTED_OPTIMIZERS",
    "SUPPORTED_SCHEDULERS",
    "BASICSR_LOSSES",
]

SUPPORTED_OPTIMIZERS: tuple[str, ...] = ("Adam", "AdamW")
SUPPORTED_SCHEDULERS: tuple[str, ...] = (
    "CosineAnnealingRestartLR",
    "TrueCosineAnnealingLR",
    "MultiStepLR",
    "MultiStepRestartLR",
)
#: BasicSR / NAFNet loss names the trainer accepts in ``*_opt`` besides colorfid's own losses.
BASICSR_LOSSES: tuple[str, ...] = tuple(PIXEL_LOSSES)
_AMP_CHOICES = ("auto", "bf16", "fp16", "off")
_DEFAULT_BEST_METRICS = ["de00_p95", "sat_ratio_hc", "psnr"]

_MISSING = object()


class _Ctx:
    """Parsing context: the source name, the cwd used for relative paths, unknown keys found."""

    def __init__(self, source: str, cwd: Path) -> None:
        self.source = source
        self.cwd = cwd
        self.unknown: list[str] = []

    def error(self, key: str, problem: str, value: Any = _MISSING) -> ConfigError:
        got = "" if value is _MISSING else f", got {value!r}"
        return ConfigError(f"{self.source}: {key}: {problem}{got}")


class _Section:
    """Reads the keys of one mapping; whatever is not read is reported as unknown."""

    def __init__(self, ctx: _Ctx, data: Any, key: str) -> None:
        if data is None:
            data = {}
        if not isinstance(data, Mapping):
            raise ctx.error(key or "<top level>", "expected a mapping", data)
        self.ctx = ctx
        self.key = key
        self.data = dict(data)
        self.read: set[str] = set()

    def dotted(self, name: str) -> str:
        return f"{self.key}.{name}" if self.key else name

    def has(self, name: str) -> bool:
        return name in self.data and self.data[name] is not None

    def raw(self, name: str, default: Any = None) -> Any:
        self.read.add(name)
        return self.data.get(name, default)

    def get(self, name: str, conv: Callable[[_Ctx, str, Any], Any], default: Any = _MISSING) -> Any:
        self.read.add(name)
        value = self.data.get(name, None)
        if value is None:
            if default is _MISSING:
                raise self.ctx.error(self.dotted(name), "is required")
            return copy.deepcopy(default)
        return conv(self.ctx, self.dotted(name), value)

    def finish(self, ignore: tuple[str, ...] = ()) -> None:
        for name in self.data:
            if name not in self.read and name not in ignore:
                self.ctx.unknown.append(self.dotted(name))


# --------------------------------------------------------------------------------------------
# Value converters: (ctx, dotted key, value) -> normalised value, or ConfigError naming the key.
# --------------------------------------------------------------------------------------------


def _number(ctx: _Ctx, key: str, value: Any) -> float:
    if isinstance(value, bool):
        raise ctx.error(key, "expected a number", value)
    if isinstance(value, (int, float)):
        try:
            out = float(value)
        except OverflowError:  # an integer beyond float range
            raise ctx.error(key, "expected a finite number", f"an integer of {len(str(abs(value)))} digits") from None
    elif isinstance(value, str):
        try:
            out = float(value.strip())
        except ValueError:
            raise ctx.error(key, "expected a number", value) from None
    else:
        raise ctx.error(key, "expected a number", value)
    if not math.isfinite(out):
        raise ctx.error(key, "expected a finite number", value)
    return out


def _float(lo: float | None = None, hi: float | None = None, *, lo_open: bool = False,
           hi_open: bool = False) -> Callable[[_Ctx, str, Any], float]:
    def conv(ctx: _Ctx, key: str, value: Any) -> float:
        out = _number(ctx, key, value)
        bad = (lo is not None and (out < lo or (lo_open and out == lo))) or (
            hi is not None and (out > hi or (hi_open and out == hi)))
        if bad:
            lo_t = "" if lo is None else f"{'>' if lo_open else '>='} {lo}"
            hi_t = "" if hi is None else f"{'<' if hi_open else '<='} {hi}"
            raise ctx.error(key, f"expected a number {' and '.join(t for t in (lo_t, hi_t) if t)}", value)
        return out

    return conv


def _int(lo: int | None = None, hi: int | None = None) -> Callable[[_Ctx, str, Any], int]:
    def conv(ctx: _Ctx, key: str, value: Any) -> int:
        out_f = _number(ctx, key, value)
        if out_f != int(out_f):
            raise ctx.error(key, "expected an integer", value)
        out = int(out_f)
        if (lo is not None and out < lo) or (hi is not None and out > hi):
            rng = f">= {lo}" if hi is None else (f"<= {hi}" if lo is None else f"in [{lo}, {hi}]")
            raise ctx.error(key, f"expected an integer {rng}", value)
        return out

    return conv


def _bool(ctx: _Ctx, key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ctx.error(key, "expected true or false", value)
    return value


def _str(choices: tuple[str, ...] | None = None) -> Callable[[_Ctx, str, Any], str]:
    def conv(ctx: _Ctx, key: str, value: Any) -> str:
        if not isinstance(value, str) or not value.strip():
            raise ctx.error(key, "expected a non-empty string", value)
        if choices is not None and value not in choices:
            raise ctx.error(key, f"expected one of {', '.join(choices)}", value)
        return value

    return conv


def _path(ctx: _Ctx, key: str, value: Any) -> Path:
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if not isinstance(value, str) or not value.strip():
        raise ctx.error(key, "expected a path", value)
    p = Path(os.path.expanduser(os.path.expandvars(value)))
    if not p.is_absolute():
        p = ctx.cwd / p
    return Path(os.path.normpath(p))


def _list(item: Callable[[_Ctx, str, Any], Any], length: int | None = None,
          min_len: int = 0) -> Callable[[_Ctx, str, Any], list]:
    def conv(ctx: _Ctx, key: str, value: Any) -> list:
        if isinstance(value, (str, bytes, Mapping)) or not hasattr(value, "__iter__"):
            raise ctx.error(key, "expected a list", value)
        items = list(value)
        if length is not None and len(items) != length:
            raise ctx.error(key, f"expected a list of {length} items", value)
        if len(items) < min_len:
            raise ctx.error(key, f"expected a list of at least {min_len} item(s)", value)
        return [item(ctx, f"{key}[{i}]", v) for i, v in enumerate(items)]

    return conv


def _mapping(ctx: _Ctx, key: str, value: Any) -> dict:
    if not isinstance(value, Mapping):
        raise ctx.error(key, "expected a mapping", value)
    return dict(value)


def _range_pair(lo: float | None, hi: float | None) -> Callable[[_Ctx, str, Any], list]:
    def conv(ctx: _Ctx, key: str, value: Any) -> list:
        pair = _list(_float(lo, hi), 2)(ctx, key, value)
        if pair[0] > pair[1]:
            raise ctx.error(key, "expected [low, high] with low <= high", value)
        return pair

    return conv


# --------------------------------------------------------------------------------------------
# Sections
# --------------------------------------------------------------------------------------------


def _parse_degradation(ctx: _Ctx, key: str, value: Any) -> str | None:
    if isinstance(value, Mapping):
        sec = _Section(ctx, value, key)
        kind = sec.get("type", _str(("grayscale",)))
        sec.finish()
        return kind
    return _str(("grayscale",))(ctx, key, value)


def _parse_jitter(ctx: _Ctx, key: str, value: Any) -> dict | None:
    sec = _Section(ctx, value, key)
    out = {
        "prob": sec.get("prob", _float(0.0, 1.0), 1.0),
        "exposure": sec.get("exposure", _range_pair(-8.0, 8.0), None),
        "contrast": sec.get("contrast", _range_pair(0.0, None), None),
        "white_balance": sec.get("white_balance", _range_pair(0.0, None), None),
        "saturation": sec.get("saturation", _range_pair(0.0, None), None),
    }
    sec.finish()
    if out["contrast"] is not None and out["contrast"][0] <= 0:
        raise ctx.error(f"{key}.contrast", "factors must be > 0", out["contrast"])
    if out["white_balance"] is not None and out["white_balance"][0] <= 0:
        raise ctx.error(f"{key}.white_balance", "gains must be > 0", out["white_balance"])
    return out


def _parse_dataset(ctx: _Ctx, value: Any, key: str, *, train: bool) -> dict:
    sec = _Section(ctx, value, key)
    out: dict[str, Any] = {}
    out["name"] = sec.get("name", _str(), key.split(".")[-1])
    out["type"] = sec.get("type", _str(("PairedImageDataset",)), "PairedImageDataset")
    out["degradation"] = sec.get("degradation", _parse_degradation, None)
    out["dataroot_gt"] = sec.get("dataroot_gt", _path)
    if out["degradation"] is None:
        out["dataroot_lq"] = sec.get("dataroot_lq", _path)
    else:
        if sec.has("dataroot_lq"):
            raise ctx.error(f"{key}.dataroot_lq", f"not used with degradation: {out['degradation']} "
                            "(the LQ image is made from the GT on the fly); remove one of the two")
        sec.read.add("dataroot_lq")
        out["dataroot_lq"] = None
    out["filename_tmpl"] = sec.get("filename_tmpl", _str(), "{}")
    if "{}" not in out["filename_tmpl"]:
        raise ctx.error(f"{key}.filename_tmpl", "must contain '{}' (the GT file stem)", out["filename_tmpl"])
    io = _Section(ctx, sec.raw("io_backend"), f"{key}.io_backend")
    io_type = io.get("type", _str(), "disk")
    if io_type != "disk":
        raise ctx.error(f"{key}.io_backend.type", "only 'disk' is supported (image folders); "
                        "convert lmdb datasets to folders", io_type)
    io.finish()
    out["io_backend"] = {"type": "disk"}
    sec.get("phase", _str(), None)
    scale = sec.get("scale", _int(1, 1), 1)
    del scale
    if train:
        out["gt_size"] = sec.get("gt_size", _int(1), None)
        hflip = sec.get("use_hflip", _bool, None)
        flip = sec.get("use_flip", _bool, None)
        if hflip is not None and flip is not None and hflip != flip:
            raise ctx.error(f"{key}.use_flip", f"contradicts {key}.use_hflip (they are aliases)", flip)
        out["use_hflip"] = True if hflip is None and flip is None else bool(hflip if hflip is not None else flip)
        out["use_rot"] = sec.get("use_rot", _bool, True)
        out["use_shuffle"] = sec.get("use_shuffle", _bool, True)
        out["batch_size_per_gpu"] = sec.get("batch_size_per_gpu", _int(1))
        out["num_worker_per_gpu"] = sec.get("num_worker_per_gpu", _int(0), 0)
        out["dataset_enlarge_ratio"] = sec.get("dataset_enlarge_ratio", _int(1), 1)
        out["pin_memory"] = sec.get("pin_memory", _bool, False)
        out["persistent_workers"] = sec.get("persistent_workers", _bool, out["num_worker_per_gpu"] > 0)
        out["prefetch_mode"] = sec.get("prefetch_mode", _str(("cpu", "cuda")), None)
        out["color_jitter"] = sec.get("color_jitter", _parse_jitter, None)
    sec.finish()
    return out


_NETWORK_TYPES = ("NAFNet", "NAFNetLocal")


def _parse_network(ctx: _Ctx, value: Any) -> dict:
    sec = _Section(ctx, value, "network_g")
    if not sec.data:
        raise ctx.error("network_g", "is required (type: NAFNet and its arguments)")
    out = {"type": sec.get("type", _str(_NETWORK_TYPES))}
    for k, v in sec.data.items():
        if k != "type":
            out[k] = copy.deepcopy(v)
            sec.read.add(k)
    sec.finish()
    return out


def _parse_path(ctx: _Ctx, value: Any, name: str) -> dict:
    sec = _Section(ctx, value, "path")
    out: dict[str, Any] = {}
    out["pretrain_network_g"] = sec.get("pretrain_network_g", _path, None)
    out["strict_load_g"] = sec.get("strict_load_g", _bool, True)
    key_g = sec.get("param_key_g", _str(), None)
    key = sec.get("param_key", _str(), None)
    if key_g is not None and key is not None and key_g != key:
        raise ctx.error("path.param_key", f"contradicts path.param_key_g ({key_g!r}); they are aliases", key)
    out["param_key_g"] = key_g or key or "params"
    out["resume_state"] = sec.get("resume_state", _path, None)
    out["auto_resume"] = sec.get("auto_resume", _bool, False)
    out["root"] = sec.get("root", _path, ctx.cwd)
    out["experiments_root"] = sec.get("experiments_root", _path, out["root"] / "experiments" / name)
    for derived in ("models", "training_states", "log", "visualization"):
        sec.get(derived, _path, None)  # BasicSR fills these itself; they are derived here too
    sec.finish()
    root = out["experiments_root"]
    out["models"] = root / "models"
    out["training_states"] = root / "training_states"
    out["log"] = root
    out["visualization"] = root / "visualization"
    return out


def _parse_optim(ctx: _Ctx, value: Any) -> dict:
    sec = _Section(ctx, value, "train.optim_g")
    if not sec.data:
        raise ctx.error("train.optim_g", "is required (type: Adam|AdamW, lr: ...)")
    out = {
        "type": sec.get("type", _str(SUPPORTED_OPTIMIZERS)),
        "lr": sec.get("lr", _float(0.0, lo_open=True)),
        "betas": sec.get("betas", _list(_float(0.0, 1.0, hi_open=True), 2), [0.9, 0.999]),
        "eps": sec.get("eps", _float(0.0, lo_open=True), 1e-8),
        "amsgrad": sec.get("amsgrad", _bool, False),
    }
    out["weight_decay"] = sec.get("weight_decay", _float(0.0), 0.01 if out["type"] == "AdamW" else 0.0)
    sec.finish()
    return out


def _parse_scheduler(ctx: _Ctx, value: Any, total_iter: int) -> dict | None:
    key = "train.scheduler"
    sec = _Section(ctx, value, key)
    if not sec.data:
        return None
    kind = sec.get("type", _str(SUPPORTED_SCHEDULERS))
    out: dict[str, Any] = {"type": kind, "eta_min": 0.0}
    if kind == "CosineAnnealingRestartLR":
        out["periods"] = sec.get("periods", _list(_int(1), min_len=1))
        out["restart_weights"] = sec.get("restart_weights", _list(_float(0.0)), [1.0] * len(out["periods"]))
        if len(out["restart_weights"]) != len(out["periods"]):
            raise ctx.error(f"{key}.restart_weights", f"needs one weight per period ({len(out['periods'])})",
                            out["restart_weights"])
        out["eta_min"] = sec.get("eta_min", _float(0.0), 0.0)
        if sum(out["periods"]) < total_iter:
            raise ctx.error(f"{key}.periods", f"sum to {sum(out['periods'])}, fewer than train.total_iter "
                            f"({total_iter}): the schedule would end before training does", out["periods"])
    elif kind == "TrueCosineAnnealingLR":
        out["T_max"] = sec.get("T_max", _int(1), total_iter)
        out["eta_min"] = sec.get("eta_min", _float(0.0), 0.0)
    else:  # MultiStepLR / MultiStepRestartLR (BasicSR maps both names to MultiStepRestartLR)
        out["type"] = "MultiStepRestartLR"
        out["milestones"] = sec.get("milestones", _list(_int(1)))
        if out["milestones"] != sorted(out["milestones"]):
            raise ctx.error(f"{key}.milestones", "must be increasing", out["milestones"])
        out["gamma"] = sec.get("gamma", _float(0.0, lo_open=True), 0.1)
        out["restarts"] = sec.get("restarts", _list(_int(1)), [])
        out["restart_weights"] = sec.get("restart_weights", _list(_float(0.0)), [1.0] * len(out["restarts"]))
        if len(out["restart_weights"]) != len(out["restarts"]):
            raise ctx.error(f"{key}.restart_weights", f"needs one weight per restart ({len(out['restarts'])})",
                            out["restart_weights"])
    sec.finish()
    return out


def _parse_loss(ctx: _Ctx, value: Any, key: str) -> dict:
    sec = _Section(ctx, value, key)
    if not sec.data:
        raise ctx.error(key, "expected a mapping with at least 'type' (a colorfid loss or one of "
                        f"{', '.join(BASICSR_LOSSES)})", value)
    out = {"type": sec.get("type", _str()), "loss_weight": sec.get("loss_weight", _float(0.0), 1.0)}
    for k, v in sec.data.items():
        if k not in ("type", "loss_weight"):
            out[k] = copy.deepcopy(v)
            sec.read.add(k)
    sec.finish()
    return out


_LOSS_KEY = re.compile(r"^[A-Za-z0-9]+(_[A-Za-z0-9]+)*_opt$")


def _parse_train(ctx: _Ctx, value: Any) -> dict:
    sec = _Section(ctx, value, "train")
    out: dict[str, Any] = {}
    out["total_iter"] = sec.get("total_iter", _int(1))
    out["optim_g"] = _parse_optim(ctx, sec.raw("optim_g"))
    out["scheduler"] = _parse_scheduler(ctx, sec.raw("scheduler"), out["total_iter"])
    warm = sec.get("warmup_iter", _int(-1), -1)
    out["warmup_iter"] = max(warm, 0)
    losses: dict[str, dict] = {}
    for k in sec.data:
        if _LOSS_KEY.match(k) and not k.startswith("optim"):
            sec.read.add(k)
            if sec.data[k] is None:  # ``perceptual_opt: ~`` switches a loss off, as in BasicSR
                continue
            losses[k] = _parse_loss(ctx, sec.data[k], f"train.{k}")
    if not losses:
        raise ctx.error("train.pixel_opt", "is required: at least one loss (train.<name>_opt) must be configured")
    out["losses"] = losses
    out["loss_schedule"] = sec.get("loss_schedule", _mapping, None)
    out["grad_clip_norm"] = sec.get("grad_clip_norm", _float(0.0, lo_open=True), None)
    out["grad_clip_norm_type"] = sec.get("grad_clip_norm_type", _float(0.0, lo_open=True), 2.0)
    use_clip = sec.get("use_grad_clip", _bool, None)
    if use_clip is True and out["grad_clip_norm"] is None:
        raise ctx.error("train.use_grad_clip", "is true but train.grad_clip_norm is not set; colorfid has no "
                        "hidden default (NAFNet's code clips at 0.01): set grad_clip_norm to the max norm", True)
    if use_clip is False:
        out["grad_clip_norm"] = None
    out["ema_decay"] = sec.get("ema_decay", _float(0.0, 1.0, hi_open=True), 0.0)
    out["scale_schedule"] = sec.get("scale_schedule", _bool, False)
    out["amp"] = sec.get("amp", _str(_AMP_CHOICES), "auto")
    cl = sec.raw("channels_last", "auto")
    if cl is None:
        cl = "auto"
    if cl != "auto" and not isinstance(cl, bool):
        raise ctx.error("train.channels_last", "expected auto, true or false", cl)
    out["channels_last"] = cl
    out["max_nonfinite_steps"] = sec.get("max_nonfinite_steps", _int(1), 10)
    sec.finish()
    return out


def _parse_gate(ctx: _Ctx, key: str, value: Any) -> Path | dict | str | bool:
    if isinstance(value, Mapping):
        return dict(value)
    if value is False or value == "auto":
        return value
    if value is True:
        return "auto"
    return _path(ctx, key, value)


def _parse_val(ctx: _Ctx, value: Any) -> dict:
    sec = _Section(ctx, value, "val")
    out: dict[str, Any] = {}
    out["val_freq"] = sec.get("val_freq", _int(1), None)
    sets = sec.raw("sets")
    if sets is None:
        out["sets"] = []
    elif isinstance(sets, str):
        out["sets"] = [sets]
    else:
        out["sets"] = _list(_str())(ctx, "val.sets", sets)
    out["gate"] = sec.get("gate", _parse_gate, "auto")
    out["report"] = sec.get("report", _bool, False)
    out["best_metrics"] = sec.get("best_metrics", _list(_str()), list(_DEFAULT_BEST_METRICS))
    ue = sec.raw("use_ema", "auto")
    if ue is None:
        ue = "auto"
    if ue != "auto" and not isinstance(ue, bool):
        raise ctx.error("val.use_ema", "expected auto, true or false", ue)
    out["use_ema"] = ue
    out["tile"] = sec.get("tile", _int(8), None)
    out["overlap"] = sec.get("overlap", _int(0), 32)
    sec.finish()
    return out


def _parse_logger(ctx: _Ctx, value: Any) -> dict:
    sec = _Section(ctx, value, "logger")
    out = {
        "print_freq": sec.get("print_freq", _int(1), 100),
        "save_checkpoint_freq": sec.get("save_checkpoint_freq", _int(1), 5000),
        "use_tb_logger": sec.get("use_tb_logger", _bool, False),
    }
    wandb = sec.raw("wandb")
    if isinstance(wandb, Mapping) and wandb.get("project") is not None:
        ctx.unknown.append("logger.wandb (weights & biases logging is not supported)")
    sec.finish()
    return out


def parse_options(raw: Mapping[str, Any], *, source: str = "<options>", cwd: str | os.PathLike | None = None
                  ) -> dict[str, Any]:
    """Validate an options mapping (as loaded from YAML) and return the normalised options.

    ``source`` names the file in messages; ``cwd`` (default: the process's cwd) is the base of
    relative paths. Raises :class:`~colorfid.errors.ConfigError` naming the first bad key; warns
    once (:class:`~colorfid.errors.ColorfidWarning`) listing every unsupported key.
    """
    ctx = _Ctx(source, Path(cwd).resolve() if cwd is not None else Path.cwd())
    top = _Section(ctx, raw, "")
    opt: dict[str, Any] = {"source": source}
    opt["name"] = top.get("name", _str())
    if "/" in opt["name"] or "\\" in opt["name"] or opt["name"] in (".", ".."):
        raise ctx.error("name", "must be a plain name (it becomes a folder under experiments/)", opt["name"])
    opt["manual_seed"] = top.get("manual_seed", _int(0, 2**63 - 1), None)
    opt["model_type"] = top.get("model_type", _str(), None)
    opt["scale"] = top.get("scale", _int(1, 1), 1)
    num_gpu = top.raw("num_gpu")
    if num_gpu is not None and num_gpu != "auto":
        _int(0)(ctx, "num_gpu", num_gpu)
    top.get("is_train", _bool, True)
    dist = _Section(ctx, top.raw("dist_params"), "dist_params")
    opt["dist_params"] = {"backend": dist.get("backend", _str(("nccl", "gloo")), None),
                          "port": dist.get("port", _int(1, 65535), None)}
    dist.finish()

    ds = _Section(ctx, top.raw("datasets"), "datasets")
    if not ds.has("train"):
        raise ctx.error("datasets.train", "is required")
    opt["datasets"] = {"train": _parse_dataset(ctx, ds.raw("train"), "datasets.train", train=True), "val": {}}
    for k in ds.data:
        if k.startswith("val") and ds.data[k] is not None:
            ds.read.add(k)
            opt["datasets"]["val"][k] = _parse_dataset(ctx, ds.data[k], f"datasets.{k}", train=False)
    ds.finish()

    opt["network_g"] = _parse_network(ctx, top.raw("network_g"))
    opt["path"] = _parse_path(ctx, top.raw("path"), opt["name"])
    opt["train"] = _parse_train(ctx, top.raw("train"))
    opt["val"] = _parse_val(ctx, top.raw("val")) if top.raw("val") is not None else None
    if opt["val"] is None and opt["datasets"]["val"]:
        opt["val"] = _parse_val(ctx, {})
    opt["logger"] = _parse_logger(ctx, top.raw("logger"))
    top.finish()
    if opt["val"] is not None and not opt["val"]["sets"] and not opt["datasets"]["val"]:
        raise ctx.error("val.sets", "validation is configured but names no set (val.sets or datasets.val*)")

    if ctx.unknown:
        warnings.warn(
            f"{source}: ignoring {len(ctx.unknown)} option key(s) colorfid does not support: "
            + ", ".join(ctx.unknown),
            ColorfidWarning,
            stacklevel=2,
        )
    opt["unknown_keys"] = list(ctx.unknown)
    return opt


def load_options(path: str | os.PathLike, *, cwd: str | os.PathLike | None = None) -> dict[str, Any]:
    """Read a YAML options file (NAFNet / BasicSR layout) and validate it (:func:`parse_options`)."""
    import yaml

    p = Path(path)
    text = read_text(p, ConfigError, "options file")
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: not valid YAML: {exc}") from exc
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{p}: expected a YAML mapping at the top level, got {type(raw).__name__}")
    return parse_options(raw, source=str(p), cwd=cwd)


def options_to_yaml_dict(opt: Any) -> Any:
    """The options with paths as strings (plain types only) — for logging and the state file."""
    if isinstance(opt, Mapping):
        return {str(k): options_to_yaml_dict(v) for k, v in opt.items()}
    if isinstance(opt, (list, tuple)):
        return [options_to_yaml_dict(v) for v in opt]
    if isinstance(opt, Path):
        return str(opt)
    return opt
