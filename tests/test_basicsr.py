"""colorfid.basicsr: metrics, model types, registration, options and the entry point.

BasicSR cannot be imported in CI (its torchvision import needs a matching CUDA build), so most
tests run against stand-ins written here from BasicSR 1.4.2's documented conventions:

* ``_Registry``: name -> object by ``obj.__name__``, a second object under a name refused
  (BasicSR's ``basicsr.utils.registry.Registry``);
* ``_tensor2img``: (1, 3, H, W) RGB float -> clamp to [0, 1] -> HWC -> BGR -> x255, round -> uint8
  (``basicsr.utils.tensor2img`` with its defaults);
* ``_calculate_metric``: ``REGISTRY.get(opt.pop('type'))(img=..., img2=..., **opt)`` (upstream's
  ``basicsr.metrics.calculate_metric``); the fork calls ``fn(sr_img, gt_img, **opt)``;
* ``_FakeSRModel`` / ``_FakeForkModel``: the parts of ``SRModel`` / the fork's
  ``ImageRestorationModel`` that colorfid's model types rely on (loss building, the training step
  that puts ``l_pix`` into ``loss_dict`` and calls ``reduce_loss_dict``, the validation loop that
  averages per-image metric calls and tracks the best by ``better``);
* ``_message_logger``: what ``MessageLogger`` does with ``log_dict`` (``k: v:.4e`` per item;
  TensorBoard ``losses/<k>`` for keys starting with ``l_``).

Where basicsr *is* importable, ``test_real_basicsr_*`` run the real thing (20 iterations of
BasicSR's own train pipeline through ``python -m colorfid.basicsr``); elsewhere they skip with the
import error as the reason.
"""

from __future__ import annotations

import copy
import math
import os
import re
import subprocess
import sys
import types
import warnings
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

import colorfid
from colorfid.basicsr import (
    DEVIATION_SUFFIX,
    PREFIX,
    basicsr_metrics,
    check_options,
    get_basicsr_metric,
    register_archs,
    register_metrics,
    register_models,
)
from colorfid.basicsr import metrics as bm
from colorfid.basicsr.model import LossSum, loss_label, model_class
from colorfid.errors import (
    ColorfidWarning,
    ConfigError,
    DTypeError,
    MissingDependencyError,
    ShapeError,
    UnknownNameError,
    UsageError,
)
from colorfid.losses import BASICSR_LOSSES, ColorAwareLoss, SaturationLoss
from colorfid.metrics import METRICS, image_metrics
from colorfid.models import NAFNet, load_model

pytestmark = pytest.mark.usefixtures("one_torch_thread")

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "options" / "basicsr" / "nafnet_color.yml"


# ----------------------------------------------------------------------------------------------
# Stand-ins for BasicSR's conventions
# ----------------------------------------------------------------------------------------------


class _Registry:
    """BasicSR's registry semantics: register(obj) under obj.__name__, duplicates refused,
    get(name) raises KeyError for an unknown name."""

    def __init__(self, name: str) -> None:
        self._name, self._map = name, {}

    def register(self, obj=None):
        assert obj is not None
        name = obj.__name__
        assert name not in self._map, f"An object named '{name}' was already registered in '{self._name}' registry!"
        self._map[name] = obj

    def get(self, name):
        if name not in self._map:
            raise KeyError(f"No object named '{name}' found in '{self._name}' registry!")
        return self._map[name]

    def __contains__(self, name):
        return name in self._map

    def keys(self):
        return self._map.keys()


def _tensor2img(t: torch.Tensor) -> np.ndarray:
    """basicsr.utils.tensor2img(t) for one (1, 3, H, W) RGB float tensor: HWC BGR uint8."""
    x = t.squeeze(0).float().detach().cpu().clamp(0, 1).numpy().transpose(1, 2, 0)
    return (x[:, :, ::-1] * 255.0).round().astype(np.uint8)


def _calculate_metric(registry, data, opt):
    opt = copy.deepcopy(opt)
    return registry.get(opt.pop("type"))(**data, **opt)


def _rgb_float(bgr_uint8: np.ndarray) -> torch.Tensor:
    """The independent oracle's input: numpy flip BGR->RGB, /255 in float64, (3, H, W)."""
    rgb = np.ascontiguousarray(bgr_uint8[:, :, ::-1].transpose(2, 0, 1)).astype(np.float64) / 255.0
    return torch.from_numpy(rgb)


