"""colorfid.train.options: the NAFNet/BasicSR YAML layout, validation, unknown keys, paths."""

from __future__ import annotations

import os
import textwrap
import warnings
from pathlib import Path

import pytest

from colorfid.errors import ColorfidWarning, ConfigError
from colorfid.train.options import load_options, parse_options


def _minimal(**over):
    opt = {
        "name": "exp",
        "datasets": {"train": {"dataroot_gt": "data/gt", "dataroot_lq": "data/lq", "batch_size_per_gpu": 2}},
        "network_g": {"type": "NAFNet", "width": 8},
        "train": {"optim_g": {"type": "AdamW", "lr": 1e-3}, "total_iter": 10, "pixel_opt": {"type": "L1Loss"}},
    }
    for k, v in over.items():
        opt[k] = v
    return opt


def _parse(raw, tmp_path=None):
    with warnings.catch_warnings():
        warnings.simplefilter("error", ColorfidWarning)
        return parse_options(raw, source="opt.yml", cwd=tmp_path)


# A team's NAFNet YAML (the official SIDD width-32 options, disk backend), verbatim in layout.
NAFNET_YAML = """\
# general settings
name: NAFNet-SIDD-width32
model_type: ImageRestorationModel
scale: 1
num_gpu: 8
manual_seed: 10

datasets:
  train:
    name: SIDD
    type: PairedImageDataset
    dataroot_gt: ./datasets/SIDD/train/gt_crops
    dataroot_lq: ./datasets/SIDD/train/input_crops
    filename_tmpl: '{}'
    io_backend:
      type: disk
    gt_size: 256
    use_flip: false
    use_rot: false
    use_shuffle: true
    num_worker_per_gpu: 8
    batch_size_per_gpu: 4
    dataset_enlarge_ratio: 1
    prefetch_mode: ~

  val:
    name: SIDD_val
    type: PairedImageDataset
    dataroot_gt: ./datasets/SIDD/val/gt_crops
    dataroot_lq: ./datasets/SIDD/val/input_crops
    io_backend:
      type: disk

network_g:
  type: NAFNet
  width: 32
  enc_blk_nums: [2, 2, 4, 8]
  middle_blk_num: 12
  dec_blk_nums: [2, 2, 2, 2]

path:
  pretrain_network_g: ~
  strict_load_g: true
  resume_state: ~

train:
  optim_g:
    type: AdamW
    lr: !!float 1e-3
    weight_decay: 0.
    betas: [0.9, 0.9]
  scheduler:
    type: TrueCosineAnnealingLR
    T_max: 200000
    eta_min: !!float 1e-7
  total_iter: 200000
  warmup_iter: -1 # no warm up
  pixel_opt:
    type: PSNRLoss
    loss_weight: 1
    reduction: mean

val:
  val_freq: !!float 2e4
  save_img: false
  use_image: false
  metrics:
    psnr:
      type: calculate_psnr
      crop_border: 0
      test_y_channel: false

logger:
  print_freq: 200
  save_checkpoint_freq: !!float 5e3
  use_tb_logger: true
  wandb:
    project: ~
    resume_id: ~

dist_params:
  backend: nccl
  port: 29500
"""


