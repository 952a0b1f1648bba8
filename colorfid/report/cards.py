"""Per-image cards: the worst images of a set as LQ | output | baseline output | GT with their
three maps and health flags, encoded for the page."""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from .._files import safe_name
from .._format import finite
from ..errors import ImageReadError
from .inputs import Run, resolve_path
from .maps import SAT_MAP_MIN_GT, compute_maps, data_uri, downscale, to_uint8
from .numbers import badness_of

__all__ = ["GREY_COLLAPSE_WARN", "GREY_COLLAPSE_CRITICAL", "OUTPUT_LONG_EDGE", "SMALL_LONG_EDGE", "Pic", "Card",
           "card_flags", "worst_first", "build_cards", "slug", "encode_cards"]

#: ``grey_collapse`` (fraction of the GT's coloured pixels rendered grey) that flags warn / critical.
GREY_COLLAPSE_WARN: float = 0.25


GREY_COLLAPSE_CRITICAL: float = 0.6


#: Long edge (px) of the embedded output and GT (they double as the slider's images).
OUTPUT_LONG_EDGE = 768


#: Long edge (px) of the embedded LQ, baseline output and the three maps.
SMALL_LONG_EDGE = 512


def read_image_file(path: Path) -> Any:
    from ..io import read_image  # noqa: PLC0415

    return read_image(path)


@dataclass
class Pic:
    key: str
    label: str
    arr: np.ndarray | None = None
    note: str = ""
    long_edge: int = SMALL_LONG_EDGE
    full: str | None = None  # relative href of a full-size side file
    uri: str = ""
    w: int = 0
    h: int = 0


@dataclass
class Card:
    set_name: str
    name: str
    rank: int
    value: float | None
    metrics: dict[str, Any]
    flags: list[tuple[str, str]] = field(default_factory=list)
    pics: dict[str, Pic] = field(default_factory=dict)
    maps: dict[str, Pic] = field(default_factory=dict)
    map_notes: dict[str, str] = field(default_factory=dict)
    problem: str = ""