def _pair(seed: int, h: int = 37, w: int = 53) -> tuple[np.ndarray, np.ndarray]:
    """A GT with saturated patches and a noisy, slightly washed-out prediction (HWC BGR uint8)."""
    rng = np.random.default_rng(seed)
    gt = rng.integers(0, 256, (h, w, 3)).astype(np.float64)
    gt[: h // 2, : w // 2] = [20, 40, 230]  # a saturated red patch (BGR)
    gt[h // 2 :, w // 2 :] = [210, 120, 10]  # a saturated blue patch
    pred = 0.8 * gt + 0.2 * gt.mean(axis=2, keepdims=True) + rng.normal(0, 6, gt.shape)
    return np.clip(pred, 0, 255).round().astype(np.uint8), gt.astype(np.uint8)


@pytest.fixture(autouse=True)
def _fresh_cache():
    bm.clear_cache()
    yield
    bm.clear_cache()


# ----------------------------------------------------------------------------------------------
# Metrics: values
# ----------------------------------------------------------------------------------------------


def _expected(fn, ref):
    spec = fn.colorfid_spec
    v = ref[spec.key]
    return abs(v - spec.target) if spec.deviation else v


def _close(a: float, b: float, tol: float = 1e-9) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b or abs(a - b) <= tol


def test_every_metric_key_is_registered_once_with_a_prefix():
    fns = basicsr_metrics()
    keys = [f.colorfid_spec.key for f in fns.values() if not f.colorfid_spec.deviation]
    assert keys == list(METRICS)
    targets = [k for k, s in METRICS.items() if s.direction == "target"]
    assert sorted(n for n in fns if n.endswith(DEVIATION_SUFFIX)) == sorted(PREFIX + k + DEVIATION_SUFFIX for k in targets)
    for name, fn in fns.items():
        assert name.startswith(PREFIX) and fn.__name__ == name  # BasicSR registers by __name__
        assert fn.colorfid_spec.better in ("higher", "lower", "target")
        if fn.colorfid_spec.deviation:
            assert fn.colorfid_spec.better == "lower"
        else:
            assert fn.colorfid_spec.better == METRICS[fn.colorfid_spec.key].direction


@pytest.mark.parametrize("seed,h,w", [(0, 37, 53), (1, 64, 48), (2, 11, 12), (3, 9, 30)])
def test_basicsr_call_equals_image_metrics(seed, h, w, capsys):
    """The figure: every registered metric, called as BasicSR's validation calls it, equals
    colorfid.image_metrics on the RGB float images built independently (1e-9, float64)."""
    reg = _Registry("metric")
    register_metrics(reg)
    img, img2 = _pair(seed, h, w)
    ref = image_metrics(_rgb_float(img), _rgb_float(img2))
    worst = 0.0
    for name in basicsr_metrics():
        v = _calculate_metric(reg, {"img": img, "img2": img2}, {"type": name, "crop_border": 0, "test_y_channel": False})
        e = _expected(reg.get(name), ref)
        assert isinstance(v, float)
        assert _close(v, e), (name, v, e)
        if not math.isnan(e):
            worst = max(worst, abs(v - e))
    assert worst <= 1e-9
    with capsys.disabled():
        print(f"\n[parity {h}x{w}] max |basicsr call - image_metrics| over {len(basicsr_metrics())} metrics: {worst:.3g}")


def test_crop_border_and_chw_follow_basicsr():
    img, img2 = _pair(4, 40, 44)
    fn = get_basicsr_metric("colorfid_de00_p95")
    ref = image_metrics(_rgb_float(img[3:-3, 3:-3]), _rgb_float(img2[3:-3, 3:-3]))
    assert fn(img, img2, crop_border=3) == pytest.approx(ref["de00_p95"], abs=1e-12)
    chw, chw2 = img.transpose(2, 0, 1).copy(), img2.transpose(2, 0, 1).copy()
    assert fn(chw, chw2, crop_border=3, input_order="CHW") == pytest.approx(ref["de00_p95"], abs=1e-12)
    # the fork's positional call
    assert fn(img, img2, 3) == pytest.approx(ref["de00_p95"], abs=1e-12)


def test_bgr_is_flipped_hand_derived_red_to_yellow():
    """GT pure red and a pure-yellow prediction, handed over as BGR: BGR [0, 0, 255] is RGB red.
    Red -> yellow turns the hue counter-clockwise in a*b* (h_ab 40 deg -> 102 deg): drift > 0. Read
    without the flip the pair would be blue -> cyan (306 deg -> 197 deg): drift < 0."""
    gt = np.zeros((16, 16, 3), np.uint8)
    gt[..., 2] = 255  # BGR red
    pred = np.zeros((16, 16, 3), np.uint8)
    pred[..., 1:] = 255  # BGR [0, 255, 255] = RGB yellow
    rgb = lambda r, g, b: torch.tensor([r, g, b], dtype=torch.float64).view(3, 1, 1).expand(3, 16, 16).contiguous()
    red_yellow = image_metrics(rgb(1.0, 1.0, 0.0), rgb(1.0, 0.0, 0.0))
    blue_cyan = image_metrics(rgb(0.0, 1.0, 1.0), rgb(0.0, 0.0, 1.0))
    drift = get_basicsr_metric("colorfid_hue_drift_hc")(pred, gt)
    assert drift == red_yellow["hue_drift_hc"] and drift > 40
    assert blue_cyan["hue_drift_hc"] < -40
    # same image read as RGB (the fork with val.rgb2bgr: false) is the blue -> cyan pair
    assert get_basicsr_metric("colorfid_hue_drift_hc")(pred, gt, channel_order="RGB") == blue_cyan["hue_drift_hc"]
    # brightness of a pure colour is max(R, G, B): 1 / 1
    assert get_basicsr_metric("colorfid_brightness_ratio")(pred, gt) == 1.0


def test_deviation_is_distance_from_target():
    img, img2 = _pair(5)
    ref = image_metrics(_rgb_float(img), _rgb_float(img2))
    assert ref["sat_ratio_hc"] < 0.95  # the prediction is washed out
    dev = get_basicsr_metric("colorfid_sat_ratio_hc_deviation")(img, img2)
    assert dev == pytest.approx(1.0 - ref["sat_ratio_hc"], abs=1e-15)
    assert get_basicsr_metric("colorfid_hue_drift_hc_deviation")(img, img2) == abs(ref["hue_drift_hc"])


def test_protocol_option_changes_the_mask():
    img, img2 = _pair(6)
    from colorfid.metrics import MetricProtocol

    p = MetricProtocol(hc_saturation=0.3)
    ref = image_metrics(_rgb_float(img), _rgb_float(img2), protocol=p)
    fn = get_basicsr_metric("colorfid_hc_fraction")
    assert fn(img, img2, protocol={"hc_saturation": 0.3}) == ref["hc_fraction"]
    assert fn(img, img2) != ref["hc_fraction"]


# ----------------------------------------------------------------------------------------------
# Metrics: the one-pair cache
# ----------------------------------------------------------------------------------------------


def test_n_metrics_on_one_pair_compute_once(monkeypatch):
    calls = []
    real = image_metrics

    def counting(*a, **k):
        calls.append(1)
        return real(*a, **k)

    monkeypatch.setattr("colorfid.metrics.image_metrics", counting)
    img, img2 = _pair(7)
    for fn in basicsr_metrics().values():
        fn(img, img2)
    assert len(calls) == 1
    assert bm.cache_info() == {"hits": len(basicsr_metrics()) - 1, "misses": 1}


def test_cache_never_returns_another_images_numbers():
    fn = get_basicsr_metric("colorfid_de00_mean")
    img, img2 = _pair(8)
    first = fn(img, img2)
    # the same array object, changed in place (same id, same shape): must be recomputed
    img[:5] = 255 - img[:5]
    changed = fn(img, img2)
    assert changed != first
    assert changed == image_metrics(_rgb_float(img), _rgb_float(img2))["de00_mean"]
    # the GT changed in place
    img2[-3:] = 0
    assert fn(img, img2) == image_metrics(_rgb_float(img), _rgb_float(img2))["de00_mean"]
    # a new array with the first image's bytes at another address: the same numbers (a hit)
    bm.clear_cache()
    a, b = _pair(8)
    v = fn(a, b)
    assert fn(a.copy(), b.copy()) == v == first and bm.cache_info()["hits"] == 1
    # other options are another key
    assert fn(a, b, crop_border=2) == image_metrics(_rgb_float(a[2:-2, 2:-2]), _rgb_float(b[2:-2, 2:-2]))["de00_mean"]
    # swapped arguments are another pair
    assert fn(b, a) == image_metrics(_rgb_float(b), _rgb_float(a))["de00_mean"]


# ----------------------------------------------------------------------------------------------
# Metrics: bad input
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs,exc,match",
    [
        ({"input_order": "HCW"}, UnknownNameError, "input_order"),
        ({"channel_order": "GBR"}, UnknownNameError, "channel_order"),
        ({"test_y_channel": True}, ConfigError, "luma"),
        ({"crop_boder": 2}, ConfigError, "crop_boder"),
        ({"crop_border": -1}, ConfigError, "crop_border"),
        ({"crop_border": True}, ConfigError, "crop_border"),
        ({"crop_border": 20}, ShapeError, "no pixels"),
        ({"better": "higher"}, ConfigError, "contradicts"),
        ({"better": "best"}, ConfigError, "better"),
        ({"protocol": {"hc_sat": 0.4}}, ConfigError, "protocol"),
        ({"input_order": "CHW"}, ShapeError, "3 channels"),
    ],
)
def test_bad_options_raise(kwargs, exc, match):
    img, img2 = _pair(9, 30, 40)
    with pytest.raises(exc, match=match):
        get_basicsr_metric("colorfid_de00_p95")(img, img2, **kwargs)


def test_target_metric_refuses_higher_or_lower():
    img, img2 = _pair(9, 30, 40)
    with pytest.raises(ConfigError, match="_deviation"):
        get_basicsr_metric("colorfid_sat_ratio_hc")(img, img2, better="higher")
    assert get_basicsr_metric("colorfid_sat_ratio_hc")(img, img2, better="target") > 0


@pytest.mark.parametrize(
    "img,img2,exc,match",
    [
        (np.zeros((8, 8, 3), np.float32), np.zeros((8, 8, 3), np.uint8), DTypeError, "uint8"),
        (np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8, 3), np.uint16), DTypeError, "img2.*uint8"),
        (torch.zeros(1, 3, 8, 8), np.zeros((8, 8, 3), np.uint8), DTypeError, "use_image"),
        (np.zeros((8, 8), np.uint8), np.zeros((8, 8), np.uint8), ShapeError, "greyscale"),
        (np.zeros((8, 8, 3), np.uint8), np.zeros((8, 9, 3), np.uint8), ShapeError, "differ in shape"),
        (np.zeros((8, 8, 4), np.uint8), np.zeros((8, 8, 4), np.uint8), ShapeError, "3 channels"),
        (np.zeros((8, 8, 3), np.uint8), None, ConfigError, "ground truth"),
    ],
)
def test_bad_images_raise(img, img2, exc, match):
    with pytest.raises(exc, match=match):
        get_basicsr_metric("colorfid_psnr")(img, img2)