def test_nafnet_yaml_parses_with_one_warning_listing_unsupported_keys(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "o.yml").write_text(NAFNET_YAML)
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        opt = load_options("o.yml")
    ours = [w for w in rec if issubclass(w.category, ColorfidWarning)]
    assert len(ours) == 1, [str(w.message) for w in rec]
    msg = str(ours[0].message)
    for key in ("val.save_img", "val.use_image", "val.metrics"):
        assert key in msg
    assert "logger.wandb" not in msg  # wandb with project ~ is off in BasicSR too: nothing is lost
    assert "o.yml" in msg
    # values converted: !!float 2e4 -> int, 1e-3 float, warmup -1 -> none
    assert opt["val"]["val_freq"] == 20000 and isinstance(opt["val"]["val_freq"], int)
    assert opt["logger"]["save_checkpoint_freq"] == 5000
    assert opt["train"]["optim_g"]["lr"] == pytest.approx(1e-3)
    assert opt["train"]["optim_g"]["betas"] == [0.9, 0.9]
    assert opt["train"]["warmup_iter"] == 0
    assert opt["train"]["scheduler"] == {"type": "TrueCosineAnnealingLR", "eta_min": pytest.approx(1e-7), "T_max": 200000}
    assert opt["datasets"]["train"]["use_hflip"] is False and opt["datasets"]["train"]["use_rot"] is False
    assert set(opt["datasets"]["val"]) == {"val"}
    assert opt["network_g"] == {"type": "NAFNet", "width": 32, "enc_blk_nums": [2, 2, 4, 8], "middle_blk_num": 12,
                                "dec_blk_nums": [2, 2, 2, 2]}
    assert opt["train"]["losses"]["pixel_opt"]["type"] == "PSNRLoss"
    assert opt["train"]["grad_clip_norm"] is None  # never a hidden 0.01


