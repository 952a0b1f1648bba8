"""Helpers for users' own tests of losses: differentiability, balance, and a training effect.

* :func:`assert_differentiable` — finite value, finite non-zero gradient reaching ``pred``, no
  graph break, on grey / black / white / identical / random inputs; plus a finite-difference
  check that the autograd gradient is the derivative of the value (which catches a term that
  was silently ``.detach()``-ed or routed through ``.item()``).
* :func:`loss_balance` — each term's raw value, weighted value and share of the gradient norm;
  warns (:class:`~colorfid.errors.ColorfidWarning`) when one term dominates the others by more
  than 10x — the "Lab MSE 1000x larger than everything else" failure.
* :func:`synthetic_pairs` and :func:`color_training_check` — a seeded "before -> after" task
  (darkened, desaturated, colour-cast inputs; targets with saturated walls that are a minority
  of pixels) and a tiny conv net trained on it, reporting the saturation ratio on high-chroma
  target pixels (:func:`colorfid.metrics.saturation_ratio` with
  :func:`colorfid.metrics.high_chroma_mask`).

Example (a deliberately unbalanced loss)::

    from colorfid.color import srgb_to_lab
    from colorfid.testing import loss_balance
    terms = {
        "lab_mse": (lambda p, t: ((srgb_to_lab(p) - srgb_to_lab(t)) ** 2).mean(), 1.0),
        "l1": (lambda p, t: (p - t).abs().mean(), 1.0),
    }
    print(loss_balance(terms, pred, target))   # ColorfidWarning: 'lab_mse' dominates ...
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import torch
from torch import Tensor, nn

from .color import hsv_saturation, lab_to_srgb, srgb_to_lab, srgb_to_ycbcr
from .errors import ColorfidWarning, DTypeError, ShapeError, UnknownNameError, UsageError
from .metrics import high_chroma_mask, saturation_ratio

__all__ = [
    "DIFFERENTIABILITY_CASES",
    "assert_differentiable",
    "BalanceRow",
    "BalanceTable",
    "loss_balance",
    "synthetic_pairs",
    "degrade",
    "TinyRestorationNet",
    "color_training_check",
    "HueProbeResult",
    "hue_uncertainty_probe",
]

LossFn = Callable[..., Any]

#: The inputs :func:`assert_differentiable` checks by default.
DIFFERENTIABILITY_CASES: tuple[str, ...] = ("random", "grey", "black", "white", "identical")


def _scalar(out: Any, where: str) -> Tensor:
    """A loss's output -> scalar tensor (first element of a tuple; non-scalars are summed)."""
    if isinstance(out, (tuple, list)) and out:
        out = out[0]
    if not isinstance(out, Tensor):
        raise AssertionError(f"{where}: the loss returned {type(out).__name__}, not a tensor")
    return out if out.dim() == 0 else out.sum()


def _check_images(pred: Tensor, target: Tensor, func: str) -> None:
    for name, x in (("pred", pred), ("target", target)):
        if not isinstance(x, Tensor):
            raise DTypeError(f"{func}: {name} must be a torch.Tensor, got {type(x).__name__}")
        if not x.is_floating_point():
            raise DTypeError(f"{func}: {name} must be a floating-point tensor, got {x.dtype}")
        if x.dim() < 3 or x.shape[-3] != 3:
            raise ShapeError(f"{func}: {name} must be shaped (..., 3, H, W), got {tuple(x.shape)}")
    if pred.shape != target.shape:
        raise ShapeError(f"{func}: pred and target differ in shape: {tuple(pred.shape)} vs {tuple(target.shape)}")