def test_unknown_metric_name_raises_with_a_hint():
    with pytest.raises(UnknownNameError, match="did you mean 'colorfid_sat_ratio_hc'"):
        get_basicsr_metric("colorfid_sat_ratio_hcc")


# ----------------------------------------------------------------------------------------------
# Registration
# ----------------------------------------------------------------------------------------------


def test_register_metrics_is_idempotent_and_refuses_a_different_object():
    reg = _Registry("metric")

    def calculate_psnr(img, img2, crop_border, **kw):  # BasicSR's own names are untouched
        return 0.0

    reg.register(calculate_psnr)
    added = register_metrics(reg)
    assert added == list(basicsr_metrics()) and "calculate_psnr" in reg
    assert register_metrics(reg) == []

    other = _Registry("metric")

    def colorfid_psnr(img, img2, **kw):
        return 0.0

    other.register(colorfid_psnr)
    with pytest.raises(UsageError, match="different 'colorfid_psnr'"):
        register_metrics(other)


def test_register_into_the_forks_namespace():
    ns = types.ModuleType("basicsr.metrics")
    assert register_metrics(ns) == list(basicsr_metrics())
    assert ns.colorfid_de00_p95 is get_basicsr_metric("colorfid_de00_p95")
    img, img2 = _pair(10)
    opt = {"type": "colorfid_de00_p95", "crop_border": 0}
    o = copy.deepcopy(opt)
    v = getattr(ns, o.pop("type"))(img, img2, **o)  # the fork's call
    assert v == image_metrics(_rgb_float(img), _rgb_float(img2))["de00_p95"]


