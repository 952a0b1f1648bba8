"""Stress-set folders: what a set is (:func:`set_folders`, :func:`load_stress_set`), pairing by
file stem, ``set.toml``, validation (every offender listed in one
:class:`~colorfid.errors.StressSetError`), and predictions attached to a set.

The one rule of what a set is: a folder with ``gt/`` and ``lq/`` and/or ``pred/`` (lower case).
In a folder of sets every visible sub-folder must be one; in ``gt/``, ``lq/`` and ``pred/``
every visible entry must be an image colorfid reads. What is not is refused, never skipped: a
folder in a folder of sets that is no set (``photoss/``, a set with ``GT/``), a side folder or a
``set.toml`` in another case, a dangling link or a folder where an image should be, an image in
a format colorfid does not read. Hidden entries (``.*``) and files that are not images (``.xmp``
sidecars, notes) are left alone and listed in :attr:`StressSet.ignored`."""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Literal, Mapping, Sequence

from ..errors import ImageTooLargeError, StressSetError, UnknownNameError

try:  # Python >= 3.11
    import tomllib as _toml
except ModuleNotFoundError:  # pragma: no cover - Python 3.10
    import tomli as _toml  # type: ignore[no-redef]

__all__ = ["IMAGE_SUFFIXES", "SET_TOML_KEYS", "Kind", "CheckMode", "Pair", "StressSet", "load_stress_set",
           "attach_predictions", "is_set_folder", "set_folders", "not_a_set"]

#: File suffixes (lower-case) that count as images in ``gt/``, ``lq/`` and ``pred/``.
IMAGE_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp")

#: Image formats colorfid does not read: such a file where images belong is an error, not a skip
#: (with every other suffix Pillow knows as an image format).
OTHER_IMAGE_SUFFIXES: tuple[str, ...] = (
    ".gif", ".heic", ".heif", ".avif", ".jxl", ".jp2", ".j2k", ".exr", ".hdr", ".dng", ".cr2", ".cr3", ".nef", ".arw",
    ".raf", ".orf", ".rw2", ".psd", ".tga", ".ppm", ".pgm", ".pbm", ".pnm", ".ico", ".svg",
)

#: Top-level keys ``set.toml`` may hold. ``description`` is a string; ``protocol`` overrides
#: :class:`colorfid.metrics.MetricProtocol` fields for this set; ``degradation`` and
#: ``provenance`` are free-form tables (how the LQ was made, where the images come from),
#: carried in :attr:`StressSet.degradation` / :attr:`StressSet.provenance`.
SET_TOML_KEYS: tuple[str, ...] = ("description", "protocol", "degradation", "provenance")

_SIDES = ("gt", "lq", "pred")

Kind = Literal["lq", "pred"]