def _case_inputs(case: str, pred: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
    if case == "random":
        return pred, target
    if case == "grey":  # exactly neutral: each pixel's channel mean of the target, R = G = B
        return target.mean(dim=-3, keepdim=True).expand_as(target).clone(), target
    if case == "black":
        return torch.zeros_like(target), target
    if case == "white":
        return torch.ones_like(target), target
    if case == "identical":
        return target.clone(), target
    raise UnknownNameError(f"assert_differentiable: unknown case {case!r}; known: {list(DIFFERENTIABILITY_CASES)}")


def _grad_of(loss: LossFn, p0: Tensor, t: Tensor, where: str) -> tuple[Tensor, Tensor]:
    """(value, gradient w.r.t. pred), asserting the graph reaches pred."""
    p = p0.detach().clone().requires_grad_(True)
    out = _scalar(loss(p, t), where)
    if not bool(torch.isfinite(out.detach())):
        raise AssertionError(f"{where}: the loss value is not finite ({float(out.detach())})")
    if not out.requires_grad or out.grad_fn is None:
        raise AssertionError(
            f"{where}: graph break — the loss value does not depend on pred through autograd "
            "(a .detach(), .item()/.numpy() round trip, torch.tensor(...) of a value, or a Python "
            "branch on a tensor that returned a constant?)"
        )
    (g,) = torch.autograd.grad(out, p, allow_unused=True)
    if g is None:
        raise AssertionError(f"{where}: graph break — no gradient reaches pred (the value does not depend on it)")
    if not bool(torch.isfinite(g).all()):
        bad = int((~torch.isfinite(g)).sum())
        raise AssertionError(f"{where}: {bad} non-finite gradient element(s) (NaN/Inf) w.r.t. pred")
    return out.detach(), g


def _directional_check(loss: LossFn, pred: Tensor, target: Tensor, rtol: float, seed: int) -> None:
    """Compare <grad, v> with the central difference of the value along a random v."""
    gen = torch.Generator().manual_seed(seed)
    try:
        p64, t64 = pred.detach().double(), target.detach().double()
        _, g = _grad_of(loss, p64, t64, "assert_differentiable[directional]")
        # Small steps: kinks of L1-type terms (|x| at x = 0) must not be crossed. A part routed
        # through a float32 constant (torch.tensor(x.item()) in default float32) changes below
        # float32 resolution at this step and can escape; a Python float (loss + x.item()) cannot.
        eps, tol = 1e-6, rtol
        p_base, t_use = p64, t64
    except (RuntimeError, TypeError):  # a loss that cannot run in float64 (e.g. float32 buffers)
        _, g = _grad_of(loss, pred, target, "assert_differentiable[directional]")
        eps, tol = 1e-3, max(rtol, 0.05)
        p_base, t_use = pred.detach(), target.detach()
    v = torch.randn(p_base.shape, generator=gen, dtype=torch.float64).to(p_base)
    v = v / v.norm()
    with torch.no_grad():
        f_plus = _scalar(loss(p_base + eps * v, t_use), "assert_differentiable[directional]")
        f_minus = _scalar(loss(p_base - eps * v, t_use), "assert_differentiable[directional]")
    numeric = float((f_plus - f_minus) / (2 * eps))
    analytic = float((g * v).sum())
    scale = max(abs(numeric), abs(analytic), float(g.norm()) * 1e-3, 1e-12)
    if abs(numeric - analytic) > tol * scale:
        raise AssertionError(
            "assert_differentiable[random]: the autograd gradient is not the derivative of the value: "
            f"directional derivative {analytic:.6g} (autograd) vs {numeric:.6g} (finite difference). Part of "
            "the loss changes with pred but sends no gradient back (a .detach(), .item(), .data, or a "
            "Python branch on a tensor value)."
        )


def assert_differentiable(
    loss: LossFn,
    pred: Tensor,
    target: Tensor,
    *,
    cases: Sequence[str] = DIFFERENTIABILITY_CASES,
    directional: bool = True,
    check_terms: bool = True,
    rtol: float = 1e-3,
    seed: int = 0,
) -> dict[str, float]:
    """Assert that ``loss(pred, target)`` trains: finite, connected, non-zero gradients.

    For each case — ``"random"`` (the given pred and target), ``"grey"`` (pred = the target's
    per-pixel channel mean: exactly neutral), ``"black"``, ``"white"`` (pred all 0 / all 1),
    ``"identical"`` (pred = target) — the loss value must be finite, depend on ``pred`` through
    autograd (no graph break) and give a finite gradient w.r.t. ``pred`` that is non-zero in
    every case except ``"identical"`` (the minimum, where 0 is legitimate).

    ``directional=True`` also compares the autograd directional derivative along a random
    direction with a central finite difference on the random case (in float64 when the loss
    accepts it): a term that was ``.detach()``-ed or computed through ``.item()`` still changes
    the value but sends no gradient, and is caught here. ``check_terms``: when ``loss`` has a
    ``terms(pred, target)`` method (:class:`colorfid.losses.ColorAwareLoss`), every term must
    also be connected and have a non-zero gradient on the random case.

    ``loss`` may return a tensor or a tuple whose first element is the loss; a non-scalar is
    summed. Raises ``AssertionError`` naming the case and what failed; returns the gradient norm
    of each case.
    """
    _check_images(pred, target, "assert_differentiable")
    norms: dict[str, float] = {}
    for case in cases:
        p0, t0 = _case_inputs(case, pred.detach(), target.detach())
        where = f"assert_differentiable[{case}]"
        _, g = _grad_of(loss, p0, t0, where)
        n = float(g.norm())
        if case != "identical" and not n > 0:
            raise AssertionError(
                f"{where}: the gradient w.r.t. pred is exactly zero although pred != target — the loss "
                "cannot move this prediction (a constant returned by a Python branch, a clamp or relu "
                "that is flat here, or a chroma/hue term with no gradient at grey?)"
            )
        norms[case] = n
    if check_terms and callable(getattr(loss, "terms", None)) and "random" in cases:
        for name in loss.terms(pred.detach(), target.detach()):
            def one(p: Tensor, t: Tensor, _n: str = name) -> Tensor:
                return loss.terms(p, t)[_n]

            _, g = _grad_of(one, pred, target, f"assert_differentiable[random, term {name!r}]")
            if not float(g.norm()) > 0:
                raise AssertionError(f"assert_differentiable[random, term {name!r}]: zero gradient w.r.t. pred")
    if directional and "random" in cases:
        _directional_check(loss, pred, target, rtol, seed)
    return norms


# ----------------------------------------------------------------------------------------------
# loss_balance
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BalanceRow:
    """One term of :func:`loss_balance`: raw value, weight, weighted value, gradient norm/share."""

    name: str
    raw: float
    weight: float
    weighted: float
    grad_norm: float
    grad_share: float

    def as_dict(self) -> dict[str, float | str]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class BalanceTable:
    """The result of :func:`loss_balance`; ``str()`` prints the table."""

    rows: tuple[BalanceRow, ...]
    dominant: str | None
    value_ratio: float
    grad_ratio: float
    threshold: float

    @property
    def balanced(self) -> bool:
        return self.dominant is None

    def __getitem__(self, name: str) -> BalanceRow:
        for r in self.rows:
            if r.name == name:
                return r
        raise UnknownNameError(f"BalanceTable: no term {name!r}; terms: {[r.name for r in self.rows]}")

    def to_dict(self) -> dict[str, Any]:
        return {"rows": [r.as_dict() for r in self.rows], "dominant": self.dominant,
                "value_ratio": self.value_ratio, "grad_ratio": self.grad_ratio, "threshold": self.threshold}

    def __str__(self) -> str:
        head = f"{'term':<14}{'raw':>12}{'weight':>10}{'weighted':>12}{'grad norm':>12}{'grad share':>12}"
        lines = [head, "-" * len(head)]
        for r in self.rows:
            lines.append(f"{r.name:<14}{r.raw:>12.4g}{r.weight:>10.4g}{r.weighted:>12.4g}"
                         f"{r.grad_norm:>12.4g}{100 * r.grad_share:>11.1f}%")
        verdict = (f"balanced (largest/next: value {self.value_ratio:.3g}x, gradient {self.grad_ratio:.3g}x; "
                   f"threshold {self.threshold:g}x)") if self.dominant is None else (
            f"UNBALANCED: {self.dominant!r} dominates (value {self.value_ratio:.3g}x, gradient "
            f"{self.grad_ratio:.3g}x the next term; threshold {self.threshold:g}x)")
        lines.append(verdict)
        return "\n".join(lines)


def _ratio_top(values: Sequence[float]) -> tuple[int, float]:
    """(index of the largest, largest / second largest) over |values|."""
    order = sorted(range(len(values)), key=lambda i: abs(values[i]), reverse=True)
    top, nxt = abs(values[order[0]]), abs(values[order[1]])
    if nxt == 0:
        return order[0], (math.inf if top > 0 else 1.0)
    return order[0], top / nxt


def _term_functions(loss: Any, weights: Mapping[str, float] | None) -> dict[str, tuple[Callable[[Tensor, Tensor], Tensor], float]]:
    if callable(getattr(loss, "terms", None)) and isinstance(getattr(loss, "term_weights", None), Mapping):
        lw = float(getattr(loss, "loss_weight", 1.0))
        tw = dict(loss.term_weights)
        if weights:
            tw.update(weights)
        names = list(tw)
        return {n: ((lambda p, t, _n=n: loss.terms(p, t)[_n]), lw * float(tw[n])) for n in names}
    if isinstance(loss, Mapping):
        out = {}
        for n, spec in loss.items():
            if isinstance(spec, (tuple, list)) and len(spec) == 2 and callable(spec[0]):
                fn, w = spec
            elif callable(spec):
                fn, w = spec, (weights or {}).get(n, 1.0)
            else:
                raise UsageError(f"loss_balance: term {n!r} must be a callable or (callable, weight), got {spec!r}")
            out[str(n)] = (fn, float(w))
        return out
    raise UsageError(
        "loss_balance: pass the terms — a mapping {name: (fn, weight)} / {name: fn}, or a loss with "
        f"terms(pred, target) and term_weights (e.g. colorfid.losses.ColorAwareLoss); got {type(loss).__name__}"
    )


def loss_balance(
    loss: Any,
    pred: Tensor,
    target: Tensor,
    *,
    weights: Mapping[str, float] | None = None,
    threshold: float = 10.0,
    warn: bool = True,
) -> BalanceTable:
    """Table of each term's raw value, weighted value and share of the gradient norm.

    ``loss`` is either a mapping ``{name: (fn, weight)}`` (or ``{name: fn}`` with ``weights``)
    of term functions ``fn(pred, target) -> scalar``, or a loss with a ``terms(pred, target)``
    method and ``term_weights`` (:class:`colorfid.losses.ColorAwareLoss`; its ``loss_weight``
    multiplies every weight, ``weights`` overrides some). Each weighted term's gradient w.r.t.
    ``pred`` is taken separately; its share is its norm over the sum of the norms.

    A term *dominates* when its |weighted value| or its gradient norm is more than ``threshold``
    (default 10) times the next largest; then a :class:`~colorfid.errors.ColorfidWarning` names it
    and the weight that would bring it level with the next term (unless ``warn=False``).
    ``table.dominant`` is its name (None when balanced).
    """
    _check_images(pred, target, "loss_balance")
    fns = _term_functions(loss, weights)
    if not fns:
        raise UsageError("loss_balance: no terms to compare")
    rows = []
    for name, (fn, w) in fns.items():
        p = pred.detach().clone().requires_grad_(True)
        raw = _scalar(fn(p, target.detach()), f"loss_balance[{name}]")
        weighted = w * raw
        if weighted.requires_grad:
            (g,) = torch.autograd.grad(weighted, p, allow_unused=True)
        else:
            g = None
        gn = 0.0 if g is None else float(g.norm())
        rows.append([name, float(raw.detach()), w, float(weighted.detach()), gn])
    total_g = sum(r[4] for r in rows)
    table_rows = tuple(BalanceRow(n, r, w, wv, gn, gn / total_g if total_g > 0 else 0.0) for n, r, w, wv, gn in rows)
    dominant: str | None = None
    v_ratio = g_ratio = 1.0
    if len(table_rows) >= 2:
        iv, v_ratio = _ratio_top([r.weighted for r in table_rows])
        ig, g_ratio = _ratio_top([r.grad_norm for r in table_rows])
        if v_ratio > threshold:
            dominant = table_rows[iv].name
        elif g_ratio > threshold:
            dominant = table_rows[ig].name
    table = BalanceTable(table_rows, dominant, v_ratio, g_ratio, float(threshold))
    if dominant is not None and warn:
        row = table[dominant]
        ratio = v_ratio if v_ratio > threshold else g_ratio
        suggest = row.weight / ratio if ratio not in (0.0, math.inf) else 0.0
        warnings.warn(
            f"loss_balance: term {dominant!r} dominates the others by {ratio:.3g}x (threshold {threshold:g}x): "
            f"weighted value {row.weighted:.4g}, {100 * row.grad_share:.1f}% of the gradient norm. Normalise it "
            f"or lower its weight (about {suggest:.3g} brings it level with the next term).\n{table}",
            ColorfidWarning,
            stacklevel=2,
        )
    return table


# ----------------------------------------------------------------------------------------------
# A synthetic "before -> after" task and a training-effect check
# ----------------------------------------------------------------------------------------------

# Strongly coloured paints (encoded sRGB): blue, green, teal, red, yellow, purple, orange.
_PAINTS = torch.tensor([
    [0.10, 0.25, 0.80], [0.15, 0.62, 0.20], [0.02, 0.56, 0.58], [0.82, 0.12, 0.10],
    [0.88, 0.78, 0.10], [0.50, 0.16, 0.68], [0.92, 0.45, 0.08],
], dtype=torch.float64)


def _luma(x: Tensor) -> Tensor:
    """BT.601 luma Y' in [0, 1] (full range), from colorfid.color.srgb_to_ycbcr's studio Y."""
    return (srgb_to_ycbcr(x, y_only=True, check=False) * 255.0 - 16.0) / 219.0


def degrade(after: Tensor) -> Tensor:
    """The synthetic "before": saturation-dependent desaturation, darkening, a warm-green cast.

    1. Desaturate toward BT.601 luma, keeping ``0.9 - 0.35 S`` of the colour (S = HSV
       saturation): near-neutral pixels lose 10 %, saturated walls ~40 %.
    2. Darken: ``0.92 x ** 1.2``. 3. Cast: channels x (1.03, 1.00, 0.95). Clamped to [0, 1].
    """
    y = _luma(after)
    keep = (0.9 - 0.35 * hsv_saturation(after, check=False)).unsqueeze(-3)
    x = y + (after - y) * keep
    x = 0.92 * x.clamp_min(0.0) ** 1.2
    cast = torch.tensor([1.03, 1.0, 0.95], dtype=after.dtype, device=after.device).view(3, 1, 1)
    return (x * cast).clamp(0.0, 1.0)


def synthetic_pairs(
    n: int, size: int = 64, *, seed: int = 0, dtype: torch.dtype = torch.float32
) -> tuple[Tensor, Tensor]:
    """``(before, after)``, each ``(n, 3, size, size)`` in [0, 1]: a seeded enhancement task.

    *After* (the target): a near-neutral background (grey/beige, tint <= 0.04, a lighting
    gradient and low-frequency texture) with one or two rectangular walls of strongly saturated
    paint (blue, green, teal, red, yellow, purple, orange) with shading — 10-40 % of the pixels,
    so saturated pixels are a minority. *Before* is :func:`degrade` of it. Deterministic for a
    given ``seed`` (its own generator; the global RNG is untouched).
    """
    if n < 1 or size < 8:
        raise UsageError(f"synthetic_pairs: need n >= 1 and size >= 8, got n={n}, size={size}")
    g = torch.Generator().manual_seed(int(seed))
    f64 = torch.float64

    def u(*shape: int, lo: float = 0.0, hi: float = 1.0) -> Tensor:
        return lo + (hi - lo) * torch.rand(*shape, generator=g, dtype=f64)

    yy, xx = torch.meshgrid(torch.linspace(0, 1, size, dtype=f64), torch.linspace(0, 1, size, dtype=f64), indexing="ij")
    # Background: grey level, small tint, lighting gradient, low-frequency texture.
    level = u(n, 1, 1, 1, lo=0.35, hi=0.85)
    tint = u(n, 3, 1, 1, lo=-0.04, hi=0.04)
    ang = u(n, 1, 1, 1, hi=2 * math.pi)
    ramp = (torch.cos(ang) * (xx - 0.5) + torch.sin(ang) * (yy - 0.5)) * u(n, 1, 1, 1, lo=0.1, hi=0.35)
    tex = torch.nn.functional.interpolate(u(n, 1, 6, 6, lo=-1, hi=1), size=(size, size), mode="bilinear", align_corners=True)
    bg = level + tint + ramp + 0.05 * tex
    img = bg.expand(n, 3, size, size).clone()
    # Walls: one or two rectangles of saturated paint.
    for k in range(2):
        present = (u(n) < (1.0 if k == 0 else 0.4)).to(f64).view(n, 1, 1, 1)
        w = u(n, 1, 1, 1, lo=0.25, hi=0.55)
        h = u(n, 1, 1, 1, lo=0.35, hi=0.7) * (1.0 if k == 0 else 0.6)
        x0 = u(n, 1, 1, 1) * (1 - w)
        y0 = u(n, 1, 1, 1) * (1 - h)
        inside = ((xx >= x0) & (xx < x0 + w) & (yy >= y0) & (yy < y0 + h)).to(f64) * present
        idx = torch.randint(0, len(_PAINTS), (n,), generator=g)
        paint = _PAINTS[idx].view(n, 3, 1, 1) * u(n, 1, 1, 1, lo=0.75, hi=1.1)
        shade = 1.0 + 0.25 * ramp + 0.03 * tex
        img = img * (1 - inside) + (paint * shade) * inside
    img = img + 0.01 * torch.randn(img.shape, generator=g, dtype=f64)
    after = img.clamp(0.0, 1.0)
    before = degrade(after)
    return before.to(dtype), after.to(dtype)


class TinyRestorationNet(nn.Module):
    """A tiny residual conv net (3 -> 16 -> 16 -> 3, 3x3/3x3/1x1, ReLU): output = x + f(x).

    The last layer starts at zero, so training starts from the identity (the degraded input).
    """

    def __init__(self, width: int = 16) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, width, 3, padding=1), nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=1), nn.ReLU(),
            nn.Conv2d(width, 3, 1),
        )
        nn.init.zeros_(self.body[-1].weight)
        nn.init.zeros_(self.body[-1].bias)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