def test_register_archs_builds_networks_from_yaml_and_checkpoints_move():
    reg = _Registry("arch")
    assert register_archs(reg) == ["NAFNet", "NAFNetLocal"]
    assert register_archs(reg) == []
    net_opt = dict(yaml.safe_load(EXAMPLE.read_text())["network_g"])
    net = reg.get(net_opt.pop("type"))(**net_opt)  # basicsr.archs.build_network
    assert isinstance(net, NAFNet)


def test_checkpoint_layout_loads_strictly_both_ways(tmp_path):
    net_opt = dict(yaml.safe_load(EXAMPLE.read_text())["network_g"])
    net_opt.pop("type")
    torch.manual_seed(0)
    net = NAFNet(**net_opt)
    # BasicSR's save_network with EMA: {'params': sd, 'params_ema': sd}, 'module.' stripped
    sd = {k: v.clone() for k, v in net.state_dict().items()}
    ema = {k: v + 1e-3 for k, v in sd.items()}
    path = tmp_path / "net_g_20.pth"
    torch.save({"params": sd, "params_ema": ema}, path)
    m = load_model(path, param_key="params")
    assert all(torch.equal(m.state_dict()[k], sd[k]) for k in sd)
    m2 = load_model(path)  # the EMA weights by default: what BasicSR's validation scored
    assert all(torch.equal(m2.state_dict()[k], ema[k]) for k in sd)
    m3 = load_model(path, param_key="params_ema")
    assert all(torch.equal(m3.state_dict()[k], ema[k]) for k in sd)
    # colorfid -> BasicSR: load_network(strict=True) on the registered arch
    other = NAFNet(**net_opt)
    other.load_state_dict(torch.load(path, weights_only=True)["params"], strict=True)


# ----------------------------------------------------------------------------------------------
# Model types against BasicSR's SRModel / the fork's ImageRestorationModel conventions
# ----------------------------------------------------------------------------------------------

_LOSSES = _Registry("loss")
for _cls in BASICSR_LOSSES.values():
    _LOSSES.register(_cls)


class L1Loss(torch.nn.Module):  # BasicSR's L1Loss contract: loss_weight * mean |pred - target|
    def __init__(self, loss_weight=1.0, reduction="mean"):
        super().__init__()
        self.loss_weight = loss_weight

    def forward(self, pred, target, weight=None, **kwargs):
        return self.loss_weight * (pred - target).abs().mean()


_LOSSES.register(L1Loss)


def _build_loss(spec, key=None):  # basicsr.losses.build_loss
    spec = copy.deepcopy(spec)
    return _LOSSES.get(spec.pop("type"))(**spec)