def card_flags(m: Mapping[str, Any], protocol: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(severity, text) flags from an image's stored health metrics (``image_metrics`` made them).

    * ``nonfinite_count > 0`` -> critical; ``out_of_range_frac > 0`` -> warn (values the model
      produced outside [0, 1] before clamping).
    * ``grey_collapse`` (share of the GT's coloured pixels rendered grey) >=
      :data:`GREY_COLLAPSE_CRITICAL` -> critical, >= :data:`GREY_COLLAPSE_WARN` -> warn.
    * low colour: ``mean_saturation`` under the protocol's ``low_color_critical`` / ``low_color_min``
      (:class:`colorfid.metrics.MetricProtocol`), flagged only when the GT has high-chroma pixels
      (``hc_fraction > 0``), so a neutral scene is not blamed for being neutral.
    """
    flags: list[tuple[str, str]] = []
    nf = finite(m.get("nonfinite_count"))
    if nf:
        flags.append(("critical", f"{int(nf)} non-finite values"))
    oor = finite(m.get("out_of_range_frac"))
    if oor:
        flags.append(("warn", f"{oor:.2%} of values outside [0, 1]"))
    gc = finite(m.get("grey_collapse"))
    if gc is not None and gc >= GREY_COLLAPSE_WARN:
        sev = "critical" if gc >= GREY_COLLAPSE_CRITICAL else "warn"
        flags.append((sev, f"grey collapse: {gc:.0%} of coloured GT pixels rendered grey"))
    ms, hc = finite(m.get("mean_saturation")), finite(m.get("hc_fraction"))
    crit = finite(protocol.get("low_color_critical"))
    low = finite(protocol.get("low_color_min"))
    if ms is not None and hc:
        if crit is not None and ms < crit:
            flags.append(("critical", f"very low colour: mean saturation {ms:.3f} < {crit:g}"))
        elif low is not None and ms < low:
            flags.append(("warn", f"low colour: mean saturation {ms:.3f} < {low:g}"))
    return flags


def worst_first(images: Sequence[Mapping[str, Any]], metric: str, k: int) -> list[Mapping[str, Any]]:
    def key(img: Mapping[str, Any]) -> tuple[int, float]:
        b = badness_of((img.get("metrics") or {}).get(metric), metric)
        return (1, 0.0) if b is None else (0, -b)

    return sorted(images, key=key)[:k]


def build_cards(
    run: Run,
    base: Run | None,
    set_name: str,
    metric: str,
    worst_k: int,
    protocol: Mapping[str, Any],
    full_dir: Path | None,
    out_dir: Path,
) -> list[Card]:
    s = run.data["sets"][set_name]
    images = list(s.get("images") or [])
    base_imgs: dict[str, Mapping[str, Any]] = {}
    if base is not None:
        for img in ((base.data["sets"].get(set_name) or {}).get("images") or []):
            base_imgs[str(img.get("name"))] = img
    hue_floor = finite(protocol.get("hue_chroma_floor"))
    hue_floor = 10.0 if hue_floor is None else hue_floor
    cards = []
    for rank, img in enumerate(worst_first(images, metric, worst_k), 1):
        m = dict(img.get("metrics") or {})
        card = Card(set_name, str(img.get("name")), rank, finite(m.get(metric)), m, card_flags(m, protocol))
        paths = {
            "lq": resolve_path(img.get("lq"), run),
            "output": resolve_path(img.get("output"), run),
            "baseline": resolve_path((base_imgs.get(card.name) or {}).get("output"), base),
            "gt": resolve_path(img.get("gt"), run),
        }
        labels = {"lq": "LQ (input)", "output": "output", "baseline": "baseline output", "gt": "GT (target)"}
        tensors: dict[str, Any] = {}
        for key in ("lq", "output", "baseline", "gt"):
            pic = Pic(key, labels[key], long_edge=OUTPUT_LONG_EDGE if key in ("output", "gt") else SMALL_LONG_EDGE)
            p = paths[key]
            if p is None:
                pic.note = {
                    "lq": "no LQ (prediction set)",
                    "output": "output not cached",
                    "baseline": "no baseline output cached",
                    "gt": "no GT path",
                }[key]
            else:
                try:
                    t = read_image_file(p)
                    tensors[key] = t
                    pic.arr = downscale(to_uint8(t), OUTPUT_LONG_EDGE)  # keep only what is embedded
                    if full_dir is not None:
                        pic.full = _side_copy(p, full_dir / safe_name(set_name) / f"{safe_name(card.name)}_{key}{p.suffix.lower()}",
                                              out_dir)
                except (ImageReadError, OSError) as exc:
                    pic.note = f"unreadable: {exc}"
            if key == "baseline" and p is None and not base_imgs:
                continue  # no baseline outputs for this set (none given, or a values-only baseline)
            card.pics[key] = pic
        pred, gt = tensors.get("output"), tensors.get("gt")
        if pred is not None and gt is not None and tuple(pred.shape) == tuple(gt.shape):
            maps = compute_maps(pred, gt, hue_floor)
            for key, label, arr in (
                ("de00", "ΔE2000 map", maps.de00),
                ("hue", "hue shift (chromatic mask)", maps.hue),
                ("sat", "saturation ratio", maps.sat),
            ):
                pic = Pic(key, label, downscale(arr, OUTPUT_LONG_EDGE))
                if full_dir is not None:
                    pic.full = _side_png(arr, full_dir / safe_name(set_name) / f"{safe_name(card.name)}_{key}.png", out_dir)
                card.maps[key] = pic
            npx = pred.shape[-1] * pred.shape[-2]
            card.map_notes = {
                "de00": f"max {maps.de00_max:.1f} ΔE00",
                "hue": f"{maps.hue_pixels / npx:.0%} of pixels chromatic (GT C* ≥ {hue_floor:g})",
                "sat": f"{maps.sat_pixels / npx:.0%} of pixels with GT S ≥ {SAT_MAP_MIN_GT:g}",
            }
        elif pred is not None and gt is not None:
            card.problem = f"output {tuple(pred.shape)} and GT {tuple(gt.shape)} differ in shape: no maps"
        else:
            card.problem = "maps need both the cached output and the GT"
        cards.append(card)
    return cards


def slug(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", s).strip("_") or "x"


def _side_copy(src: Path, dst: Path, out_dir: Path) -> str:
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)
    return dst.relative_to(out_dir).as_posix()


def _side_png(arr: np.ndarray, dst: Path, out_dir: Path) -> str:
    from PIL import Image  # noqa: PLC0415

    dst.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(dst, format="PNG", optimize=True)
    return dst.relative_to(out_dir).as_posix()


def encode_cards(cards: Iterable[Card], out_edge: int, small_edge: int, quality: int) -> None:
    for card in cards:
        for pic in list(card.pics.values()) + list(card.maps.values()):
            if pic.arr is None:
                pic.uri = ""
                continue
            edge = out_edge if pic.long_edge == OUTPUT_LONG_EDGE else small_edge
            pic.uri, pic.w, pic.h = data_uri(pic.arr, edge, quality, sharp=pic.key in ("de00", "hue", "sat"))