def _pooled_hc_ratio(pred: Tensor, target: Tensor) -> tuple[float, int]:
    """Saturation ratio over the high-chroma target pixels of all images together."""
    p = torch.cat(list(pred.clamp(0, 1)), dim=-1)  # (3, H, n*W)
    t = torch.cat(list(target), dim=-1)
    r = saturation_ratio(p, t, mask=high_chroma_mask(t))
    return float(r["value"]), int(r["pixels"])


def color_training_check(
    loss: LossFn,
    *,
    iterations: int = 150,
    batch: int = 8,
    size: int = 32,
    lr: float = 3e-3,
    seed: int = 0,
    eval_images: int = 16,
    eval_size: int = 64,
) -> dict[str, float | int]:
    """Train :class:`TinyRestorationNet` on :func:`synthetic_pairs` with ``loss``; report colour.

    Adam (``lr``, cosine-annealed to 0), ``iterations`` steps of fresh ``batch`` x ``size``² synthetic pairs (seed
    ``seed``), then evaluation on ``eval_images`` held-out pairs (seed ``seed + 100003``) of
    ``eval_size``². Returns ``sat_ratio_hc`` (pooled :func:`~colorfid.metrics.saturation_ratio`
    over the :func:`~colorfid.metrics.high_chroma_mask` pixels of the targets; 1 is faithful),
    ``sat_ratio_hc_start`` (the untrained net = the degraded input), ``hc_pixels``, ``l1`` (mean
    absolute error) and ``iterations``. Seeded and deterministic on a given machine; the global
    RNG state is restored afterwards.
    """
    if iterations < 0 or batch < 1:
        raise UsageError(f"color_training_check: need iterations >= 0 and batch >= 1, got {iterations}, {batch}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = TinyRestorationNet()
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(iterations, 1))
    ev_in, ev_gt = synthetic_pairs(eval_images, eval_size, seed=seed + 100003)
    with torch.no_grad():
        start, _ = _pooled_hc_ratio(net(ev_in), ev_gt)
    for it in range(iterations):
        x, y = synthetic_pairs(batch, size, seed=seed * 1_000_003 + it)
        opt.zero_grad(set_to_none=True)
        value = _scalar(loss(net(x), y), "color_training_check")
        value.backward()
        opt.step()
        sched.step()
    with torch.no_grad():
        out = net(ev_in)
        ratio, pixels = _pooled_hc_ratio(out, ev_gt)
        l1 = float((out.clamp(0, 1) - ev_gt).abs().mean())
    return {"sat_ratio_hc": ratio, "sat_ratio_hc_start": start, "hc_pixels": pixels, "l1": l1,
            "iterations": iterations}