@dataclass(frozen=True)
class Pair:
    """One image of a stress set.

    Attributes:
        name: the shared file stem.
        gt: the target image.
        lq: the model input (``lq/``), or None when the set has no ``lq/``.
        pred: a saved prediction (``pred/``), or None when the set has no ``pred/``.
        size: (height, width) of the GT in pixels after EXIF orientation, read from the file
            header; None when the set was loaded with ``check="none"``.
    """

    name: str
    gt: Path
    lq: Path | None = None
    pred: Path | None = None
    size: tuple[int, int] | None = None

    def input(self, kind: Kind) -> Path | None:
        """The ``lq`` or ``pred`` path, by ``kind``."""
        return self.lq if kind == "lq" else self.pred

    def to_dict(self) -> dict[str, Any]:
        """Plain types only (str / int / None), for JSON and pytest-xdist."""
        return {
            "name": self.name,
            "gt": str(self.gt),
            "lq": None if self.lq is None else str(self.lq),
            "pred": None if self.pred is None else str(self.pred),
            "size": None if self.size is None else [int(self.size[0]), int(self.size[1])],
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Pair:
        size = d.get("size")
        return cls(
            name=str(d["name"]),
            gt=Path(d["gt"]),
            lq=None if d.get("lq") is None else Path(d["lq"]),
            pred=None if d.get("pred") is None else Path(d["pred"]),
            size=None if size is None else (int(size[0]), int(size[1])),
        )


@dataclass(frozen=True)
class StressSet:
    """A validated stress set.

    Attributes:
        name: the set's name (its folder name unless given).
        root: the set folder.
        kind: ``"pred"`` when the set is gated from saved predictions (it has ``pred/``),
            else ``"lq"`` (a model runs on ``lq/``). Pairs carry every path that exists, so a
            set with both ``lq/`` and ``pred/`` serves both uses.
        pairs: the images, sorted by name.
        description: from ``set.toml`` (empty when absent).
        protocol_overrides: ``[protocol]`` of ``set.toml``: MetricProtocol fields for this set.
        degradation: ``[degradation]`` of ``set.toml`` (documentation of how LQ was made).
        provenance: ``[provenance]`` of ``set.toml``.
        ignored: files in ``gt/``, ``lq/``, ``pred/`` that are not images (or are hidden).
    """

    name: str
    root: Path
    kind: Kind
    pairs: list[Pair]
    description: str = ""
    protocol_overrides: dict[str, Any] = field(default_factory=dict)
    degradation: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)
    ignored: list[Path] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.pairs)

    def __iter__(self) -> Iterator[Pair]:
        return iter(self.pairs)

    @property
    def names(self) -> list[str]:
        """The image names (file stems), in order."""
        return [p.name for p in self.pairs]

    def get(self, name: str) -> Pair:
        """The pair called ``name``; UnknownNameError listing the known names otherwise."""
        for p in self.pairs:
            if p.name == name:
                return p
        raise UnknownNameError(f"stress set {self.name!r} ({self.root}) has no image {name!r}; known: {self.names}")

    def metric_protocol(self, base: Any = None) -> Any:
        """``colorfid.metrics.MetricProtocol``: ``base`` (or the defaults) with this set's
        ``[protocol]`` overrides on top."""
        from ..metrics import MetricProtocol

        if base is None:
            base = MetricProtocol()
        if not self.protocol_overrides:
            return base
        return MetricProtocol.from_dict({**base.as_dict(), **self.protocol_overrides})

    def to_dict(self) -> dict[str, Any]:
        """Plain types only, for JSON and for crossing pytest-xdist's wire."""
        return {
            "name": self.name,
            "root": str(self.root),
            "kind": self.kind,
            "pairs": [p.to_dict() for p in self.pairs],
            "description": self.description,
            "protocol_overrides": dict(self.protocol_overrides),
            "degradation": dict(self.degradation),
            "provenance": dict(self.provenance),
            "ignored": [str(p) for p in self.ignored],
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> StressSet:
        """Inverse of :meth:`to_dict` (no file-system checks)."""
        return cls(
            name=str(d["name"]),
            root=Path(d["root"]),
            kind=d["kind"],
            pairs=[Pair.from_dict(p) for p in d["pairs"]],
            description=str(d.get("description", "")),
            protocol_overrides=dict(d.get("protocol_overrides", {})),
            degradation=dict(d.get("degradation", {})),
            provenance=dict(d.get("provenance", {})),
            ignored=[Path(p) for p in d.get("ignored", [])],
        )


# --------------------------------------------------------------------------- set.toml


def _protocol_fields() -> dict[str, type]:
    """MetricProtocol's field names -> int or float."""
    from ..metrics import MetricProtocol

    out: dict[str, type] = {}
    for f in dataclasses.fields(MetricProtocol):
        out[f.name] = int if f.type in (int, "int") else float
    return out


def _read_set_toml(path: Path, problems: list[str]) -> dict[str, Any]:
    """Parse and check ``set.toml``; problems are appended (all of them), not raised."""
    try:
        with open(path, "rb") as fh:
            data = _toml.load(fh)
    except _toml.TOMLDecodeError as exc:
        problems.append(f"{path}: not valid TOML: {exc}")
        return {}
    except OSError as exc:
        problems.append(f"{path}: cannot be read: {exc}")
        return {}
    unknown = sorted(k for k in data if k not in SET_TOML_KEYS)
    if unknown:
        problems.append(f"{path}: unknown key(s) {unknown}; known keys: {list(SET_TOML_KEYS)}")
    desc = data.get("description", "")
    if not isinstance(desc, str):
        problems.append(f"{path}: 'description' must be a string, got {type(desc).__name__}")
    for table in ("protocol", "degradation", "provenance"):
        if table in data and not isinstance(data[table], dict):
            problems.append(f"{path}: '{table}' must be a table ([{table}]), got {type(data[table]).__name__}")
    proto = data.get("protocol", {})
    if isinstance(proto, dict) and proto:
        known = _protocol_fields()
        bad = sorted(k for k in proto if k not in known)
        if bad:
            problems.append(f"{path}: unknown [protocol] field(s) {bad}; known fields: {sorted(known)}")
        for k, v in proto.items():
            if k not in known:
                continue
            want = known[k]
            try:
                ok = not isinstance(v, bool) and isinstance(v, (int, float)) and math.isfinite(v)
            except OverflowError:  # an integer beyond float range
                ok = False
                v = f"an integer of {len(str(abs(v)))} digits"
            if want is int:
                ok = ok and isinstance(v, int)
            if not ok:
                what = "an integer" if want is int else "a finite number"
                problems.append(f"{path}: [protocol] {k} must be {what}, got {v if isinstance(v, str) and 'digits' in v else repr(v)}")
    return data


# --------------------------------------------------------------------------- images


def _image_size(path: Path) -> tuple[int, int]:
    """(height, width) from the header after orientation, as :func:`colorfid.io.read_image` will
    return the pixels; the pixel limit and the file's structure (PNG chunk CRCs, truncation) are
    checked without decoding pixels. Raises on anything unreadable or too large."""
    from ..io import read_header

    head = read_header(path)
    return head.height, head.width


def _decode_size(path: Path) -> tuple[int, int]:
    """(height, width) by decoding the whole file with colorfid.io (the gate's own reader)."""
    from ..io import read_image

    t = read_image(path)
    return int(t.shape[-2]), int(t.shape[-1])


def _image_suffixes_elsewhere() -> set[str]:
    try:
        from PIL import Image

        known = {k.lower() for k in Image.registered_extensions()}
    except Exception:  # noqa: BLE001 - Pillow's registry is a hint only
        known = set()
    return (known | set(OTHER_IMAGE_SUFFIXES)) - set(IMAGE_SUFFIXES)


def _list_images(folder: Path, side: str, problems: list[str], ignored: list[Path]) -> dict[str, Path]:
    """stem -> file in ``folder``. Refused (recorded as problems, never skipped): a dangling
    link, a folder where an image belongs, an image format colorfid does not read, two files
    with one stem, an empty folder. Hidden entries and files that are no images are ignored."""
    by_stem: dict[str, list[Path]] = {}
    try:
        entries = sorted(folder.iterdir())
    except OSError as exc:
        problems.append(f"{side}/ cannot be listed: {exc}")
        return {}
    foreign = _image_suffixes_elsewhere()
    for p in entries:
        if p.name.startswith("."):
            ignored.append(p)
            continue
        suffix = p.suffix.lower()
        if p.is_symlink() and not p.exists():
            problems.append(f"{side}/{p.name} is a dangling link (to {os.readlink(p)!r}): the image it named is gone")
            continue
        if p.is_dir():
            if suffix in IMAGE_SUFFIXES or suffix in foreign:
                problems.append(f"{side}/{p.name} is a folder, not an image")
            else:
                problems.append(f"{side}/{p.name}/ is a folder inside {side}/: images belong directly in {side}/")
            continue
        if not p.is_file():
            problems.append(f"{side}/{p.name} is not a regular file")
            continue
        if suffix not in IMAGE_SUFFIXES:
            if suffix in foreign:
                problems.append(f"{side}/{p.name}: colorfid does not read {suffix} images (it reads "
                                f"{', '.join(IMAGE_SUFFIXES)}); convert it or move it out of the set")
            else:
                ignored.append(p)
            continue
        by_stem.setdefault(p.stem, []).append(p)
    dups = {s: ps for s, ps in by_stem.items() if len(ps) > 1}
    for s, ps in sorted(dups.items()):
        problems.append(f"{side}/ has several files with the stem {s!r}: {[p.name for p in ps]}")
    if not by_stem:
        problems.append(
            f"{side}/ holds no images (supported suffixes: {', '.join(IMAGE_SUFFIXES)})"
            + (f"; found {[p.name for p in ignored if p.parent == folder][:5]}" if ignored else "")
        )
    return {s: ps[0] for s, ps in by_stem.items() if len(ps) == 1}


def _case_variants(root: Path, problems: list[str]) -> None:
    """Side folders and ``set.toml`` written in another case (``GT/``, ``Set.toml``): on a
    case-sensitive file system colorfid would not see them."""
    try:
        names = [p.name for p in root.iterdir()]
    except OSError:
        return
    for n in sorted(names):
        low = n.lower()
        if low in _SIDES and n != low and (root / n).is_dir():
            problems.append(f"found {n}/: colorfid reads the lower-case {low}/ (side folders are gt/, lq/, pred/)")
        elif low == "set.toml" and n != "set.toml":
            problems.append(f"found {n}: colorfid reads set.toml (lower case); rename it")


def is_set_folder(path: Path) -> bool:
    """Does ``path`` look like a stress set: ``gt/``, ``lq/`` or ``pred/`` in any case? (Whether
    it is a valid one is :func:`load_stress_set`'s to say, naming what is wrong.)"""
    try:
        return any(p.is_dir() and p.name.lower() in _SIDES for p in Path(path).iterdir())
    except OSError:
        return False


def not_a_set(path: Path) -> str:
    """Why the folder ``path`` is not a stress set, for messages."""
    try:
        content = sorted(p.name + ("/" if p.is_dir() else "") for p in path.iterdir() if not p.name.startswith("."))
    except OSError as exc:
        return f"{path} cannot be listed: {exc}"
    shown = ", ".join(content[:6]) + (" ..." if len(content) > 6 else "")
    return f"{path} is not a stress set: no gt/ with lq/ or pred/ (it holds {shown or 'nothing'})"


def set_folders(parent: Path, *, accept: Any = None) -> list[Path]:
    """The stress sets in a folder of sets: every visible sub-folder, sorted; each must be a set
    (:func:`is_set_folder`) or pass ``accept(folder)``. Anything else is refused, listing every
    offender (StressSetError): a typo'd or half-made set must not make the gate pass on fewer
    sets. Hidden folders (``.git``) and files are left alone."""
    subs = sorted(p for p in Path(parent).iterdir() if p.is_dir() and not p.name.startswith("."))
    bad = [p for p in subs if not is_set_folder(p) and not (accept is not None and accept(p))]
    if bad:
        lines = "\n".join(f"  - {not_a_set(p)}" for p in bad)
        raise StressSetError(
            f"{parent} is a folder of stress sets, but {len(bad)} of its sub-folders are not sets; colorfid runs "
            f"every set of the folder or none (move them out, fix them, or name the sets one by one):\n{lines}"
        )
    return subs


def _fmt_names(names: Sequence[str], limit: int = 20) -> str:
    names = sorted(names)
    shown = ", ".join(repr(n) for n in names[:limit])
    return shown + (f" ... ({len(names)} in all)" if len(names) > limit else "")


def _raise(name: str, root: Path, problems: list[str]) -> None:
    lines = "\n".join(f"  - {p}" for p in problems)
    raise StressSetError(f"stress set {name!r} at {root} is malformed ({len(problems)} problem(s)):\n{lines}")


CheckMode = Literal["header", "decode", "none"]


def load_stress_set(
    path: str | os.PathLike[str],
    *,
    kind: Kind | None = None,
    name: str | None = None,
    check: CheckMode = "header",
) -> StressSet:
    """Load and validate one stress-set folder.

    Args:
        path: the set folder (holding ``gt/`` and ``lq/`` and/or ``pred/``).
        kind: ``"lq"`` requires ``lq/``, ``"pred"`` requires ``pred/``; None (default) takes
            ``"pred"`` when ``pred/`` exists, else ``"lq"``. Every side that exists is paired
            with ``gt/`` and validated.
        name: the set's name; default the folder name.
        check: ``"header"`` (default) reads each image's header for its size and checks the
            file's structure (PNG CRCs, truncation) without decoding pixels; ``"decode"``
            decodes every image with :func:`colorfid.io.read_image`; ``"none"`` only pairs
            file names (``Pair.size`` is then None).

    Returns:
        The :class:`StressSet`, pairs sorted by name.

    Raises:
        StressSetError: listing every problem at once: missing folder, missing ``gt/``, neither
            ``lq/`` nor ``pred/``, an empty side, two files with one stem, stems on one side
            only, unreadable images, lq/pred size different from gt, a malformed ``set.toml``
            (unknown keys, unknown or non-numeric ``[protocol]`` fields).
        UnknownNameError: ``kind`` or ``check`` is not one of the accepted values.
    """
    if kind not in (None, "lq", "pred"):
        raise UnknownNameError(f"stress set kind {kind!r} is not known; known: ['lq', 'pred'] (or None = auto)")
    if check not in ("header", "decode", "none"):
        raise UnknownNameError(f"check mode {check!r} is not known; known: ['header', 'decode', 'none']")
    root = Path(path).expanduser()
    set_name = name if name is not None else root.resolve().name if root.name in ("", ".", "..") else root.name
    if not root.exists():
        raise StressSetError(f"stress set {set_name!r}: folder {root} does not exist")
    if not root.is_dir():
        raise StressSetError(f"stress set {set_name!r}: {root} is not a folder")

    problems: list[str] = []
    meta: dict[str, Any] = {}
    toml_path = root / "set.toml"
    if toml_path.exists():
        meta = _read_set_toml(toml_path, problems)

    _case_variants(root, problems)
    present = {s: (root / s).is_dir() for s in _SIDES}
    if not present["gt"]:
        problems.append("missing gt/ folder (the target images)")
    if not present["lq"] and not present["pred"]:
        problems.append("neither lq/ (model inputs) nor pred/ (saved predictions) exists")
    if kind is not None and not present[kind] and (present["lq"] or present["pred"]):
        if kind == "lq":
            problems.append("no lq/ folder: a model runs on lq/ (its inputs), and this set holds saved predictions "
                            "(pred/) only; gate those with --predictions / --colorfid-predictions, or add lq/")
        else:
            problems.append("no pred/ folder: gating saved predictions needs pred/, and this set holds model inputs "
                            "(lq/) only; run a model on it (--checkpoint), or add pred/")
    if problems and (not present["gt"] or not (present["lq"] or present["pred"])):
        _raise(set_name, root, problems)
    chosen: Kind = kind if kind is not None else ("pred" if present["pred"] else "lq")
    sides = [s for s in ("lq", "pred") if present[s]]

    ignored: list[Path] = []
    files = {s: _list_images(root / s, s, problems, ignored) for s in ["gt", *sides]}
    gt_stems = set(files["gt"])
    for s in sides:
        missing = gt_stems - set(files[s])
        extra = set(files[s]) - gt_stems
        if missing and files[s]:
            problems.append(f"gt/ image(s) with no {s}/ match: {_fmt_names(missing)}")
        if extra and files["gt"]:
            problems.append(f"{s}/ image(s) with no gt/ match: {_fmt_names(extra)}")

    common = sorted(gt_stems.intersection(*(set(files[s]) for s in sides)))
    sizes: dict[Path, tuple[int, int]] = {}
    if check != "none":
        reader = _image_size if check == "header" else _decode_size
        for stem in common:
            for s in ["gt", *sides]:
                p = files[s][stem]
                try:
                    sizes[p] = reader(p)
                except ImageTooLargeError as exc:
                    problems.append(f"image too large: {s}/{p.name}: {exc}")
                except Exception as exc:  # noqa: BLE001 - any reader failure = unreadable
                    problems.append(f"unreadable image {s}/{p.name}: {type(exc).__name__}: {exc}")
        for stem in common:
            g = sizes.get(files["gt"][stem])
            for s in sides:
                o = sizes.get(files[s][stem])
                if g is not None and o is not None and g != o:
                    problems.append(
                        f"size mismatch for {stem!r}: gt/{files['gt'][stem].name} is {g[1]}x{g[0]} (WxH) "
                        f"but {s}/{files[s][stem].name} is {o[1]}x{o[0]}"
                    )
    if problems:
        _raise(set_name, root, problems)

    pairs = [
        Pair(
            name=stem,
            gt=files["gt"][stem],
            lq=files["lq"][stem] if "lq" in files else None,
            pred=files["pred"][stem] if "pred" in files else None,
            size=sizes.get(files["gt"][stem]),
        )
        for stem in common
    ]
    return StressSet(
        name=set_name,
        root=root,
        kind=chosen,
        pairs=pairs,
        description=str(meta.get("description", "")),
        protocol_overrides=dict(meta.get("protocol", {})),
        degradation=dict(meta.get("degradation", {})),
        provenance=dict(meta.get("provenance", {})),
        ignored=ignored,
    )


def attach_predictions(
    stress_set: StressSet, pred_dir: str | os.PathLike[str], *, check: CheckMode = "header"
) -> StressSet:
    """The same set gated from saved predictions: ``pred_dir/<stem>.<ext>`` for every GT stem.

    Returns a copy with ``kind="pred"`` and each pair's ``pred`` set. Raises StressSetError
    listing predictions that are missing, unexpected, duplicated, unreadable or of another size
    than their GT.
    """
    folder = Path(pred_dir).expanduser()
    if not folder.is_dir():
        raise StressSetError(f"stress set {stress_set.name!r}: predictions folder {folder} does not exist")
    problems: list[str] = []
    ignored: list[Path] = []
    preds = _list_images(folder, str(folder), problems, ignored)
    stems = set(stress_set.names)
    missing = stems - set(preds)
    extra = set(preds) - stems
    if missing and preds:
        problems.append(f"no prediction in {folder} for image(s): {_fmt_names(missing)}")
    if extra:
        problems.append(f"prediction(s) in {folder} with no image of this set: {_fmt_names(extra)}")
    new_pairs = []
    for pair in stress_set.pairs:
        p = preds.get(pair.name)
        if p is not None and check != "none":
            reader = _image_size if check == "header" else _decode_size
            try:
                size = reader(p)
            except ImageTooLargeError as exc:
                problems.append(f"prediction too large: {exc}")
            except Exception as exc:  # noqa: BLE001
                problems.append(f"unreadable prediction {p}: {type(exc).__name__}: {exc}")
            else:
                gsize = pair.size if pair.size is not None else reader(pair.gt)
                if size != gsize:
                    problems.append(
                        f"size mismatch for {pair.name!r}: gt is {gsize[1]}x{gsize[0]} (WxH) but {p} is {size[1]}x{size[0]}"
                    )
        new_pairs.append(dataclasses.replace(pair, pred=p))
    if problems:
        _raise(stress_set.name, stress_set.root, problems)
    return dataclasses.replace(stress_set, kind="pred", pairs=new_pairs, ignored=stress_set.ignored + ignored)
