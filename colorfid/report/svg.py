"""Inline SVG: the maps' colour bars and the trend plots across checkpoints."""

from __future__ import annotations

import math
from typing import Any, Sequence

from .._format import sig
from .maps import CMAPS, DE00_SCALE, HUE_SCALE, SAT_SCALE

__all__ = ["Ids", "esc", "colorbar", "trend_svg"]

class Ids:
    def __init__(self) -> None:
        self.n = 0

    def __call__(self, prefix: str) -> str:
        self.n += 1
        return f"{prefix}{self.n}"


def esc(s: Any) -> str:
    return (
        str(s).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")
    )


def _colorbar_svg(cmap: str, ticks: Sequence[tuple[float, str]], unit: str, title: str, ids: Ids) -> str:
    """A horizontal colour bar; ticks are (position in [0, 1], label)."""
    gid = ids("cb")
    stops = "".join(
        f'<stop offset="{i / (len(CMAPS[cmap]) - 1):.3f}" stop-color="{c}"/>' for i, c in enumerate(CMAPS[cmap])
    )
    w, x0, x1 = 240.0, 8.0, 232.0
    parts = [
        f'<svg class="cbar" viewBox="0 0 {w:.0f} 38" role="img" aria-label="{esc(title)}">',
        f'<defs><linearGradient id="{gid}">{stops}</linearGradient></defs>',
        f'<rect x="{x0}" y="2" width="{x1 - x0}" height="12" fill="url(#{gid})" stroke="#555" stroke-width="0.5"/>',
    ]
    for pos, lab in ticks:
        x = x0 + pos * (x1 - x0)
        anchor = "start" if pos <= 0.001 else "end" if pos >= 0.999 else "middle"
        parts.append(f'<line x1="{x:.1f}" y1="14" x2="{x:.1f}" y2="18" stroke="#333" stroke-width="0.8"/>')
        parts.append(f'<text x="{x:.1f}" y="27" text-anchor="{anchor}">{esc(lab)}</text>')
    parts.append(f'<text x="{w / 2:.0f}" y="37" text-anchor="middle" class="unit">{esc(unit)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def colorbar(key: str, ids: Ids) -> str:
    """The colour bar of map ``key`` (de00 | hue | sat) with a fresh gradient id."""
    return _colorbars(ids, only=key)[key]


def _colorbars(ids: Ids, only: str | None = None) -> dict[str, str]:
    lo, hi = DE00_SCALE
    de_ticks = [((v - lo) / (hi - lo), ("≥ " if v == hi else "") + f"{v:g}") for v in (0, 2, 5, 10, 15, 20)]
    lo, hi = HUE_SCALE
    hue_ticks = [((v - lo) / (hi - lo), f"{v:+g}°" if v else "0°") for v in (-30, -15, 0, 15, 30)]
    llo, lhi = (math.log2(x) for x in SAT_SCALE)
    sat_ticks = [((math.log2(v) - llo) / (lhi - llo), f"×{v:g}") for v in (0.5, 0.71, 1.0, 1.41, 2.0)]
    specs = {
        "de00": ("inferno", de_ticks, "ΔE00 (CIEDE2000)", "ΔE2000 colour scale, 0 to 20 ΔE00"),
        "hue": ("rdbu", hue_ticks, "hue shift, degrees (output − GT)", "Hue-shift colour scale, −30° to +30°"),
        "sat": ("brbg", sat_ticks, "saturation ratio S(output) / S(GT), HSV", "Saturation-ratio colour scale, ×0.5 to ×2"),
    }
    return {k: _colorbar_svg(*v, ids) for k, v in specs.items() if only is None or k == only}


def _nice_ticks(lo: float, hi: float, n: int = 4) -> list[float]:
    span = hi - lo
    if span <= 0:
        return [lo]
    raw = span / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step) * step
    out = []
    v = first
    while v <= hi + 1e-9 * span:
        out.append(round(v, 12))
        v += step
    return out


