"""Tests of colorfid.testing: assert_differentiable must catch broken losses, loss_balance must
flag unbalanced ones, and the synthetic task must be what it claims.

Oracles: deliberately broken losses whose defect is known by construction, hand computations
(torch.nn.functional.l1_loss, gradient norms of simple functions), and numpy HSV saturation.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from colorfid.color import safe_hypot, srgb_to_lab
from colorfid.errors import ColorfidWarning, ShapeError, UnknownNameError, UsageError
from colorfid.losses import (
    ColorAwareLoss,
    ColorDiversityLoss,
    ConfidenceLoss,
    HueDiversityLoss,
    LabLoss,
    SaturationLoss,
)
from colorfid.testing import (
    BalanceTable,
    assert_differentiable,
    color_training_check,
    degrade,
    loss_balance,
    synthetic_pairs,
)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def pair():
    before, after = synthetic_pairs(2, 24, seed=5)
    return before, after


# ----------------------------------------------------------------------------------------------
# assert_differentiable
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", [ColorAwareLoss, LabLoss, SaturationLoss, ConfidenceLoss, HueDiversityLoss,
                                 ColorDiversityLoss])
def test_colorfid_losses_are_differentiable(cls, pair):
    norms = assert_differentiable(cls(), *pair)
    assert set(norms) == {"random", "grey", "black", "white", "identical"}
    assert all(math.isfinite(v) for v in norms.values())


def test_float64_inputs(pair):
    p, t = pair
    assert_differentiable(ColorAwareLoss(), p.double(), t.double())


def l1(p, t):
    return (p - t).abs().mean()


def test_plain_l1_passes(pair):
    assert_differentiable(l1, *pair)


def test_catches_python_branch_returning_a_constant(pair):
    # The "diversity loss with a Python if on a tensor value" failure: a constant comes back.
    def diversity(p, t):
        spread = p.std()
        if spread < 10.0:  # always true: returns a fresh constant, no graph
            return torch.tensor(1.0)
        return spread

    with pytest.raises(AssertionError, match=r"\[random\].*graph break"):
        assert_differentiable(diversity, *pair)


def test_catches_branch_that_returns_a_zero_gradient_constant(pair):
    def clipped(p, t):
        d = (p - t).abs().mean()
        return torch.where(d < 10.0, d * 0 + 0.5, d)  # connected, but flat

    with pytest.raises(AssertionError, match="exactly zero"):
        assert_differentiable(clipped, *pair)


def test_catches_detach(pair):
    with pytest.raises(AssertionError, match="graph break"):
        assert_differentiable(lambda p, t: ((p.detach() - t) ** 2).mean(), *pair)


def test_catches_partial_detach_with_the_directional_check(pair):
    # L1 keeps the graph alive; the colour term is silently detached. Only the finite-difference
    # comparison sees that the value changes with pred without a matching gradient.
    def partly(p, t):
        colour = (srgb_to_lab(p.detach(), check=False) - srgb_to_lab(t)).abs().mean() / 100
        return l1(p, t) + colour

    with pytest.raises(AssertionError, match="not the derivative"):
        assert_differentiable(partly, *pair)
    assert_differentiable(partly, *pair, directional=False)  # the other checks cannot see it


def test_catches_item_round_trip(pair):
    def via_item(p, t):  # a logged value re-used as a loss term: a Python float, no gradient
        return l1(p, t) + 0.5 * (p - t).pow(2).mean().item()

    with pytest.raises(AssertionError, match="not the derivative"):
        assert_differentiable(via_item, *pair)


def test_catches_nan_gradient_at_grey(pair):
    # sqrt at zero chroma: finite value, NaN gradient at an exactly neutral prediction.
    def naive_chroma(p, t):
        lab_p, lab_t = srgb_to_lab(p, check=False), srgb_to_lab(t)
        yuv = torch.stack([p[:, 0] - p[:, 1], p[:, 1] - p[:, 2]], 1)  # exactly 0 at grey
        c = torch.sqrt((yuv**2).sum(1))
        return (lab_p - lab_t).abs().mean() / 100 + c.mean()

    with pytest.raises(AssertionError, match=r"\[grey\].*non-finite gradient"):
        assert_differentiable(naive_chroma, *pair)


def test_catches_zero_gradient_at_grey(pair):
    # A confidence loss on plain chroma, with an exactly-neutral (in its own units) prediction:
    # relu(C_t - |(a, b)|) has no gradient at (0, 0).
    def plain_confidence(p, t):
        a_p, b_p = p[:, 0] - p[:, 1], p[:, 1] - p[:, 2]
        a_t, b_t = t[:, 0] - t[:, 1], t[:, 1] - t[:, 2]
        return torch.relu(safe_hypot(a_t, b_t) - safe_hypot(a_p, b_p)).mean()

    with pytest.raises(AssertionError, match=r"\[grey\].*exactly zero"):
        assert_differentiable(plain_confidence, *pair)


def test_checks_each_term_of_a_composite(pair):
    class Broken(ColorAwareLoss):
        def terms(self, pred, target, weight=None):
            out = super().terms(pred, target, weight)
            out["hue"] = out["hue"].detach()
            return out

    with pytest.raises(AssertionError, match="term 'hue'"):
        assert_differentiable(Broken(), *pair, directional=False)


def test_tuple_outputs_and_bad_arguments(pair):
    assert_differentiable(ColorAwareLoss(return_components=True), *pair, cases=("random", "grey"))
    with pytest.raises(AssertionError, match="returned float"):
        assert_differentiable(lambda p, t: 1.0, *pair)
    with pytest.raises(UnknownNameError, match="known"):
        assert_differentiable(l1, *pair, cases=("gray",))
    with pytest.raises(ShapeError):
        assert_differentiable(l1, pair[0], pair[1][..., :8])


# ----------------------------------------------------------------------------------------------
# loss_balance
# ----------------------------------------------------------------------------------------------

UNBALANCED = {
    "lab_mse": (lambda p, t: ((srgb_to_lab(p) - srgb_to_lab(t)) ** 2).mean(), 1.0),
    "l1": (lambda p, t: (p - t).abs().mean(), 1.0),
}


def test_unbalanced_lab_mse_plus_l1_warns(pair):
    with pytest.warns(ColorfidWarning, match="'lab_mse' dominates"):
        table = loss_balance(UNBALANCED, *pair)
    assert isinstance(table, BalanceTable) and table.dominant == "lab_mse" and not table.balanced
    assert table.value_ratio > 10
    assert table["lab_mse"].grad_share > 0.9
    p, t = pair
    assert table["l1"].raw == pytest.approx(float(F.l1_loss(p, t)), rel=1e-6)
    text = str(table)
    assert "lab_mse" in text and "UNBALANCED" in text and "grad share" in text


def test_rows_are_hand_checkable():
    # f = 3 * sum(p) / n  -> grad = 3/n everywhere, norm = 3/sqrt(n); g = 0.5 * mean(p^2) at p = 1.
    p = torch.ones(1, 3, 4, 4)
    t = torch.zeros(1, 3, 4, 4)
    n = p.numel()
    table = loss_balance({"a": (lambda p, t: p.mean(), 3.0), "b": (lambda p, t: (p**2).mean(), 0.5)}, p, t)
    a, b = table["a"], table["b"]
    assert (a.raw, a.weighted) == pytest.approx((1.0, 3.0))
    assert a.grad_norm == pytest.approx(3 / math.sqrt(n))
    assert b.grad_norm == pytest.approx(0.5 * 2 / math.sqrt(n))
    assert a.grad_share + b.grad_share == pytest.approx(1.0)
    assert table.dominant is None


def test_balanced_when_normalised(pair):
    terms = {
        "lab": (LabLoss(), 1.0),
        "l1": (lambda p, t: (p - t).abs().mean(), 1.0),
    }
    with warnings.catch_warnings():
        warnings.simplefilter("error", ColorfidWarning)
        assert loss_balance(terms, *pair).balanced


def test_default_color_aware_loss_is_balanced_on_typical_data():
    before, after = synthetic_pairs(8, 48, seed=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ColorfidWarning)
        table = loss_balance(ColorAwareLoss(), before, after)
    assert set(r.name for r in table.rows) == set(ColorAwareLoss.TERMS)
    assert table.balanced and max(r.grad_share for r in table.rows) < 0.6


def test_gradient_dominance_is_flagged(pair):
    # Equal values, but one term's gradient is 100x the other's.
    terms = {"steep": lambda p, t: 100 * (p - t).mean() - 100 * (p - t).mean().detach() + 1.0,
             "flat": lambda p, t: (p - t).mean() - (p - t).mean().detach() + 1.0}
    with pytest.warns(ColorfidWarning, match="'steep' dominates"):
        table = loss_balance(terms, *pair)
    assert table.grad_ratio == pytest.approx(100.0)


def test_composite_weights_and_errors(pair):
    table = loss_balance(ColorAwareLoss(loss_weight=2.0), *pair, weights={"ssim": 0.0}, warn=False)
    assert table["ssim"].weighted == 0.0 and table["l1"].weight == 2.0
    with pytest.raises(UsageError, match="terms"):
        loss_balance(lambda p, t: (p - t).abs().mean(), *pair)
    with pytest.raises(UsageError, match="'x'"):
        loss_balance({"x": 3}, *pair)
    with pytest.raises(UnknownNameError):
        table["nope"]


# ----------------------------------------------------------------------------------------------
# synthetic task and training check
# ----------------------------------------------------------------------------------------------


def _hsv_s(x: torch.Tensor) -> np.ndarray:
    a = x.double().numpy()
    mx, mn = a.max(axis=-3), a.min(axis=-3)
    return np.where(mx > 0, (mx - mn) / np.where(mx > 0, mx, 1), 0.0)


def test_synthetic_pairs_are_seeded_and_shaped():
    b1, a1 = synthetic_pairs(4, 32, seed=3)
    b2, a2 = synthetic_pairs(4, 32, seed=3)
    b3, _ = synthetic_pairs(4, 32, seed=4)
    assert b1.shape == a1.shape == (4, 3, 32, 32) and a1.dtype == torch.float32
    assert torch.equal(b1, b2) and torch.equal(a1, a2) and not torch.equal(b1, b3)
    assert float(a1.min()) >= 0 and float(a1.max()) <= 1 and float(b1.min()) >= 0 and float(b1.max()) <= 1
    with pytest.raises(UsageError):
        synthetic_pairs(0)


def test_synthetic_targets_have_a_saturated_minority_and_inputs_are_washed_out():
    before, after = synthetic_pairs(32, 48, seed=0, dtype=torch.float64)
    s_after, s_before = _hsv_s(after), _hsv_s(before)
    hc = s_after >= 0.5
    assert 0.05 < hc.mean() < 0.45  # a minority of pixels
    assert s_before[hc].mean() < 0.85 * s_after[hc].mean()  # desaturated
    assert before.mean() < after.mean()  # darkened
    assert np.abs(_hsv_s(degrade(after)) - s_before).max() == 0.0


def test_color_training_check_is_deterministic_and_reports():
    a = color_training_check(torch.nn.L1Loss(), iterations=3, batch=2, size=16, eval_images=2, eval_size=32)
    b = color_training_check(torch.nn.L1Loss(), iterations=3, batch=2, size=16, eval_images=2, eval_size=32)
    assert a == b
    assert set(a) == {"sat_ratio_hc", "sat_ratio_hc_start", "hc_pixels", "l1", "iterations"}
    assert a["hc_pixels"] > 0 and 0 < a["sat_ratio_hc_start"] < 1
    # The global RNG is untouched: the same draw follows with or without a check in between.
    state = torch.random.get_rng_state()
    x = torch.rand(1)
    torch.random.set_rng_state(state)
    color_training_check(torch.nn.L1Loss(), iterations=1, batch=1, size=16, eval_images=1, eval_size=16)
    assert torch.equal(torch.rand(1), x)