class _FakeSRModel:
    """SRModel's behaviour that colorfid's model types rely on (BasicSR 1.4.2)."""

    def __init__(self, opt):
        self.opt = opt
        self.device = torch.device("cpu")
        self.is_train = opt["is_train"]
        self.optimizers, self.schedulers = [], []
        net_opt = dict(opt["network_g"])
        net_opt.pop("type")
        torch.manual_seed(0)
        self.net_g = NAFNet(**net_opt)
        if self.is_train:
            self.init_training_settings()

    def init_training_settings(self):
        train_opt = self.opt["train"]
        self.cri_pix = _build_loss(train_opt["pixel_opt"]) if train_opt.get("pixel_opt") else None
        self.cri_perceptual = None
        if self.cri_pix is None and self.cri_perceptual is None:
            raise ValueError("Both pixel and perceptual losses are None.")
        self.optimizer_g = torch.optim.Adam(self.net_g.parameters(), lr=train_opt["optim_g"]["lr"])

    def feed_data(self, data):
        self.lq, self.gt = data["lq"], data["gt"]

    def optimize_parameters(self, current_iter):
        self.optimizer_g.zero_grad()
        self.output = self.net_g(self.lq)
        l_total = 0
        loss_dict = OrderedDict()
        if self.cri_pix:
            l_pix = self.cri_pix(self.output, self.gt)
            l_total += l_pix
            loss_dict["l_pix"] = l_pix
        l_total.backward()
        self.l_total_seen = float(l_total.detach())
        self.optimizer_g.step()
        self.log_dict = self.reduce_loss_dict(loss_dict)

    def reduce_loss_dict(self, loss_dict):
        with torch.no_grad():
            stacked = torch.stack(list(loss_dict.values()), 0)  # what the DDP branch does
            assert stacked.shape == (len(loss_dict),)
            return OrderedDict((k, v.mean().item()) for k, v in loss_dict.items())

    def get_current_log(self):
        return self.log_dict

    def test(self):
        with torch.no_grad():
            self.output = self.net_g(self.lq)

    def _initialize_best_metric_results(self, dataset_name):
        if hasattr(self, "best_metric_results") and dataset_name in self.best_metric_results:
            return
        elif not hasattr(self, "best_metric_results"):
            self.best_metric_results = dict()
        record = dict()
        for metric, content in self.opt["val"]["metrics"].items():
            better = content.get("better", "higher")
            record[metric] = dict(better=better, val=float("-inf") if better == "higher" else float("inf"), iter=-1)
        self.best_metric_results[dataset_name] = record

    def _update_best_metric_result(self, dataset_name, metric, val, current_iter):
        r = self.best_metric_results[dataset_name][metric]
        if r["better"] == "higher":
            if val >= r["val"]:
                r["val"], r["iter"] = val, current_iter
        elif val <= r["val"]:
            r["val"], r["iter"] = val, current_iter

    def nondist_validation(self, pairs, current_iter, registry):
        dataset_name = "val"
        self.metric_results = {m: 0 for m in self.opt["val"]["metrics"]}
        self._initialize_best_metric_results(dataset_name)
        for idx, (lq, gt) in enumerate(pairs):
            self.feed_data({"lq": lq, "gt": gt})
            self.test()
            data = {"img": _tensor2img(self.output), "img2": _tensor2img(self.gt)}
            for name, opt_ in self.opt["val"]["metrics"].items():
                self.metric_results[name] += _calculate_metric(registry, data, opt_)
        for metric in self.metric_results:
            self.metric_results[metric] /= idx + 1
            self._update_best_metric_result(dataset_name, metric, self.metric_results[metric], current_iter)
        return dict(self.metric_results)


def _message_logger(log_vars, tb):
    """MessageLogger.__call__: 'k: v:.4e' per item; TensorBoard losses/<k> for keys 'l_*'."""
    parts = []
    for k, v in log_vars.items():
        parts.append(f"{k}: {v:.4e}")
        tb[f"losses/{k}" if k.startswith("l_") else k] = v
    return " ".join(parts)