def test_relative_paths_resolve_against_cwd_like_basicsr(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    opt = _parse(_minimal())
    assert opt["datasets"]["train"]["dataroot_gt"] == tmp_path.resolve() / "data" / "gt"
    assert opt["path"]["experiments_root"] == tmp_path.resolve() / "experiments" / "exp"
    assert opt["path"]["models"] == tmp_path.resolve() / "experiments" / "exp" / "models"
    other = tmp_path / "elsewhere"
    other.mkdir()
    opt2 = parse_options(_minimal(), cwd=other)
    assert opt2["datasets"]["train"]["dataroot_gt"] == other.resolve() / "data" / "gt"
    raw = _minimal(path={"experiments_root": "/abs/exp", "pretrain_network_g": "~/w.pth"})
    opt3 = _parse(raw, tmp_path)
    assert opt3["path"]["experiments_root"] == Path("/abs/exp")
    assert opt3["path"]["pretrain_network_g"] == Path(os.path.expanduser("~/w.pth"))


def test_defaults_are_filled(tmp_path):
    opt = _parse(_minimal(), tmp_path)
    d = opt["datasets"]["train"]
    assert d["gt_size"] is None and d["use_hflip"] and d["use_rot"] and d["num_worker_per_gpu"] == 0
    assert d["color_jitter"] is None and d["degradation"] is None
    t = opt["train"]
    assert t["ema_decay"] == 0.0 and t["amp"] == "auto" and t["max_nonfinite_steps"] == 10
    assert t["scheduler"] is None and t["loss_schedule"] is None
    assert opt["logger"] == {"print_freq": 100, "save_checkpoint_freq": 5000, "use_tb_logger": False}
    assert opt["val"] is None and opt["path"]["auto_resume"] is False and opt["path"]["param_key_g"] == "params"
    assert opt["unknown_keys"] == []


def test_yaml11_string_floats_are_numbers(tmp_path):
    raw = _minimal()
    raw["train"]["optim_g"]["lr"] = "2e-4"  # PyYAML reads 2e-4 (no dot) as a string
    assert _parse(raw, tmp_path)["train"]["optim_g"]["lr"] == pytest.approx(2e-4)


@pytest.mark.parametrize(
    "mutate, key",
    [
        (lambda o: o["train"]["optim_g"].update(lr="fast"), "train.optim_g.lr"),
        (lambda o: o["train"]["optim_g"].update(lr=-1), "train.optim_g.lr"),
        (lambda o: o["train"]["optim_g"].update(type="SGD"), "train.optim_g.type"),
        (lambda o: o["train"].update(total_iter=0), "train.total_iter"),
        (lambda o: o["train"].update(total_iter=2.5), "train.total_iter"),
        (lambda o: o["train"].update(use_grad_clip=True), "train.use_grad_clip"),
        (lambda o: o["train"].update(grad_clip_norm=0), "train.grad_clip_norm"),
        (lambda o: o["train"].update(ema_decay=1.0), "train.ema_decay"),
        (lambda o: o["train"].update(amp="fp8"), "train.amp"),
        (lambda o: o["train"].update(scheduler={"type": "CosineAnnealingRestartLR", "periods": [4, 4]}),
         "train.scheduler.periods"),
        (lambda o: o["train"].update(scheduler={"type": "CosineAnnealingRestartLR", "periods": [10],
                                                "restart_weights": [1, 1]}), "train.scheduler.restart_weights"),
        (lambda o: o["train"].update(scheduler={"type": "StepLR"}), "train.scheduler.type"),
        (lambda o: o["train"].update(scheduler={"type": "MultiStepLR", "milestones": [5, 2]}),
         "train.scheduler.milestones"),
        (lambda o: o["train"].pop("pixel_opt"), "train.pixel_opt"),
        (lambda o: o["datasets"]["train"].update(io_backend={"type": "lmdb"}), "datasets.train.io_backend.type"),
        (lambda o: o["datasets"]["train"].update(gt_size=-4), "datasets.train.gt_size"),
        (lambda o: o["datasets"]["train"].pop("batch_size_per_gpu"), "datasets.train.batch_size_per_gpu"),
        (lambda o: o["datasets"]["train"].update(use_flip=True, use_hflip=False), "datasets.train.use_flip"),
        (lambda o: o["datasets"]["train"].update(degradation="blur"), "datasets.train.degradation"),
        (lambda o: o["datasets"]["train"].update(degradation="grayscale"), "datasets.train.dataroot_lq"),
        (lambda o: o["datasets"]["train"].update(color_jitter={"exposure": [1, -1]}),
         "datasets.train.color_jitter.exposure"),
        (lambda o: o["datasets"]["train"].update(filename_tmpl="x"), "datasets.train.filename_tmpl"),
        (lambda o: o["network_g"].update(type="UNet"), "network_g.type"),
        (lambda o: o.update(scale=4), "scale"),
        (lambda o: o.update(name="a/b"), "name"),
        (lambda o: o.update(val={"val_freq": 10}), "val.sets"),
        (lambda o: o.update(val={"val_freq": 0, "sets": ["photos"]}), "val.val_freq"),
        (lambda o: o.update(logger={"print_freq": "often"}), "logger.print_freq"),
        (lambda o: o.update(path={"strict_load_g": "yes"}), "path.strict_load_g"),
    ],
)
def test_bad_value_is_a_config_error_naming_the_key(tmp_path, mutate, key):
    raw = _minimal()
    mutate(raw)
    with pytest.raises(ConfigError) as exc:
        _parse(raw, tmp_path)
    assert f"opt.yml: {key}" in str(exc.value)


def test_every_loss_key_is_kept_and_none_switches_off(tmp_path):
    raw = _minimal()
    raw["train"]["color_opt"] = {"type": "ColorAwareLoss", "loss_weight": 0.5, "space": "lab"}
    raw["train"]["perceptual_opt"] = None
    opt = _parse(raw, tmp_path)
    assert list(opt["train"]["losses"]) == ["pixel_opt", "color_opt"]
    assert opt["train"]["losses"]["color_opt"] == {"type": "ColorAwareLoss", "loss_weight": 0.5, "space": "lab"}


def test_use_grad_clip_with_explicit_norm(tmp_path):
    raw = _minimal()
    raw["train"].update(use_grad_clip=True, grad_clip_norm=0.5)
    assert _parse(raw, tmp_path)["train"]["grad_clip_norm"] == 0.5
    raw["train"].update(use_grad_clip=False)
    assert _parse(raw, tmp_path)["train"]["grad_clip_norm"] is None


def test_grayscale_degradation_needs_no_lq(tmp_path):
    raw = _minimal()
    del raw["datasets"]["train"]["dataroot_lq"]
    raw["datasets"]["train"]["degradation"] = {"type": "grayscale"}
    d = _parse(raw, tmp_path)["datasets"]["train"]
    assert d["degradation"] == "grayscale" and d["dataroot_lq"] is None


def test_jitter_options(tmp_path):
    raw = _minimal()
    raw["datasets"]["train"]["color_jitter"] = {"prob": 0.5, "exposure": [-0.5, 0.5]}
    j = _parse(raw, tmp_path)["datasets"]["train"]["color_jitter"]
    assert j == {"prob": 0.5, "exposure": [-0.5, 0.5], "contrast": None, "white_balance": None, "saturation": None}
    raw["datasets"]["train"]["color_jitter"] = {"saturation": [0.8, 1.0]}
    assert _parse(raw, tmp_path)["datasets"]["train"]["color_jitter"]["saturation"] == [0.8, 1.0]


def test_unknown_keys_at_every_level_in_one_warning(tmp_path):
    raw = _minimal(foo=1)
    raw["train"]["bar"] = 2
    raw["datasets"]["train"]["baz"] = 3
    raw["train"]["optim_g"]["momentum"] = 0.9
    raw["logger"] = {"wandb": {"project": "team"}}
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        opt = parse_options(raw, source="x.yml", cwd=tmp_path)
    ours = [w for w in rec if issubclass(w.category, ColorfidWarning)]
    assert len(ours) == 1
    for k in ("foo", "train.bar", "datasets.train.baz", "train.optim_g.momentum", "logger.wandb"):
        assert k in str(ours[0].message)
    assert len(opt["unknown_keys"]) == 5


def test_val_gate_forms(tmp_path):
    base = {"val_freq": 5, "sets": ["photos"]}
    assert _parse(_minimal(val=dict(base)), tmp_path)["val"]["gate"] == "auto"
    assert _parse(_minimal(val=dict(base, gate=False)), tmp_path)["val"]["gate"] is False
    assert _parse(_minimal(val=dict(base, gate="th.toml")), tmp_path)["val"]["gate"] == tmp_path.resolve() / "th.toml"
    inline = {"defaults": {"de00_p95": {"max": 10.0}}}
    assert _parse(_minimal(val=dict(base, gate=inline)), tmp_path)["val"]["gate"] == inline
    assert _parse(_minimal(val=dict(base, sets="photos")), tmp_path)["val"]["sets"] == ["photos"]


def test_load_options_errors_name_the_file(tmp_path):
    with pytest.raises(ConfigError, match="missing.yml"):
        load_options(tmp_path / "missing.yml")
    p = tmp_path / "bad.yml"
    p.write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match="bad.yml: not valid YAML"):
        load_options(p)
    p.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="top level"):
        load_options(p)
    p.write_text(textwrap.dedent("""\
        name: x
        datasets: {train: {dataroot_gt: g, dataroot_lq: l, batch_size_per_gpu: 1}}
        network_g: {type: NAFNet}
        train: {optim_g: {type: Adam, lr: 0.001}, total_iter: 1, pixel_opt: {type: L1Loss}}
        """))
    assert load_options(p, cwd=tmp_path)["name"] == "x"


def test_example_options_parse():
    root = Path(__file__).resolve().parent.parent / "options"
    files = sorted(root.glob("*.yml"))
    assert len(files) >= 3, files
    for f in files:
        with warnings.catch_warnings():
            warnings.simplefilter("error", ColorfidWarning)
            opt = load_options(f, cwd=root.parent)
        assert opt["val"] is not None and (opt["val"]["sets"] or opt["datasets"]["val"]), f
        train = opt["datasets"]["train"]
        if f.name.startswith("colorize_"):  # grey -> colour: the training images less a validation split
            split = root.parent / "experiments" / "colorize_split"  # made by scripts/colorize_bench.py split
            assert train["dataroot_gt"] == (split / "train" / "gt").resolve() and train["degradation"] == "grayscale", f
            (val,) = opt["datasets"]["val"].values()
            assert val["dataroot_gt"] == (split / "val" / "gt").resolve() and val["degradation"] == "grayscale", f
            assert not opt["val"]["sets"], f  # never the held-out colorization set
        else:
            assert train["dataroot_gt"] == (root.parent / "golden" / "train" / "gt").resolve()
