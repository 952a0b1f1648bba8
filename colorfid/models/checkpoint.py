"""Checkpoints: read BasicSR / official NAFNet / bare / safetensors weights safely, save atomically.

Reading never executes code: ``.pth``/``.pt`` files are read with
``torch.load(..., weights_only=True)`` (PyTorch's restricted unpickler: tensors, dicts,
lists, numbers and strings only) and ``.safetensors`` files with ``safetensors``. A
checkpoint whose pickle references anything else (a class, ``os.system``...) is refused
with :class:`~colorfid.errors.UnsafeCheckpointError` before any of it runs.

Layouts read (the first that applies):

1. a dict holding ``param_key``, BasicSR's layout (:func:`load_model`, i.e. evaluation and
   inference, asks for ``"params_ema"`` -- :data:`EVAL_PARAM_KEY`, the weights BasicSR's and
   colorfid's trainers validate when EMA is on --; :func:`read_state_dict`, i.e. fine-tuning,
   for ``"params"`` as BasicSR's ``param_key_g``);
2. BasicSR's fallback: the other of ``"params"`` / ``"params_ema"`` when the one asked for
   is absent (BasicSR falls back from ``params_ema`` to ``params``; colorfid also the other way
   round, so ``--checkpoint`` works on EMA-only files), then ``"state_dict"``, ``"model"``,
   ``"net_g"``;
3. a bare state dict (every value a tensor).

Key prefixes ``module.`` (DataParallel / DDP) and ``_orig_mod.`` (``torch.compile``) are
stripped, in any order and nesting (``_orig_mod.module.``). Without a ``factory`` the NAFNet
configuration is inferred from the tensor shapes.

**Nothing is allocated for a checkpoint that does not fit.** A checkpoint of a few KB can hold
views of one number with enormous shapes, or a block numbered 199,999: the inferred
configuration is judged before any module is built (:func:`validate_nafnet_state`): block
indices must run 0..n-1, the parameter count (computed from the configuration,
:func:`colorfid.models.nafnet.nafnet_size`) must fit the budget :func:`max_params`
(``$COLORFID_MAX_PARAMS``, default :data:`DEFAULT_MAX_PARAMS` = 2e8) and the block count
:data:`MAX_BLOCKS` (1,000), and the key names and
shapes must be exactly the network's. Any miss is a :class:`~colorfid.errors.CheckpointError`.
"""

from __future__ import annotations

import importlib
import os
import pickle
import re
import zipfile
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable, Mapping, Union

import torch
from torch import Tensor, nn

from .._atomic import atomic_open
from .._files import env_count, sha256_file
from ..errors import CheckpointError, UnsafeCheckpointError, UsageError
from .nafnet import NAFNet, NAFNetLocal, nafnet_size, nafnet_state_shapes

__all__ = [
    "EVAL_PARAM_KEY",
    "WEIGHTS",
    "load_model",
    "checkpoint_weights",
    "save_model",
    "read_state_dict",
    "file_sha256",
    "infer_nafnet_config",
    "build_nafnet",
    "check_state_dict",
    "resolve_factory",
    "validate_nafnet_state",
    "check_nafnet_budget",
    "MAX_BLOCKS",
    "max_params",
    "DEFAULT_MAX_PARAMS",
    "MAX_PARAMS_ENV",
]

#: Parameters a checkpoint may imply before colorfid refuses to build it (200 M: the largest
#: published NAFNet, GoPro width 64, has 68 M; 2e8 float32 parameters are 0.8 GB).
DEFAULT_MAX_PARAMS = 200_000_000
#: The environment variable that sets the budget (a positive integer; ``1e9`` style accepted).
MAX_PARAMS_ENV = "COLORFID_MAX_PARAMS"
#: NAFBlocks a configuration may have (the published NAFNets have at most 36; building one takes
#: milliseconds of Python, so this bounds the time to build any accepted network).
MAX_BLOCKS = 1000


def max_params() -> int:
    """The parameter budget: ``$COLORFID_MAX_PARAMS`` if set, else :data:`DEFAULT_MAX_PARAMS`.

    Raises:
        UsageError: the variable is not a positive whole number (the message names it).
    """
    return env_count(MAX_PARAMS_ENV, DEFAULT_MAX_PARAMS, "parameters", "5e8")

Factory = Union[str, Callable[[], nn.Module]]