# ----------------------------------------------------------------------------------------------
# Hue-uncertainty probe: does a loss pay for desaturating when the hue is uncertain?
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HueProbeResult:
    """What :func:`hue_uncertainty_probe` found: the prediction a loss prefers.

    ``chroma_kept`` = C*ab of that prediction / the targets' common C*ab (1 = the loss keeps the
    colour's strength; < 1 = it pulls toward grey). ``lab`` is the prediction in CIELAB,
    ``loss`` the loss there, ``spread`` the half-width of the hue spread in degrees.
    """

    spread: float
    chroma_kept: float
    lab: tuple[float, float, float]
    loss: float


def _probe_targets(spread: float, lightness: float, chroma: float, hue: float, n: int,
                   dtype: torch.dtype) -> Tensor:
    """(n, 3) sRGB colours of CIELAB (L, C, hue + d), d evenly spaced over [-spread, spread]."""
    d = torch.linspace(-spread, spread, n, dtype=torch.float64)
    h = torch.deg2rad(hue + d)
    lab = torch.stack([torch.full_like(h, lightness), chroma * torch.cos(h), chroma * torch.sin(h)])
    rgb = lab_to_srgb(lab.view(3, n, 1)).view(3, n).T
    if float(rgb.min()) < 0 or float(rgb.max()) > 1:
        raise UsageError(
            f"hue_uncertainty_probe: CIELAB L*={lightness}, C*={chroma}, hue {hue}±{spread}° leaves the "
            "sRGB gamut; choose a lower chroma or another lightness"
        )
    return rgb.to(dtype)