def trend_svg(
    title: str,
    xs: Sequence[float],
    xlabels: Sequence[str],
    ys: Sequence[float | None],
    bounds: Sequence[float],
    baseline: float | None,
    badness_dir: str,
) -> str:
    """Inline SVG line plot of one set/metric across checkpoints; bound (red dashed), baseline (grey)."""
    W, H = 300.0, 168.0
    L, R, T, B = 46.0, 10.0, 10.0, 40.0
    vals = [y for y in ys if y is not None]
    extra = [b for b in bounds] + ([baseline] if baseline is not None else [])
    allv = vals + extra
    if not allv:
        return ""
    lo, hi = min(allv), max(allv)
    if hi - lo < 1e-12:
        pad = abs(hi) * 0.05 or 1.0
        lo, hi = lo - pad, hi + pad
    pad = (hi - lo) * 0.08
    lo, hi = lo - pad, hi + pad
    xmin, xmax = min(xs), max(xs)
    if xmax == xmin:
        xmin, xmax = xmin - 1, xmax + 1

    def px(x: float) -> float:
        return L + (x - xmin) / (xmax - xmin) * (W - L - R)

    def py(y: float) -> float:
        return T + (hi - y) / (hi - lo) * (H - T - B)

    desc = "; ".join(f"{xl}: {sig(y)}" for xl, y in zip(xlabels, ys))
    if bounds:
        desc += "; bound " + " / ".join(sig(b) for b in bounds)
    if baseline is not None:
        desc += f"; baseline {sig(baseline)}"
    p = [
        f'<svg class="trend" viewBox="0 0 {W:.0f} {H:.0f}" role="img" aria-label="{esc(title)}: {esc(desc)}">',
        f"<title>{esc(title)}</title>",
        f'<rect x="{L}" y="{T}" width="{W - L - R}" height="{H - T - B}" class="plotbg"/>',
    ]
    ticks = _nice_ticks(lo, hi)
    step = ticks[1] - ticks[0] if len(ticks) > 1 else 1.0
    decimals = max(0, -math.floor(math.log10(step) + 1e-9)) + (1 if round(step / 10 ** math.floor(math.log10(step)), 6) == 2.5 else 0)
    for t in ticks:
        y = py(t)
        p.append(f'<line x1="{L}" x2="{W - R}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>')
        p.append(f'<text x="{L - 4}" y="{y + 3:.1f}" text-anchor="end">{esc(f"{t:.{decimals}f}".replace("-", "−"))}</text>')
    for x, xl in zip(xs, xlabels):
        p.append(f'<text x="{px(x):.1f}" y="{H - B + 13:.1f}" text-anchor="middle">{esc(xl)}</text>')
    for b in bounds:
        p.append(f'<line x1="{L}" x2="{W - R}" y1="{py(b):.1f}" y2="{py(b):.1f}" class="bound"/>')
    if baseline is not None:
        p.append(f'<line x1="{L}" x2="{W - R}" y1="{py(baseline):.1f}" y2="{py(baseline):.1f}" class="base"/>')
    segs: list[list[str]] = [[]]
    for x, y in zip(xs, ys):
        if y is None:
            segs.append([])
        else:
            segs[-1].append(f"{px(x):.1f},{py(y):.1f}")
    for s in segs:
        if len(s) > 1:
            p.append(f'<polyline points="{" ".join(s)}" class="line"/>')
    for x, y in zip(xs, ys):
        if y is not None:
            p.append(f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="3" class="pt"><title>{esc(sig(y))}</title></circle>')
    legend_y = H - 8
    p.append(f'<line x1="{L}" x2="{L + 16}" y1="{legend_y - 3}" y2="{legend_y - 3}" class="bound"/>')
    p.append(f'<text x="{L + 20}" y="{legend_y}">bound</text>')
    p.append(f'<line x1="{L + 70}" x2="{L + 86}" y1="{legend_y - 3}" y2="{legend_y - 3}" class="base"/>')
    p.append(f'<text x="{L + 90}" y="{legend_y}">baseline</text>')
    p.append(f'<text x="{W - R}" y="{legend_y}" text-anchor="end" class="dir">{esc(badness_dir)}</text>')
    p.append("</svg>")
    return "".join(p)