#: The entry evaluation reads by default: the EMA weights when the file has them (what a training
#: with EMA validated: BasicSR's and colorfid's trainers), else ``params`` (the fallback below).
EVAL_PARAM_KEY = "params_ema"
#: The BasicSR entries a user picks between (``--weights``): EMA or raw weights.
WEIGHTS = ("params_ema", "params")
#: Keys tried, in order, after the ``param_key`` asked for.
FALLBACK_KEYS: tuple[str, ...] = ("params", "params_ema", "state_dict", "model", "net_g")
_PREFIXES: tuple[str, ...] = ("module.", "_orig_mod.")
_MAX_LISTED = 12


def file_sha256(path: str | os.PathLike[str], *, chunk_size: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes (read in chunks; fits any file size)."""
    p = Path(path)
    try:
        return sha256_file(p, chunk_size=chunk_size)
    except OSError as exc:
        raise CheckpointError(f"cannot read {p}: {exc}") from exc


def _listing(names: list[str]) -> str:
    shown = ", ".join(names[:_MAX_LISTED])
    more = len(names) - _MAX_LISTED
    return shown + (f", ... ({more} more)" if more > 0 else "")


def _pickle_globals(path: Path) -> list[str]:
    """Names of the non-torch globals a pickle references, read statically (nothing runs). The
    zip format has one pickle (``data.pkl``); the legacy format a few in a row (magic number,
    protocol, system info, then the object): each is read."""
    import io
    import pickletools

    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as zf:
                data = next((zf.read(n) for n in zf.namelist() if n.endswith("data.pkl")), b"")
            count = 1
        else:
            data = path.read_bytes()
            count = 4
        stream = io.BytesIO(data)
        names: list[str] = []
        for _ in range(count):
            strings: list[str] = []
            try:
                for op, arg, _pos in pickletools.genops(stream):
                    if op.name == "GLOBAL" and isinstance(arg, str):
                        names.append(arg.replace(" ", "."))
                    elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
                        names.append(f"{strings[-2]}.{strings[-1]}")
                    elif isinstance(arg, str):
                        strings.append(arg)
            except Exception:  # the tensor bytes after the last pickle  # noqa: BLE001
                break
        return sorted({n for n in names if not n.startswith(("torch.", "collections."))})
    except Exception:  # best effort, for the message only
        return []


def _first_sentence(text: str, limit: int = 400) -> str:
    """The first sentence of a message, whole (never cut in the middle of one)."""
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    m = re.match(r"(.+?[.!?])(\s|$)", line)
    sentence = m.group(1) if m else line
    return sentence if len(sentence) <= limit else sentence[: limit].rsplit(" ", 1)[0] + " [...]"


def _load_raw(path: Path) -> Any:
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    if path.suffix.lower() == ".safetensors":
        try:
            from safetensors.torch import load_file
        except ImportError as exc:  # pragma: no cover - safetensors is a dependency
            raise CheckpointError(f"{path}: reading .safetensors needs the 'safetensors' package") from exc
        try:
            return load_file(str(path), device="cpu")
        except Exception as exc:
            raise CheckpointError(f"{path}: not a readable .safetensors file ({exc})") from exc
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        msg = str(exc)
        # torch words it "Unsupported global: GLOBAL os.system" (zip) or "unsupported GLOBAL
        # posix.system whose module posix is blocked" (legacy format)
        found = re.search(r"unsupported global[^\n]*", msg, flags=re.IGNORECASE)
        names = _pickle_globals(path)
        if found or names:
            detail = f"references {', '.join(names)}" if names else found.group(0).split(" was not an allowed")[0]
            raise UnsafeCheckpointError(
                f"{path}: refused to load: its pickle references objects beyond tensors and plain "
                f"containers ({detail}). colorfid always loads with torch.load(weights_only=True) "
                "and ran none of it. If you trust the file, re-save only its state dict "
                "(torch.save({'params': model.state_dict()}, path)) or convert it to .safetensors."
            ) from exc
        short = re.search(r"Unsupported operand[^\n]*", msg)
        detail = short.group(0) if short else _first_sentence(msg)
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({detail})") from exc
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile, KeyError, AttributeError) as exc:
        first = _first_sentence(str(exc)) or type(exc).__name__
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint (corrupt or truncated: {first})") from exc


def _is_state_dict(obj: Any) -> bool:
    return isinstance(obj, Mapping) and len(obj) > 0 and all(
        isinstance(k, str) and isinstance(v, Tensor) for k, v in obj.items()
    )


def _strip_prefixes(sd: Mapping[str, Tensor]) -> "OrderedDict[str, Tensor]":
    """Drop wrapper prefixes every key shares (``module.``, ``_orig_mod.``), as many and in
    whatever order they were stacked (``torch.compile`` of a DDP model: ``_orig_mod.module.``)."""
    out: OrderedDict[str, Tensor] = OrderedDict(sd)
    stripped = True
    while stripped and out:
        stripped = False
        for prefix in _PREFIXES:
            if all(k.startswith(prefix) for k in out):
                out = OrderedDict((k[len(prefix):], v) for k, v in out.items())
                stripped = True
    return out


def read_state_dict(
    path: str | os.PathLike[str], *, param_key: str | None = "params", return_key: bool = False
) -> Any:
    """Read a checkpoint's state dict (CPU tensors), safely; see the module docstring.

    Args:
        path: ``.pth``/``.pt`` (any ``torch.save`` file) or ``.safetensors``.
        param_key: the entry to use in a BasicSR-style dict; ``None`` means the file itself
            must be the state dict.
        return_key: also return the entry actually used (``None`` for a bare state dict).

    Returns:
        ``OrderedDict[str, Tensor]`` (or ``(state_dict, key_used)``).

    Raises:
        UnsafeCheckpointError: the pickle would run code (nothing ran).
        CheckpointError: missing, corrupt, or no state dict found (the message lists the
            top-level keys that were there).
    """
    p = Path(path)
    sd, used = _select(_load_raw(p), param_key, p)
    sd = _strip_prefixes(sd)
    return (sd, used) if return_key else sd


def _select(raw: Any, param_key: str | None, p: Path) -> tuple[Mapping[str, Tensor], str | None]:
    """The state dict of a loaded checkpoint and the entry it came from (None: bare)."""
    if _is_state_dict(raw) and (param_key is None or param_key not in raw):
        return raw, None
    if isinstance(raw, Mapping):
        candidates = [param_key] if param_key is not None else []
        candidates += [k for k in FALLBACK_KEYS if k not in candidates]
        for key in candidates:
            if key in raw and _is_state_dict(raw[key]):
                return raw[key], key
        keys = [str(k) for k in raw.keys()]
        raise CheckpointError(
            f"{p}: no state dict found under {candidates} and the file is not a bare state "
            f"dict; its top-level keys are: {_listing(keys) or '(none)'}"
        )
    raise CheckpointError(f"{p}: expected a dict of tensors, found a {type(raw).__name__}")


def infer_nafnet_config(state_dict: Mapping[str, Tensor]) -> dict[str, Any]:
    """NAFNet's constructor arguments read off a state dict's keys and shapes.

    ``img_channel`` and ``width`` come from ``intro.weight`` (width, img_channel, 3, 3); the
    number of stages from ``downs.i`` / ``ups.i``; the blocks per stage from the block indices
    under ``encoders.i.``, ``decoders.i.`` and ``middle_blks.``, which must run 0..n-1 (a gap
    means blocks without weights: refused, naming them).

    Raises:
        CheckpointError: the state dict is not a NAFNet's (names what is missing).
    """
    if "intro.weight" not in state_dict or "ending.weight" not in state_dict:
        keys = sorted(state_dict)
        raise CheckpointError(
            "not a NAFNet state dict (no 'intro.weight'/'ending.weight'); pass factory="
            f"'package.module:function' for another architecture. Keys found: {_listing(keys)}"
        )
    intro = state_dict["intro.weight"]
    if intro.dim() != 4:
        raise CheckpointError(f"'intro.weight' has shape {tuple(intro.shape)}, expected (width, C, 3, 3)")
    width, img_channel = int(intro.shape[0]), int(intro.shape[1])
    # index sets: prefix -> the numbers used under it ("encoders.0" -> blocks, "downs" -> stages)
    used: dict[str, set[int]] = {}
    for key in state_dict:
        parts = key.split(".")
        if parts[0] in ("encoders", "decoders") and len(parts) > 2 and parts[1].isdigit() and parts[2].isdigit():
            used.setdefault(parts[0], set()).add(int(parts[1]))
            used.setdefault(f"{parts[0]}.{int(parts[1])}", set()).add(int(parts[2]))
        elif parts[0] in ("middle_blks", "downs", "ups") and len(parts) > 1 and parts[1].isdigit():
            used.setdefault(parts[0], set()).add(int(parts[1]))
    gaps = []
    for prefix, idx in sorted(used.items()):
        if prefix in ("encoders", "decoders"):  # a stage may have no blocks; its downs/ups must exist
            continue
        top = max(idx)
        if top + 1 != len(idx):
            first: list[int] = []
            expect = 0
            for i in sorted(idx):
                while expect < i and len(first) < 4:
                    first.append(expect)
                    expect += 1
                if len(first) >= 4:
                    break
                expect = i + 1
            shown = ", ".join(f"{prefix}.{m}" for m in first) + (", ..." if top + 1 - len(idx) > len(first) else "")
            gaps.append(f"{top + 1 - len(idx):,} of the {top + 1:,} blocks numbered up to {prefix}.{top} are "
                        f"missing ({shown})")
    n_enc, n_dec = len(used.get("downs", ())), len(used.get("ups", ()))
    for side, n, link in (("encoders", n_enc, "downs"), ("decoders", n_dec, "ups")):
        extra = sorted(i for i in used.get(side, ()) if i >= n)
        if extra:
            gaps.append(f"{side}.{extra[0]} has no {link}.{extra[0]} (the stages are numbered up to {link}.{n - 1})")
    if gaps:
        raise CheckpointError(
            "not a consistent NAFNet state dict: its numbering implies blocks or stages that have no weights: "
            f"{'; '.join(gaps)}. Nothing was built."
        )
    return {
        "img_channel": img_channel,
        "width": width,
        "middle_blk_num": len(used.get("middle_blks", ())),
        "enc_blk_nums": [len(used.get(f"encoders.{i}", ())) for i in range(n_enc)],
        "dec_blk_nums": [len(used.get(f"decoders.{i}", ())) for i in range(n_dec)],
    }


def _state_params(state_dict: Mapping[str, Tensor]) -> int:
    return sum(int(v.numel()) for v in state_dict.values())


def _config_text(config: Mapping[str, Any]) -> str:
    return (f"width {config['width']}, middle {config['middle_blk_num']}, enc {list(config['enc_blk_nums'])}, "
            f"dec {list(config['dec_blk_nums'])}")


def _check_budget(n_params: int, what: str, source: str, error: type[Exception] = CheckpointError) -> None:
    budget = max_params()
    if n_params > budget:
        raise error(
            f"{source}: {what} has {n_params:,} parameters, over colorfid's budget of {budget:,} "
            f"({MAX_PARAMS_ENV}={budget}); refused before allocating anything. If it is meant, "
            f"raise {MAX_PARAMS_ENV}"
        )


def check_nafnet_budget(config: Mapping[str, Any], *, source: str = "checkpoint", what: str = "the NAFNet",
                        error: type[Exception] = CheckpointError) -> int:
    """The parameter count of ``NAFNet(**config)``, or ``error`` before anything is built when the
    configuration has more than :data:`MAX_BLOCKS` blocks (each is built in Python, milliseconds
    apiece: 200,000 blocks would take minutes) or more parameters than :func:`max_params`.
    Computed from the configuration alone (:func:`colorfid.models.nafnet.nafnet_size`)."""
    blocks = sum(int(n) for n in config["enc_blk_nums"]) + int(config["middle_blk_num"]) \
        + sum(int(n) for n in config["dec_blk_nums"])
    if blocks > MAX_BLOCKS:
        raise error(
            f"{source}: {what} ({_config_text(config)}) has {blocks:,} blocks, over colorfid's limit of "
            f"{MAX_BLOCKS:,} (published NAFNets have at most 36); refused before building anything"
        )
    _keys, n_params = nafnet_size(dict(config))
    _check_budget(n_params, f"{what} ({_config_text(config)})", source, error)
    return n_params


def validate_nafnet_state(state_dict: Mapping[str, Tensor], config: Mapping[str, Any], *, source: str = "checkpoint") -> None:
    """Judge a state dict against the NAFNet configuration inferred from it, before any module is
    built: the parameter count (from the configuration, in O(stages)) within :func:`max_params`,
    as many tensors as that network has, then exactly its key names and shapes.

    Raises:
        CheckpointError: over the budget (naming ``$COLORFID_MAX_PARAMS``), or keys / shapes that
            do not fit (missing, unexpected, conflicting; listed).
    """
    check_nafnet_budget(config, source=source, what="the NAFNet its shapes imply")
    n_keys, _n_params = nafnet_size(dict(config))
    if n_keys != len(state_dict):
        # a network with far more tensors than the file holds: list what is there vs expected
        # without enumerating a possibly huge expected key list
        raise CheckpointError(
            f"{source} does not fit the NAFNet its shapes imply ({_config_text(config)}): that network has "
            f"{n_keys:,} tensors, the checkpoint {len(state_dict):,}. Nothing was built."
        )
    expected = nafnet_state_shapes(config)
    _refuse_misfit(expected, state_dict, f"{source} does not fit NAFNet ({_config_text(config)}):")


def build_nafnet(config: Mapping[str, Any], *, tlc: bool | Mapping[str, Any] = False) -> NAFNet:
    """A NAFNet (or, with ``tlc``, a :class:`NAFNetLocal`; a mapping gives its options)."""
    try:
        if tlc:
            opts = dict(tlc) if isinstance(tlc, Mapping) else {}
            return NAFNetLocal(**config, **opts)
        return NAFNet(**config)
    except (UsageError, TypeError) as exc:
        raise CheckpointError(f"cannot build NAFNet from inferred configuration {dict(config)}: {exc}") from exc


def check_state_dict(model: nn.Module, state_dict: Mapping[str, Tensor], *, source: str = "checkpoint") -> None:
    """Raise CheckpointError listing missing keys, unexpected keys and shape conflicts.

    Compares against ``model.state_dict()`` (parameters and persistent buffers), i.e. the
    ``strict=True`` contract, before anything is copied.
    """
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    _refuse_misfit(expected, state_dict, f"{source} does not fit {type(model).__name__}:")


def _refuse_misfit(expected: Mapping[str, tuple[int, ...]], state_dict: Mapping[str, Tensor], title: str) -> None:
    """CheckpointError headed ``title`` listing missing keys, unexpected keys and shape conflicts of
    ``state_dict`` against the ``expected`` key -> shape map (the ``strict=True`` contract)."""
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    conflicts = [f"{k}: checkpoint {tuple(state_dict[k].shape)} vs model {s}" for k, s in expected.items()
                 if k in state_dict and tuple(state_dict[k].shape) != tuple(s)]
    if missing or unexpected or conflicts:
        lines = [title]
        if missing:
            lines.append(f"  missing keys ({len(missing)}): {_listing(missing)}")
        if unexpected:
            lines.append(f"  unexpected keys ({len(unexpected)}): {_listing(unexpected)}")
        if conflicts:
            lines.append(f"  shape conflicts ({len(conflicts)}): {_listing(conflicts)}")
        raise CheckpointError("\n".join(lines))


def resolve_factory(factory: Factory) -> Callable[[], nn.Module]:
    """Turn ``"package.module:function"`` (or a callable) into a callable building the model."""
    if callable(factory):
        return factory
    if not isinstance(factory, str) or factory.count(":") != 1:
        raise UsageError(f"factory must be 'package.module:function' or a callable, got {factory!r}")
    mod_name, _, attr = factory.partition(":")
    try:
        module = importlib.import_module(mod_name)
    except ImportError as exc:
        raise UsageError(f"factory {factory!r}: cannot import module {mod_name!r} ({exc})") from exc
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            known = sorted(n for n in dir(module) if not n.startswith("_"))
            raise UsageError(f"factory {factory!r}: {mod_name} has no {attr!r}; it defines: {_listing(known)}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise UsageError(f"factory {factory!r} is not callable")
    return obj


def load_model(
    path: str | os.PathLike[str],
    *,
    param_key: str | None = EVAL_PARAM_KEY,
    device: str | torch.device | None = None,
    factory: Factory | None = None,
    tlc: bool | Mapping[str, Any] = False,
) -> nn.Module:
    """Build a model and load a checkpoint into it (strict), ready for inference (eval mode).

    Args:
        path: checkpoint file (see :func:`read_state_dict` for the layouts and the safety rule).
        param_key: BasicSR entry to read: ``"params_ema"`` (default, :data:`EVAL_PARAM_KEY`: the
            EMA weights a training validated; ``"params"`` when the file has none) or
            ``"params"`` (the raw weights; ``"params_ema"`` when the file has only those).
        device: where the model goes; default CPU (checkpoints are always mapped to CPU first,
            so a CUDA-saved checkpoint loads on a machine without CUDA).
        factory: for architectures other than NAFNet, ``"package.module:function"`` or a
            callable returning the ``nn.Module``; the loader then only loads the weights.
        tlc: NAFNet only: build :class:`NAFNetLocal` (TLC pooling; same keys). A mapping
            passes its options (``train_size``, ``base_size``).

    Raises:
        UnsafeCheckpointError, CheckpointError: see :func:`read_state_dict`; also when keys or
            shapes do not fit the model (all missing / unexpected keys and shape conflicts are
            listed).
    """
    p = Path(path)
    sd = read_state_dict(p, param_key=param_key)
    _check_budget(_state_params(sd), "its state dict", str(p))  # views of one number can claim any size
    if factory is not None:
        if tlc:
            raise UsageError("tlc applies to the built-in NAFNet only, not to a factory's model")
        model = resolve_factory(factory)()
        if not isinstance(model, nn.Module):
            raise UsageError(f"factory {factory!r} returned {type(model).__name__}, not an nn.Module")
    else:
        try:
            config = infer_nafnet_config(sd)
        except CheckpointError as exc:
            raise CheckpointError(f"{p}: {exc}") from None
        validate_nafnet_state(sd, config, source=str(p))  # before a single module is built
        model = build_nafnet(config, tlc=tlc)
    check_state_dict(model, sd, source=str(p))
    try:
        model.load_state_dict(sd, strict=True)
    except RuntimeError as exc:  # pragma: no cover - check_state_dict catches the usual causes
        raise CheckpointError(f"{p}: {exc}") from exc
    if device is not None:
        model = model.to(torch.device(device))
    return model.eval()


def save_model(model: nn.Module | Mapping[str, Tensor], path: str | os.PathLike[str], *, param_key: str = "params") -> Path:
    """Write a model's weights atomically in BasicSR's layout ``{param_key: state_dict}``.

    ``.safetensors`` paths get a flat safetensors file instead. Tensors are detached and moved
    to CPU; a ``DataParallel``/DDP wrapper's ``module.`` prefix is not written. The bytes go to
    a temporary file in the target's folder, are fsynced, then renamed over ``path``
    (``os.replace``), so a crash never leaves a half-written checkpoint.

    Returns:
        The path written.
    """
    p = Path(path)
    if isinstance(model, nn.Module):
        inner = getattr(model, "module", model) if isinstance(
            model, (nn.DataParallel, nn.parallel.DistributedDataParallel)
        ) else model
        sd_in: Mapping[str, Tensor] = inner.state_dict()
    else:
        sd_in = model
    sd = _strip_prefixes(OrderedDict((k, v.detach().cpu().contiguous()) for k, v in sd_in.items()))
    if not p.parent.is_dir():
        raise CheckpointError(f"cannot save {p}: folder {p.parent} does not exist")
    try:
        with atomic_open(p, "wb") as fh:
            if p.suffix.lower() == ".safetensors":
                from safetensors.torch import save as st_save

                # safetensors refuses tensors sharing memory; the clones are independent.
                fh.write(st_save({k: v.clone() for k, v in sd.items()}))
            else:
                torch.save({param_key: sd}, fh)
    except (OSError, RuntimeError) as exc:
        raise CheckpointError(f"cannot save {p}: {exc}") from exc
    return p


def checkpoint_weights(path: str | os.PathLike[str], param_key: str | None = EVAL_PARAM_KEY) -> dict[str, Any]:
    """Which weights :func:`load_model` would read from ``path`` without building the model
    (the file is memory-mapped where possible): ``{"weights": the entry ("params_ema",
    "params", ...; None for a bare state dict or .safetensors), "train": the ``train`` record
    colorfid's trainer stores ({"iter", "ema_decay"}) or None}``."""
    p = Path(path)
    if p.suffix.lower() == ".safetensors":
        return {"weights": None, "train": None}
    raw: Any = None
    try:
        raw = torch.load(p, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # noqa: BLE001 - legacy (non-zip) files cannot be mapped: read them whole
        raw = _load_raw(p)
    _, used = _select(raw, param_key, p)
    train = raw.get("train") if isinstance(raw, Mapping) else None
    return {"weights": used, "train": dict(train) if isinstance(train, Mapping) else None}