def hue_uncertainty_probe(
    loss: LossFn,
    spread: float,
    *,
    lightness: float = 65.0,
    chroma: float = 35.0,
    hue: float = 270.0,
    n_targets: int = 25,
    size: int = 11,
    steps: int = 300,
    lr: float = 0.01,
    dtype: torch.dtype = torch.float64,
) -> HueProbeResult:
    """The colour a loss picks when the target's hue is uncertain, and how much chroma it keeps.

    ``n_targets`` flat ``size``² targets share CIELAB lightness and chroma; their hue angles are
    spread evenly over ``hue ± spread`` degrees (default: L* 65, C* 35 around blue, inside the
    sRGB gamut up to ±90°). One free sRGB colour, the prediction for every target, minimises
    the mean of ``loss(pred, target)`` over them (Adam, ``steps`` steps, cosine-annealed
    ``lr``, from three starts: the target at the central hue, the same at half chroma, and
    grey; the lowest final loss wins). A loss that treats hue and chroma separately keeps
    ``chroma_kept`` near 1; a distance in a plane of colour (L1 in RGB, ΔE) picks a point
    inside the arc of targets (for an L1 median: 0.97 at ±30°, 0.88 at ±60°, 0.75 at ±90°);
    a term proportional to the prediction's chroma can pull it toward grey. The averaging
    failure of colourization and the washed-out walls of restoration both start here.
    """
    if not (0 <= spread <= 180) or n_targets < 1 or steps < 1 or size < 1:
        raise UsageError(
            f"hue_uncertainty_probe: need 0 <= spread <= 180, n_targets >= 1, steps >= 1, size >= 1; "
            f"got {spread}, {n_targets}, {steps}, {size}"
        )
    colours = _probe_targets(spread, lightness, chroma, hue, n_targets, dtype)
    target = colours.view(-1, 3, 1, 1).expand(-1, 3, size, size).contiguous()
    centre = _probe_targets(0.0, lightness, chroma, hue, 1, dtype)[0]
    half = _probe_targets(0.0, lightness, chroma / 2, hue, 1, dtype)[0]
    grey = _probe_targets(0.0, lightness, 0.0, hue, 1, dtype)[0]

    def value(p: Tensor) -> Tensor:
        return _scalar(loss(p.view(1, 3, 1, 1).expand_as(target), target), "hue_uncertainty_probe")

    best: tuple[float, Tensor] | None = None
    for start in (centre, half, grey):
        p = start.clone().requires_grad_(True)
        opt = torch.optim.Adam([p], lr=lr)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps, eta_min=lr / 100)
        for _ in range(steps):
            opt.zero_grad(set_to_none=True)
            value(p).backward()
            opt.step()
            sched.step()
        with torch.no_grad():
            v = float(value(p))
        if math.isfinite(v) and (best is None or v < best[0]):
            best = (v, p.detach().clone())
    if best is None:
        raise UsageError("hue_uncertainty_probe: the loss gave no finite value from any start (NaN/Inf gradients?)")
    lab = srgb_to_lab(best[1].to(torch.float64).view(3, 1, 1), check=False).view(3)
    return HueProbeResult(
        spread=float(spread),
        chroma_kept=float(torch.hypot(lab[1], lab[2])) / chroma,
        lab=(float(lab[0]), float(lab[1]), float(lab[2])),
        loss=best[0],
    )