def _batches(n, seed=0, size=32, batch=2):
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        gt = torch.rand(batch, 3, size, size, generator=g)
        gt[:, :, : size // 2] = torch.tensor([0.1, 0.3, 0.9]).view(1, 3, 1, 1)  # saturated wall
        lq = (0.8 * gt + 0.2 * gt.mean(1, keepdim=True)).clamp(0, 1)
        out.append({"lq": lq, "gt": gt})
    return out


def _opt(**train_extra):
    opt = {
        "name": "t", "model_type": "ColorfidSRModel", "is_train": True, "dist": False,
        "network_g": {"type": "NAFNet", "width": 8, "enc_blk_nums": [1], "middle_blk_num": 1, "dec_blk_nums": [1]},
        "path": {},
        "train": {
            "optim_g": {"type": "Adam", "lr": 1e-3},
            "pixel_opt": {"type": "ColorAwareLoss", "loss_weight": 1.0, "deficit_weight": 1.0},
            **train_extra,
        },
        "val": {"metrics": {
            "psnr": {"type": "colorfid_psnr"},
            "sat_ratio_hc": {"type": "colorfid_sat_ratio_hc"},
            "sat_ratio_hc_dev": {"type": "colorfid_sat_ratio_hc_deviation"},
            "hue_shift_hc_p95": {"type": "colorfid_hue_shift_hc_p95"},
            "de00_p95": {"type": "colorfid_de00_p95", "better": "lower"},
        }},
    }
    return opt


def _model(opt, base=_FakeSRModel, name="ColorfidSRModel", flavour="upstream"):
    return model_class(base, name, _build_loss, flavour)(opt)


def test_twenty_iterations_log_every_component_and_colour_validation():
    """The second figure, on BasicSR's conventions: 20 iterations log every ColorAwareLoss term
    (and a second *_opt loss), validation reports sat_ratio_hc, hue_shift_hc_p95 and de00_p95."""
    model = _model(_opt(sat_opt={"type": "SaturationLoss", "loss_weight": 0.5}))
    assert isinstance(model.cri_pix, LossSum)
    tb: dict[str, float] = {}
    pixel = model.cri_pix.losses["pixel_opt"]
    for it, batch in enumerate(_batches(20), start=1):
        model.feed_data(batch)
        model.optimize_parameters(it)
        log = model.get_current_log()
        line = _message_logger(dict(log), tb)
        # l_pix is the pixel loss alone; the base's total (what was backpropagated) is the sum
        assert log["l_pix"] + log["l_sat"] == pytest.approx(model.l_total_seen, rel=1e-6)
        comps = pixel.components
        assert log["l_pix"] == pytest.approx(comps["total"], rel=1e-6)
        for term in ColorAwareLoss.TERMS:
            assert log[f"l_pix_{term}"] == pytest.approx(comps[term], rel=1e-6)
    assert list(log) == ["l_pix", *[f"l_pix_{t}" for t in ("l1", "chroma", "hue", "deficit", "delta_e", "ssim")], "l_sat"]
    assert all(f"losses/l_pix_{t}" in tb for t in ColorAwareLoss.TERMS) and "losses/l_sat" in tb
    assert "l_pix_hue: " in line
    reg = _Registry("metric")
    register_metrics(reg)
    pairs = [(b["lq"][:1], b["gt"][:1]) for b in _batches(3, seed=1, size=40)]
    res = model.nondist_validation(pairs, 20, reg)
    # the per-image average equals colorfid's per-image numbers averaged
    ref = {k: 0.0 for k in ("sat_ratio_hc", "hue_shift_hc_p95", "de00_p95", "psnr")}
    with torch.no_grad():
        for lq, gt in pairs:
            m = image_metrics(_rgb_float(_tensor2img(model.net_g(lq))), _rgb_float(_tensor2img(gt)))
            for k in ref:
                ref[k] += m[k] / len(pairs)
    for k in ref:
        assert res[k] == pytest.approx(ref[k], abs=1e-9)
    best = model.best_metric_results["val"]
    assert best["de00_p95"]["better"] == "lower" and best["hue_shift_hc_p95"]["better"] == "lower"  # inferred
    assert best["sat_ratio_hc"]["better"] == "target" and best["sat_ratio_hc"]["iter"] == 20
    assert best["psnr"]["better"] == "higher"


def test_best_tracking_understands_target_and_colorfid_directions():
    model = _model(_opt())
    model._initialize_best_metric_results("v")
    for it, (sat, de) in enumerate([(0.80, 9.0), (1.05, 7.0), (0.97, 8.0), (1.20, 6.5)], start=1):
        model._update_best_metric_result("v", "sat_ratio_hc", sat, it)
        model._update_best_metric_result("v", "de00_p95", de, it)
    best = model.best_metric_results["v"]
    assert (best["sat_ratio_hc"]["val"], best["sat_ratio_hc"]["iter"]) == (0.97, 3)  # closest to 1.0
    assert (best["de00_p95"]["val"], best["de00_p95"]["iter"]) == (6.5, 4)  # lowest, though better: omitted
    model._update_best_metric_result("v", "sat_ratio_hc", float("nan"), 5)
    assert best["sat_ratio_hc"]["iter"] == 3


def test_loss_schedule_ramps_terms_and_whole_losses():
    sched = {"stages": [{"start": 0, "weights": {"hue": 0.0, "sat_opt": 0.0}},
                        {"start": 3, "weights": {"hue": 4.0, "sat_opt": 1.0}, "warmup": 2}]}
    model = _model(_opt(sat_opt={"type": "SaturationLoss"}, loss_schedule=sched))
    seen = []
    for it, batch in enumerate(_batches(6), start=1):
        model.feed_data(batch)
        model.optimize_parameters(it)
        seen.append((model.cri_pix.losses["pixel_opt"].term_weights["hue"], model.cri_pix.outer["sat_opt"],
                     model.get_current_log()["l_sat"]))
    assert [s[0] for s in seen] == [0.0, 0.0, 0.0, 2.0, 4.0, 4.0]
    assert [s[1] for s in seen] == [0.0, 0.0, 0.0, 0.5, 1.0, 1.0]
    assert seen[0][2] == 0.0 and seen[4][2] > 0
    with pytest.raises(UnknownNameError, match="hues"):
        _model(_opt(loss_schedule={"stages": [{"start": 0, "weights": {"hues": 1.0}}]}))


def test_extra_loss_errors_name_the_key():
    with pytest.raises(ConfigError, match="train.color_opt"):
        _model(_opt(color_opt={"type": "NoSuchLoss"}))
    with pytest.raises(ConfigError, match="train.color_opt: needs a type"):
        _model(_opt(color_opt={"loss_weight": 1.0}))
    with pytest.raises(ConfigError, match="l_pix_hue"):
        _model(_opt(pix_hue_opt={"type": "SaturationLoss"}))


class _FakeForkModel(_FakeSRModel):
    """The fork's ImageRestorationModel: optimize_parameters(current_iter, tb_logger); a network
    returning a list is scored output by output into one l_pix."""

    def optimize_parameters(self, current_iter, tb_logger):
        self.optimizer_g.zero_grad()
        out = self.net_g(self.lq)
        preds = [out * 0.5 + self.lq * 0.5, out]  # a multi-output network
        self.output = preds[-1]
        l_total = 0
        loss_dict = OrderedDict()
        if self.cri_pix:
            l_pix = 0.0
            for pred in preds:
                l_pix += self.cri_pix(pred, self.gt)
            l_total += l_pix
            loss_dict["l_pix"] = l_pix
        l_total = l_total + 0.0 * sum(p.sum() for p in self.net_g.parameters())
        l_total.backward()
        self.l_total_seen = float(l_total.detach())
        self.optimizer_g.step()
        self.log_dict = self.reduce_loss_dict(loss_dict)


def test_fork_model_adds_components_over_multi_output_calls():
    opt = _opt()
    opt["model_type"] = "ColorfidImageRestorationModel"
    opt["datasets"] = {"train": {"num_worker_per_gpu": 1}}
    model = _model(opt, base=_FakeForkModel, name="ColorfidImageRestorationModel", flavour="nafnet")
    pixel = model.cri_pix.losses["pixel_opt"]
    batch = _batches(1)[0]
    model.feed_data(batch)
    model.optimize_parameters(1, None)
    log = model.get_current_log()
    assert log["l_pix"] == pytest.approx(model.l_total_seen, rel=1e-6)
    assert set(log) == {"l_pix", *(f"l_pix_{t}" for t in ColorAwareLoss.TERMS)}
    assert log["l_pix_l1"] > pixel.components["l1"]  # two calls added up


def test_fork_registration_injects_the_model_type():
    ns = types.ModuleType("basicsr.models.image_restoration_model")
    ns.ImageRestorationModel = _FakeForkModel
    assert register_models(ns, which="nafnet") == ["ColorfidImageRestorationModel"]
    assert issubclass(ns.ColorfidImageRestorationModel, _FakeForkModel)
    assert register_models(ns, which="nafnet") == []


def test_upstream_registration_of_the_model_type():
    reg = _Registry("model")
    assert register_models(reg, base=_FakeSRModel, which="upstream") == ["ColorfidSRModel"]
    assert register_models(reg, base=_FakeSRModel, which="upstream") == []
    assert reg.get("ColorfidSRModel").__name__ == "ColorfidSRModel"


def test_loss_labels_follow_basicsr():
    assert [loss_label(k) for k in ("pixel_opt", "perceptual_opt", "color_opt")] == ["l_pix", "l_percep", "l_color"]
    s = LossSum({"pixel_opt": ColorAwareLoss(), "sat_opt": SaturationLoss()})
    p, t = torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 16)
    total = s(p, t)
    merged = s.merge_into(OrderedDict([("l_pix", total), ("l_percep", torch.tensor(0.5))]))
    assert list(merged)[0] == "l_pix" and list(merged)[-1] == "l_percep" and "l_sat" in merged
    assert float(merged["l_pix"] + merged["l_sat"]) == pytest.approx(float(total))
    assert s.take() == OrderedDict()


# ----------------------------------------------------------------------------------------------
# Options
# ----------------------------------------------------------------------------------------------


def test_example_yaml_parses_and_every_name_resolves():
    opt = yaml.safe_load(EXAMPLE.read_text())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert check_options(opt, flavour="upstream", source=str(EXAMPLE)) == []
    assert opt["model_type"] == "ColorfidSRModel"
    assert opt["train"]["pixel_opt"]["type"] in BASICSR_LOSSES
    ColorAwareLoss(**{k: v for k, v in opt["train"]["pixel_opt"].items() if k != "type"})
    kinds = [m["type"] for m in opt["val"]["metrics"].values()]
    for k in ("colorfid_sat_ratio_hc", "colorfid_hue_shift_hc_p95", "colorfid_de00_p95"):
        assert k in kinds
    for k in kinds:
        if k.startswith(PREFIX):
            get_basicsr_metric(k)
    for part in ("train", "val"):
        d = opt["datasets"][part]
        assert (ROOT / d["dataroot_gt"]).is_dir() and (ROOT / d["dataroot_lq"]).is_dir()
    assert opt["train"]["optim_g"]["type"] == "Adam"  # BasicSR 1.4.2 knows no other


def test_fork_example_yaml_passes_the_fork_checks():
    path = ROOT / "options" / "basicsr" / "nafnet_fork_color.yml"
    opt = yaml.safe_load(path.read_text())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert check_options(opt, flavour="nafnet", source=str(path)) == []
    assert opt["model_type"] == "ColorfidImageRestorationModel"
    assert opt["path"]["param_key"] == "params" and "param_key_g" not in opt["path"]
    assert opt["datasets"]["train"]["use_flip"] is True and opt["datasets"]["train"]["num_worker_per_gpu"] >= 1
    assert opt["val"]["use_image"] is True
    net = dict(opt["network_g"])
    assert isinstance(NAFNet(**{k: v for k, v in net.items() if k != "type"}), NAFNet)  # the fork's arguments


def test_finetune_yaml_names_both_param_keys_and_colorfid_accepts_it():
    from colorfid.train.options import load_options

    text = (ROOT / "options" / "finetune_nafnet_color.yml").read_text()
    raw = yaml.safe_load(text)
    assert raw["path"]["param_key"] == "params"  # NAFNet's fork reads this one
    assert raw["path"]["param_key_g"] == "params"  # upstream BasicSR this one
    assert "num_worker_per_gpu" in text
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ColorfidWarning)
        opt = load_options(ROOT / "options" / "finetune_nafnet_color.yml", cwd=ROOT)
    assert opt["path"]["param_key_g"] == "params"


def _metrics_opt(model_type, **metrics):
    return {"model_type": model_type, "val": {"metrics": metrics}}


def test_check_options_catches_what_basicsr_gets_wrong_silently():
    with pytest.raises(ConfigError, match="better: lower"):
        check_options(_metrics_opt("SRModel", de={"type": "colorfid_de00_p95"}))
    check_options(_metrics_opt("SRModel", de={"type": "colorfid_de00_p95", "better": "lower"}))
    check_options(_metrics_opt("ColorfidSRModel", de={"type": "colorfid_de00_p95"}))  # inferred
    with pytest.warns(ColorfidWarning, match="ColorfidSRModel"):
        check_options(_metrics_opt("SRModel", s={"type": "colorfid_sat_ratio_hc"}))
    with pytest.raises(UnknownNameError, match="val.metrics.s.*did you mean"):
        check_options(_metrics_opt("ColorfidSRModel", s={"type": "colorfid_sat_ratio_hcc"}))
    with pytest.raises(ConfigError, match="crop_boder"):
        check_options(_metrics_opt("ColorfidSRModel", s={"type": "colorfid_psnr", "crop_boder": 4}))
    with pytest.raises(ConfigError, match="luma"):
        check_options(_metrics_opt("ColorfidSRModel", s={"type": "colorfid_psnr", "test_y_channel": True}))
    with pytest.raises(ConfigError, match="_deviation"):
        check_options(_metrics_opt("ColorfidSRModel", s={"type": "colorfid_sat_ratio_hc", "better": "higher"}))
    # NAFNet's fork
    fork = _metrics_opt("ColorfidImageRestorationModel", s={"type": "colorfid_psnr"})
    fork["val"]["use_image"] = False
    with pytest.raises(ConfigError, match="use_image"):
        check_options(fork, flavour="nafnet")
    fork = {"train": {}, "datasets": {"train": {"num_worker_per_gpu": 0}}}
    with pytest.raises(ConfigError, match="persistent_workers"):
        check_options(fork, flavour="nafnet")
    with pytest.warns(ColorfidWarning, match="param_key"):
        check_options({"path": {"pretrain_network_g": "x.pth", "param_key_g": "params"}}, flavour="nafnet")
    with pytest.warns(ColorfidWarning, match="param_key_g"):
        check_options({"path": {"pretrain_network_g": "x.pth", "param_key": "params"}}, flavour="upstream")


def test_readme_lists_every_metric_with_its_direction():
    text = (ROOT / "README.md").read_text()
    sec = text[text.index("## Using colorfid from BasicSR"):]
    rows = dict(re.findall(r"^\| `(colorfid_\w+)` \| (\w+)", sec, flags=re.M))
    want = {n: (f.colorfid_spec.basicsr_better or "target") for n, f in basicsr_metrics().items()}
    assert rows == want


# ----------------------------------------------------------------------------------------------
# Entry point and the real BasicSR
# ----------------------------------------------------------------------------------------------


def _basicsr_flavour():
    from colorfid.basicsr import flavour

    try:
        return flavour(), None
    except MissingDependencyError as exc:
        return None, str(exc)


def test_entry_point_without_basicsr_is_a_usage_error(capsys):
    which, why = _basicsr_flavour()
    if which is not None:
        pytest.skip("basicsr is importable here; test_real_basicsr_* cover the entry point")
    from colorfid.basicsr.__main__ import main

    assert main(["-opt", str(EXAMPLE)]) == 2
    assert "cannot import basicsr" in capsys.readouterr().err
    assert main([]) == 2


def test_top_level_export():
    assert colorfid.register_basicsr_all is colorfid.basicsr.register_all


def _real_or_skip():
    which, why = _basicsr_flavour()
    if which != "upstream":
        pytest.skip(f"needs upstream basicsr importable: {why or which}")


def test_real_basicsr_metric_parity():
    _real_or_skip()
    from colorfid.basicsr import register_all

    register_all()
    from basicsr.metrics import calculate_metric
    from basicsr.utils import tensor2img

    g = torch.Generator().manual_seed(3)
    out, gt = torch.rand(1, 3, 30, 41, generator=g), torch.rand(1, 3, 30, 41, generator=g)
    data = {"img": tensor2img([out]), "img2": tensor2img([gt])}
    ref = image_metrics(_rgb_float(data["img"]), _rgb_float(data["img2"]))
    for name, fn in basicsr_metrics().items():
        assert _close(calculate_metric(data, {"type": name, "crop_border": 0}), _expected(fn, ref))


@pytest.mark.slow
def test_real_basicsr_twenty_iterations(tmp_path):
    """BasicSR's own train pipeline, 20 iterations on CPU via python -m colorfid.basicsr: the log
    has every ColorAwareLoss term and the colour metrics of validation."""
    _real_or_skip()
    opt = yaml.safe_load(EXAMPLE.read_text())
    opt["name"] = "real20"
    opt["num_gpu"] = 0
    opt["network_g"].update(width=8, enc_blk_nums=[1, 1], dec_blk_nums=[1, 1], middle_blk_num=1)
    t = opt["datasets"]["train"]
    t.update(dataroot_gt=str(ROOT / t["dataroot_gt"]), dataroot_lq=str(ROOT / t["dataroot_lq"]), gt_size=32,
             batch_size_per_gpu=2, num_worker_per_gpu=0, dataset_enlarge_ratio=1)
    v = opt["datasets"]["val"]
    v.update(dataroot_gt=str(ROOT / v["dataroot_gt"]), dataroot_lq=str(ROOT / v["dataroot_lq"]))
    opt["train"].update(total_iter=20)
    opt["train"]["scheduler"]["periods"] = [20]
    opt["val"]["val_freq"] = 10
    opt["logger"].update(print_freq=5, save_checkpoint_freq=20, use_tb_logger=False)
    path = tmp_path / "real20.yml"
    path.write_text(yaml.safe_dump(opt))
    env = dict(os.environ, OMP_NUM_THREADS="2")
    r = subprocess.run([sys.executable, "-m", "colorfid.basicsr", "-opt", str(path)], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=1800)
    assert r.returncode == 0, r.stderr[-3000:]
    log = next((tmp_path / "experiments" / "real20").glob("train_real20_*.log")).read_text()
    for term in ("l1", "chroma", "hue", "deficit", "delta_e", "ssim"):
        assert f"l_pix_{term}: " in log
    for k in ("sat_ratio_hc", "hue_shift_hc_p95", "de00_p95"):
        assert re.search(rf"# {k}: \d", log), k
    assert load_model(tmp_path / "experiments" / "real20" / "models" / "net_g_20.pth") is not None
