"""colorfid.train.trainer: schedulers, losses, exact resume, crash safety, NaN guard, fine-tune vs
resume, validation through evaluate + gate, DDP (2-process gloo) and the CLI."""

from __future__ import annotations

import copy
import json
import math
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from colorfid.errors import CheckpointError, ConfigError, TrainingError, UnknownNameError, UsageError
from colorfid.models import NAFNet
from colorfid.train.options import parse_options
from colorfid.train.trainer import (
    CharbonnierLoss,
    CosineAnnealingRestartLR,
    L1Loss,
    ModelEMA,
    MSELoss,
    MultiStepRestartLR,
    PSNRLoss,
    Trainer,
    TrueCosineAnnealingLR,
    load_training_state,
    train,
)

REPO = Path(__file__).resolve().parent.parent
NET = {"type": "NAFNet", "width": 8, "enc_blk_nums": [1], "middle_blk_num": 1, "dec_blk_nums": [1]}


# ============================================================================= fixtures


def _write(path: Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


def _make_pairs(root: Path, n: int, size: int = 24, seed: int = 0) -> Path:
    """n smooth colourful GT images and a darkened, desaturated, noisy LQ of each."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    for i in range(n):
        c = rng.random((3, 3))
        gt = np.stack([c[k, 0] + c[k, 1] * xx + c[k, 2] * yy for k in range(3)], -1)
        gt = np.clip(gt / gt.max(), 0, 1)
        lq = 0.8 * gt + 0.2 * gt.mean(-1, keepdims=True) + rng.normal(0, 0.02, gt.shape)
        _write(root / "gt" / f"im{i:02d}.png", (gt * 255).round().astype(np.uint8))
        _write(root / "lq" / f"im{i:02d}.png", (np.clip(lq, 0, 1) * 255).round().astype(np.uint8))
    return root


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return _make_pairs(tmp_path_factory.mktemp("pairs"), 5)


def _raw(data: Path, root: Path, **train_over) -> dict:
    raw = {
        "name": "t",
        "manual_seed": 7,
        "datasets": {"train": {"dataroot_gt": str(data / "gt"), "dataroot_lq": str(data / "lq"), "gt_size": 16,
                               "use_hflip": True, "use_rot": True, "batch_size_per_gpu": 2,
                               "num_worker_per_gpu": 0}},
        "network_g": dict(NET),
        "path": {"experiments_root": str(root)},
        "train": {"optim_g": {"type": "AdamW", "lr": 2e-3, "betas": [0.9, 0.9]}, "total_iter": 4,
                  "pixel_opt": {"type": "L1Loss"}},
        "logger": {"print_freq": 1, "save_checkpoint_freq": 100},
    }
    raw["train"].update(train_over)
    return raw


def _opt(raw: dict) -> dict:
    return parse_options(raw, source="test.yml")


def _params(sd) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in sd.items()}


def _assert_bit_identical(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]), k


def _log(root: Path) -> list[dict]:
    return [json.loads(l) for l in (root / "train_log.jsonl").read_text().splitlines()]


# ============================================================================= schedulers


def _opt_for(lr=1.0):
    return torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=lr)


def test_true_cosine_matches_torch_cosine_annealing():
    ref_opt = _opt_for(0.1)
    ref = torch.optim.lr_scheduler.CosineAnnealingLR(ref_opt, T_max=20, eta_min=1e-3)
    ours = TrueCosineAnnealingLR(_opt_for(0.1), T_max=20, eta_min=1e-3)
    for t in range(21):
        assert ours.lr_at(t)[0] == pytest.approx(ref_opt.param_groups[0]["lr"], rel=1e-9, abs=1e-12)
        ref_opt.step()
        ref.step()


def test_multistep_matches_torch_and_restarts_as_basicsr():
    ref_opt = _opt_for(1.0)
    ref = torch.optim.lr_scheduler.MultiStepLR(ref_opt, milestones=[3, 5, 9], gamma=0.5)
    ours = MultiStepRestartLR(_opt_for(1.0), milestones=[3, 5, 9], gamma=0.5)
    for t in range(12):
        assert ours.lr_at(t)[0] == pytest.approx(ref_opt.param_groups[0]["lr"])
        ref_opt.step()
        ref.step()
    # restart at 6 with weight 0.5: the milestone at 5 is forgotten, 9 still applies
    r = MultiStepRestartLR(_opt_for(1.0), milestones=[3, 5, 9], gamma=0.5, restarts=[6], restart_weights=[0.5])
    assert [r.lr_at(t)[0] for t in (2, 3, 5, 6, 8, 9)] == [1.0, 0.5, 0.25, 0.5, 0.5, 0.25]


def test_cosine_restart_hand_values():
    s = CosineAnnealingRestartLR(_opt_for(1.0), periods=[4, 8], restart_weights=[1.0, 0.5], eta_min=0.0)
    # first cycle: 0.5 * (1 + cos(pi t / 4)); second: 0.5 * 0.5 * (1 + cos(pi (t - 4) / 8))
    expect = {0: 1.0, 2: 0.5, 4: 0.0, 5: 0.25 * (1 + math.cos(math.pi / 8)), 8: 0.25, 12: 0.0}
    for t, v in expect.items():
        assert s.lr_at(t)[0] == pytest.approx(v, abs=1e-12), t
    assert s.lr_at(20)[0] == pytest.approx(0.0, abs=1e-12)  # held after the last cycle


def test_scheduler_state_round_trip_and_step():
    a = TrueCosineAnnealingLR(_opt_for(0.5), T_max=10)
    for _ in range(3):
        a.optimizer.step()
        a.step()
    b = TrueCosineAnnealingLR(_opt_for(0.5), T_max=99)
    b.load_state_dict(a.state_dict())
    assert b.last_epoch == 3 and b.T_max == 10 and b.get_last_lr() == a.get_last_lr() == a.lr_at(3)


# ============================================================================= losses, EMA


def test_basicsr_losses_against_torch_and_skimage():
    skm = pytest.importorskip("skimage.metrics")
    g = torch.Generator().manual_seed(0)
    p, t = torch.rand(2, 3, 8, 8, generator=g), torch.rand(2, 3, 8, 8, generator=g)
    torch.testing.assert_close(L1Loss(loss_weight=2.0)(p, t), 2 * nn.functional.l1_loss(p, t))
    torch.testing.assert_close(MSELoss()(p, t), nn.functional.mse_loss(p, t))
    torch.testing.assert_close(CharbonnierLoss(eps=0.0)(p, t), nn.functional.l1_loss(p, t))
    psnr = [skm.peak_signal_noise_ratio(t[i].double().numpy(), p[i].double().numpy(), data_range=1.0) for i in range(2)]
    assert float(PSNRLoss()(p.double(), t.double())) == pytest.approx(-float(np.mean(psnr)), abs=1e-6)
    w = torch.zeros(2, 1, 8, 8)
    w[:, :, :4] = 1
    torch.testing.assert_close(L1Loss()(p, t, w), nn.functional.l1_loss(p[..., :4, :], t[..., :4, :]))


def test_ema_follows_basicsr_formula():
    net = nn.Linear(3, 2)
    ema = ModelEMA(net, 0.9)
    w0 = net.weight.detach().clone()
    with torch.no_grad():
        net.weight.add_(1.0)
    ema.update(net)
    torch.testing.assert_close(ema.module.weight, 0.9 * w0 + 0.1 * net.weight.detach())
    assert not any(p.requires_grad for p in ema.module.parameters())


# ============================================================================= resume exact


def _resume_raw(data, root, workers, total):
    raw = _raw(data, root, total_iter=total, warmup_iter=2, ema_decay=0.5, grad_clip_norm=0.5,
               scheduler={"type": "CosineAnnealingRestartLR", "periods": [4, 4], "restart_weights": [1, 0.5]},
               pixel_opt={"type": "ColorAwareLoss", "space": "ycbcr", "ssim_weight": 0.0},
               loss_schedule={"stages": [{"start": 0, "weights": {"l1": 1.0, "chroma": 0.0}},
                                         {"start": 3, "weights": {"chroma": 2.0}, "warmup": 2}]})
    d = raw["datasets"]["train"]
    d.update(num_worker_per_gpu=workers, color_jitter={"prob": 0.5, "exposure": [-0.3, 0.3],
                                                        "white_balance": [0.9, 1.1]})
    raw["logger"]["save_checkpoint_freq"] = 3
    return raw


@pytest.mark.parametrize("workers", [0, 2])
def test_resume_is_bit_identical(data, tmp_path, workers):
    k = 3  # 5 images, batch 2: 2 batches per epoch, so the stop is mid-epoch
    full = Trainer(_opt(_resume_raw(data, tmp_path / "full", workers, 2 * k)), progress=False, device="cpu")
    full.train()
    first = Trainer(_opt(_resume_raw(data, tmp_path / "part", workers, k)), progress=False, device="cpu")
    first.train()
    state = tmp_path / "part" / "training_states" / f"{k}.state"
    second = Trainer(_opt(_resume_raw(data, tmp_path / "part", workers, 2 * k)), resume=state, progress=False,
                     device="cpu")
    assert second.iteration == k and second.epoch == 1 and second.samples_in_epoch == 2
    second.train()
    wa, wb = _params(second.net.state_dict()), _params(full.net.state_dict())
    diff = max(float((wa[k].double() - wb[k].double()).abs().max()) for k in wa)
    print(f"\nFIGURE resume (workers={workers}): {k}+{k} resumed vs {2 * k} uninterrupted, "
          f"{len(wa)} tensors, max |weight diff| = {diff}")
    _assert_bit_identical(wa, wb)
    _assert_bit_identical(_params(second.ema.state_dict()), _params(full.ema.state_dict()))
    # the losses of the resumed half are the uninterrupted run's losses, exactly
    tail = [r["losses"] for r in _log(tmp_path / "part") if r["iter"] > k]
    assert tail == [r["losses"] for r in _log(tmp_path / "full") if r["iter"] > k]
    # and the state file is a complete checkpoint of the same numbers
    st = load_training_state(tmp_path / "full" / "training_states" / f"{2 * k}.state")
    _assert_bit_identical(st["params"], _params(full.net.state_dict()))
    assert st["iteration"] == 2 * k and st["epoch"] == 2 and st["sampler"]["position"] == 4


# ============================================================================= crash safety


_CRASH_SCRIPT = textwrap.dedent("""
    import io, os, sys, time, json, torch
    from colorfid.train.options import parse_options
    from colorfid.train.trainer import Trainer
    real_save = torch.save
    n = {"calls": 0}
    def slow_save(obj, f, *a, **k):
        n["calls"] += 1
        if n["calls"] == int(sys.argv[2]):
            buf = io.BytesIO(); real_save(obj, buf, *a, **k); data = buf.getvalue()
            f.write(data[: len(data) // 2]); f.flush(); os.fsync(f.fileno())
            print("WRITING", flush=True)
            time.sleep(600)
        return real_save(obj, f, *a, **k)
    torch.save = slow_save
    opt = parse_options(json.loads(open(sys.argv[1]).read()))
    Trainer(opt, progress=False, device="cpu").train()
""")


@pytest.mark.parametrize("victim, final_name", [(3, "models/net_g_2.pth"), (4, "training_states/2.state")])
def test_sigkill_while_writing_leaves_previous_checkpoint(data, tmp_path, victim, final_name):
    root = tmp_path / "exp"
    raw = _raw(data, root, total_iter=3)
    raw["logger"]["save_checkpoint_freq"] = 1
    (tmp_path / "opt.json").write_text(json.dumps(raw))
    (tmp_path / "crash.py").write_text(_CRASH_SCRIPT)
    # writes: 1) net_g_1.pth 2) 1.state 3) net_g_2.pth 4) 2.state
    proc = subprocess.Popen([sys.executable, str(tmp_path / "crash.py"), str(tmp_path / "opt.json"), str(victim)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
                            env=dict(os.environ, OMP_NUM_THREADS="1"))
    try:
        line = proc.stdout.readline()
        assert line.strip() == "WRITING", proc.stderr.read()
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    assert not (root / final_name).exists()  # nothing partial under a final name
    partial = list((root / final_name).parent.glob(".*.tmp"))
    assert len(partial) == 1 and partial[0].stat().st_size > 0  # the half-written temp file
    st = load_training_state(root / "training_states" / "1.state")  # previous checkpoint loads
    assert st["iteration"] == 1
    sd = torch.load(root / "models" / "net_g_1.pth", weights_only=True)["params"]
    NAFNet(3, 8, 1, [1], [1]).load_state_dict(sd, strict=True)
    # auto-resume picks the last complete state, sweeps the temp file, and finishes
    summary = train(_opt(raw), auto_resume=True, progress=False, device="cpu")
    assert summary.iteration == 3 and not list(root.rglob(".*.tmp"))
    assert [r["iter"] for r in _log(root)][-2:] == [2, 3]


# ============================================================================= checkpoints, fine-tune


def test_checkpoint_layout_is_basicsr_and_loads_strict(data, tmp_path):
    from colorfid.models import load_model

    s = train(_opt(_raw(data, tmp_path / "e", total_iter=2, ema_decay=0.9)), progress=False, device="cpu")
    ck = torch.load(s.last_checkpoint, weights_only=True)
    assert set(ck) == {"params", "params_ema", "train"} and s.last_checkpoint.name == "net_g_2.pth"
    assert ck["train"] == {"iter": 2, "ema_decay": 0.9}
    assert not any(k.startswith("module.") for k in ck["params"])
    net = NAFNet(3, 8, 1, [1], [1])
    net.load_state_dict(ck["params"], strict=True)
    assert isinstance(load_model(s.last_checkpoint, param_key="params_ema"), NAFNet)
    st = load_training_state(s.last_state)
    for key in ("iteration", "epoch", "optimizers", "schedulers", "scaler", "rng", "sampler", "params_ema"):
        assert key in st
    assert set(st["rng"][0]) == {"python", "numpy", "torch", "cuda"}
    with pytest.raises(CheckpointError, match="not a colorfid training state"):
        bad = tmp_path / "basicsr.state"
        torch.save({"epoch": 1, "iter": 2, "optimizers": [], "schedulers": []}, bad)
        load_training_state(bad)


def test_finetune_is_fresh_and_exclusive_with_resume(data, tmp_path):
    s = train(_opt(_raw(data, tmp_path / "a", total_iter=2)), progress=False, device="cpu")
    tr = Trainer(_opt(_raw(data, tmp_path / "b", total_iter=2)), finetune=s.last_checkpoint, progress=False,
                 device="cpu")
    assert tr.iteration == 0 and len(tr.optimizer.state) == 0
    _assert_bit_identical(_params(tr.net.state_dict()), torch.load(s.last_checkpoint, weights_only=True)["params"])
    summary = tr.train()
    assert summary.iteration == 2 and [r["iter"] for r in _log(tmp_path / "b")] == [1, 2]
    with pytest.raises(UsageError, match="exclusive"):
        Trainer(_opt(_raw(data, tmp_path / "c")), finetune=s.last_checkpoint, resume=s.last_state, device="cpu")
    raw = _raw(data, tmp_path / "d")
    raw["path"].update(pretrain_network_g=str(s.last_checkpoint), strict_load_g=True)
    raw["network_g"]["width"] = 16
    with pytest.raises(CheckpointError, match="shape"):
        Trainer(_opt(raw), device="cpu")


def test_auto_resume_only_when_asked(data, tmp_path):
    root = tmp_path / "e"
    raw = _raw(data, root, total_iter=2)
    raw["logger"]["save_checkpoint_freq"] = 1
    train(_opt(raw), progress=False, device="cpu")
    again = Trainer(_opt(raw), progress=False, device="cpu")  # not asked: a fresh run; the old one is archived
    assert again.iteration == 0
    again.train()
    assert len(list(tmp_path.glob("e_archived_*"))) == 1
    raw["train"]["total_iter"] = 3
    resumed = Trainer(_opt(raw), auto_resume=True, progress=False, device="cpu")
    assert resumed.iteration == 2
    resumed.train()
    assert [r["iter"] for r in _log(root)] == [1, 2, 3]


def test_auto_resume_of_a_finished_run_has_nothing_to_do(data, tmp_path, monkeypatch, capsys):
    import yaml

    from colorfid.cli import main

    root = tmp_path / "e"
    raw = _raw(data, root, total_iter=2)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "o.yml").write_text(yaml.safe_dump(raw))
    assert main(["train", "-opt", "o.yml", "--no-progress", "--device", "cpu"]) == 0
    files = {p: p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}
    capsys.readouterr()
    assert main(["train", "-opt", "o.yml", "--auto-resume", "--no-progress", "--device", "cpu"]) == 0
    err = capsys.readouterr().err
    assert "nothing to do" in err and "at iteration 2 and train.total_iter is 2" in err
    assert {p: p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()} == files  # nothing written
    assert not list(tmp_path.glob("e_archived_*"))


def test_short_total_iter_warns_or_scales_the_schedule(data, tmp_path):
    from colorfid.errors import ColorfidWarning

    over = dict(total_iter=4, warmup_iter=20, scheduler={"type": "TrueCosineAnnealingLR", "T_max": 100},
                pixel_opt={"type": "ColorAwareLoss"},
                loss_schedule={"stages": [{"start": 0, "weights": {"l1": 1.0}},
                                          {"start": 50, "weights": {"chroma": 2.0}, "warmup": 25}]})
    with pytest.warns(ColorfidWarning, match=r"total_iter \(4\) ends before train.scheduler.T_max = 100, "
                                             r"train.loss_schedule.stages\[1\].start = 50, train.warmup_iter = 20"):
        tr = Trainer(_opt(_raw(data, tmp_path / "a", **over)), progress=False, device="cpu")
    assert tr.opt["train"]["scheduler"]["T_max"] == 100  # warned, not changed
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", ColorfidWarning)
        tr = Trainer(_opt(_raw(data, tmp_path / "b", **over)), progress=False, scale_schedule=True, device="cpu")
    t = tr.opt["train"]
    # the shape kept on the shorter run: factor 4 / 100
    assert t["scheduler"]["T_max"] == 4 and t["warmup_iter"] == 1
    assert t["loss_schedule"]["stages"][1] == {"start": 2, "weights": {"chroma": 2.0}, "warmup": 1}
    assert tr.loss_schedule.weights(2)["chroma"] < 2.0 < tr.loss_schedule.weights(3)["chroma"] + 1e-9
    # a schedule without a length (no cosine scheduler) cannot be scaled
    bad = dict(over, scheduler={"type": "MultiStepLR", "milestones": [50], "gamma": 0.5})
    with pytest.raises(ConfigError, match="no length to scale from"):
        Trainer(_opt(_raw(data, tmp_path / "c", **bad)), progress=False, scale_schedule=True, device="cpu")


def test_validation_is_a_table_and_the_bar_says_validating(data, tmp_path, capsys):
    vs = _make_pairs(tmp_path / "valset", 2, size=24, seed=5)
    raw = _raw(data, tmp_path / "e", total_iter=2)
    raw["val"] = {"val_freq": 2, "sets": [str(vs)], "best_metrics": ["de00_p95", "psnr"],
                  "gate": {"defaults": {"psnr": {"min": 99.0}}}}
    train(_opt(raw), progress=True, device="cpu")
    err = capsys.readouterr().err
    assert "validating 1 set(s) (raw weights)" in err  # the bar's postfix during the pause
    lines = err[err.index("validation @ iter 2"):].splitlines()
    assert "raw weights, params; mean over images" in lines[0]
    assert lines[1].split() == ["set", "de00_p95", "psnr", "gate"]
    res = json.loads((tmp_path / "e" / "validation" / "results_2.json").read_text())
    psnr = res["sets"]["valset"]["aggregate"]["psnr"]["mean"]
    from colorfid._format import sig

    assert lines[2].split()[:3] == ["valset", sig(res["sets"]["valset"]["aggregate"]["de00_p95"]["mean"]), sig(psnr)]
    assert lines[2].endswith("FAIL psnr")
    assert all(len(l) < 120 for l in lines[:3])


def test_tensorboard_events_hold_losses_and_validation(data, tmp_path):
    pytest.importorskip("tensorboard", reason="TensorBoard logging needs the tb extra: pip install 'colorfid[tb]'")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    vs = _make_pairs(tmp_path / "valset", 2, size=24, seed=5)
    raw = _raw(data, tmp_path / "e", total_iter=2,
               pixel_opt={"type": "ColorAwareLoss", "ssim_weight": 0.0, "delta_e_weight": 0.0})
    raw["val"] = {"val_freq": 2, "sets": [str(vs)], "best_metrics": ["de00_p95", "psnr"],
                  "gate": {"defaults": {"psnr": {"min": 1.0}}}}
    raw["logger"]["use_tb_logger"] = True
    train(_opt(raw), progress=False, device="cpu")
    acc = EventAccumulator(str(tmp_path / "e" / "tb_logger"))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {"losses/l_total", "losses/l_pix", "losses/l_pix.l1", "losses/l_pix.chroma", "losses/l_pix.hue", "lr"} <= tags
    assert {"val/valset/de00_p95", "val/valset/psnr", "val/gate_passed"} <= tags
    assert [e.step for e in acc.Scalars("losses/l_total")] == [1, 2]
    res = json.loads((tmp_path / "e" / "validation" / "results_2.json").read_text())
    (ev,) = acc.Scalars("val/valset/psnr")
    assert ev.step == 2 and ev.value == pytest.approx(res["sets"]["valset"]["aggregate"]["psnr"]["mean"], rel=1e-6)


# ============================================================================= guard, schedule, logs


class _Flaky(nn.Module):
    def __init__(self, bad: set[int] | None) -> None:
        super().__init__()
        self.net = NAFNet(3, 8, 1, [1], [1])
        self.bad, self.calls = bad, 0

    def forward(self, x):
        self.calls += 1
        y = self.net(x)
        return y * float("nan") if self.bad is None or self.calls in self.bad else y


def test_nonfinite_steps_are_skipped_then_stop(data, tmp_path):
    model = _Flaky({2})
    tr = Trainer(_opt(_raw(data, tmp_path / "a", total_iter=3)), model=model, progress=False, device="cpu")
    s = tr.train()
    assert s.skipped_steps == 1 and all(torch.isfinite(p).all() for p in model.parameters())
    assert load_training_state(s.last_state)["nonfinite"] == {"total": 1, "consecutive": 0}
    model = _Flaky(None)
    init = _params(model.state_dict())
    tr = Trainer(_opt(_raw(data, tmp_path / "b", total_iter=10, max_nonfinite_steps=3)), model=model, progress=False,
                 device="cpu")
    with pytest.raises(TrainingError, match="3 consecutive non-finite"):
        tr.train()
    _assert_bit_identical(_params(model.state_dict()), init)  # no step was applied
    assert tr.iteration == 3


def test_loss_schedule_log_lines_and_components(data, tmp_path):
    raw = _raw(data, tmp_path / "e", total_iter=3,
               pixel_opt={"type": "ColorAwareLoss", "ssim_weight": 0.0, "delta_e_weight": 0.0,
                          "high_chroma_weight": 0.0},
               color_opt={"type": "L1Loss", "loss_weight": 1.0},
               loss_schedule={"stages": [{"start": 0, "weights": {"l1": 1.0, "chroma": 0.0, "color_opt": 0.0}},
                                         {"start": 2, "weights": {"chroma": 2.0, "color_opt": 0.5}}]})
    tr = Trainer(_opt(raw), progress=False, device="cpu")
    tr._next_batch()  # warm the loader; the steps below use fresh batches
    for t, chroma, outer in ((1, 0.0, 0.0), (2, 2.0, 0.5)):
        stats = tr.train_step(tr._next_batch())
        assert tr.losses["pixel_opt"].term_weights["chroma"] == chroma and tr.outer_weights["color_opt"] == outer
        assert float(stats["l_color"]) == pytest.approx(outer * float(stats["l_pix.l1"]), rel=1e-5)
    tr.train()
    logs = _log(tmp_path / "e")
    assert set(logs[-1]["losses"]) >= {"l_total", "l_pix", "l_pix.l1", "l_pix.chroma", "l_pix.hue", "l_color",
                                       "grad_norm"}
    text = next((tmp_path / "e").glob("train_t_*.log")).read_text()
    assert "lr:(" in text and "it/s:" in text and "l_pix.chroma:" in text and "l_color:" in text


@pytest.mark.parametrize(
    "over, exc, words",
    [
        ({"pixel_opt": {"type": "VGGLoss"}}, UnknownNameError, ["train.pixel_opt.type", "ColorAwareLoss", "L1Loss"]),
        ({"pixel_opt": {"type": "L1Loss", "eps": 1}}, ConfigError, ["train.pixel_opt", "eps"]),
        ({"perceptual_opt": {"type": "PerceptualLoss"}}, UnknownNameError, ["train.perceptual_opt"]),
        ({"loss_schedule": {"stages": [{"start": 0, "weights": {"l1": 1.0, "bogus": 1.0}}]},
          "pixel_opt": {"type": "ColorAwareLoss"}}, UnknownNameError, ["loss_schedule", "bogus"]),
    ],
)
def test_bad_losses_fail_before_training(data, tmp_path, over, exc, words):
    with pytest.raises(exc) as e:
        Trainer(_opt(_raw(data, tmp_path / "e", **over)), device="cpu")
    for w in words:
        assert w in str(e.value)
    assert not (tmp_path / "e").exists()  # nothing written


def test_bad_network_argument_names_the_key(data, tmp_path):
    raw = _raw(data, tmp_path / "e")
    raw["network_g"]["depth"] = 3
    with pytest.raises(ConfigError, match="network_g: NAFNet has no argument"):
        Trainer(_opt(raw), device="cpu")


# ============================================================================= validation


def test_validation_uses_evaluate_and_gate_and_records_bests(data, tmp_path):
    from colorfid.evaluation import Results

    vs = _make_pairs(tmp_path / "valset", 2, size=24, seed=5)
    raw = _raw(data, tmp_path / "e", total_iter=2)
    raw["datasets"]["val_grey"] = {"name": "grey", "dataroot_gt": str(vs / "gt"), "degradation": "grayscale"}
    raw["val"] = {"val_freq": 1, "sets": [str(vs)], "report": True, "best_metrics": ["de00_p95", "psnr"],
                  "gate": {"defaults": {"de00_p95": {"max": 1000.0}, "psnr": {"min": 99.0}}}}
    s = train(_opt(raw), progress=False, device="cpu")
    root = tmp_path / "e"
    assert [h["iter"] for h in s.history] == [1, 2]
    res = Results.load(root / "validation" / "results_2.json")
    assert set(res.set_names) == {"valset", "grey"} and len(res.sets["valset"]["images"]) == 2
    rec = s.history[-1]
    assert rec["gate_passed"] is False and any("psnr" in f for f in rec["failing"])
    best = json.loads((root / "best.json").read_text())
    assert set(best) == {"valset/de00_p95", "valset/psnr", "grey/de00_p95", "grey/psnr"}
    for b in best.values():
        assert Path(b["checkpoint"]).is_file() and b["iter"] in (1, 2)
    assert (root / "reports" / "val_2" / "index.html").is_file()
    assert sorted(p.name for p in (root / "val_inputs" / "grey" / "lq").iterdir()) == ["im00.png", "im01.png"]


def test_trainer_validation_and_eval_score_the_same_weights(data, tmp_path, capsys):
    """Figure of issue #17: for a checkpoint written with EMA on, the trainer's validation and
    `colorfid eval --checkpoint` with default options agree (1e-6) on the same set, the results
    say which weights were scored, and --weights params picks the other entry. EMA averaging
    over a longer window than the run trained is warned about, by the trainer and by eval."""
    import warnings

    from colorfid.cli import main
    from colorfid.errors import ColorfidWarning
    from colorfid.evaluation import Results

    vs = _make_pairs(tmp_path / "valset", 2, size=24, seed=5)
    raw = _raw(data, tmp_path / "e", total_iter=3, ema_decay=0.9)  # window ~10 > 3 iterations
    raw["val"] = {"val_freq": 3, "sets": [str(vs)], "report": False,
                  "gate": {"defaults": {"de00_p95": {"max": 1000.0}, "psnr": {"min": 1.0}}}}
    train(_opt(raw), progress=False, device="cpu")
    assert "ema_decay 0.9 averages over ~10 iterations but total_iter is 3" in capsys.readouterr().err
    root = tmp_path / "e"
    val = Results.load(root / "validation" / "results_3.json")
    assert val.provenance["weights"] == "params_ema"
    best = json.loads((root / "best.json").read_text())
    assert all(b["weights"] == "params_ema" and b["ema"] is True for b in best.values())
    ckpt = root / "models" / "net_g_3.pth"
    cfg = tmp_path / "g.toml"
    cfg.write_text("[defaults]\nde00_p95 = { max = 1000.0 }\npsnr = { min = 1.0 }\n")
    runs = {}
    for weights in (None, "params"):
        out = tmp_path / f"eval_{weights}.json"
        argv = ["eval", "--checkpoint", str(ckpt), "--sets", str(vs), "--config", str(cfg), "--device", "cpu",
                "--json", str(out), "--cache", str(tmp_path / "cache"), "--no-progress",
                *(["--weights", weights] if weights else [])]
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert main(argv) == 0
        runs[weights] = (Results.load(out), [str(w.message) for w in caught if issubclass(w.category, ColorfidWarning)])
    ev, warned = runs[None]
    assert ev.provenance["weights"] == "params_ema" and "weights params_ema" in capsys.readouterr().out
    assert any("averaged 3 iterations with ema_decay 0.9" in w for w in warned)
    agg_val, agg_ev = val.sets["valset"]["aggregate"], ev.sets["valset"]["aggregate"]
    assert set(agg_val) == set(agg_ev)
    for metric, stats in agg_val.items():
        for stat, v in stats.items():
            w = agg_ev[metric][stat]
            assert (v is None and w is None) or v == pytest.approx(w, rel=1e-6, abs=1e-9), (metric, stat, v, w)
    raw_run, warned_raw = runs["params"]
    assert raw_run.provenance["weights"] == "params" and not any("averaged" in w for w in warned_raw)
    assert raw_run.aggregate("valset", "psnr") != pytest.approx(ev.aggregate("valset", "psnr"), rel=1e-6)


# ============================================================================= CLI


def test_cli_train_and_exit_codes(data, tmp_path, monkeypatch, capsys):
    import yaml

    from colorfid.cli import main

    monkeypatch.chdir(tmp_path)
    raw = _raw(data, tmp_path / "e", total_iter=1)
    (tmp_path / "o.yml").write_text(yaml.safe_dump(raw))
    assert main(["train", "-opt", "o.yml", "--no-progress", "--device", "cpu"]) == 0
    assert (tmp_path / "e" / "models" / "net_g_1.pth").is_file()
    raw["train"]["optim_g"]["lr"] = "fast"
    (tmp_path / "bad.yml").write_text(yaml.safe_dump(raw))
    assert main(["train", "-opt", "bad.yml"]) == 2
    assert "train.optim_g.lr" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["train", "-opt", "o.yml", "--resume", "x.state", "--finetune", "y.pth"])


# ============================================================================= DDP


@pytest.mark.slow
def test_ddp_two_process_gloo_follows_single_process(tmp_path):
    import yaml

    data = _make_pairs(tmp_path / "pairs", 8, size=20)
    steps = 4
    single = _raw(data, tmp_path / "single", total_iter=steps, ema_decay=0.5, grad_clip_norm=1.0)
    single["datasets"]["train"]["batch_size_per_gpu"] = 4
    ddp = copy.deepcopy(single)
    ddp["datasets"]["train"]["batch_size_per_gpu"] = 2  # 2 processes x 2 = the same global batch
    ddp["path"]["experiments_root"] = str(tmp_path / "ddp")
    ddp["val"] = {"val_freq": steps, "sets": [str(_make_pairs(tmp_path / "vs", 3, size=16, seed=9))], "gate": False,
                  "best_metrics": ["psnr"]}
    single["val"] = dict(ddp["val"])
    (tmp_path / "ddp.yml").write_text(yaml.safe_dump(ddp))
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "colorfid.train", "-opt", str(tmp_path / "ddp.yml"), "--no-progress", "--device", "cpu"]
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    ref = train(_opt(single), progress=False, device="cpu")  # the single-process run, meanwhile
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out[-3000:]
    a, b = _log(tmp_path / "single"), _log(tmp_path / "ddp")
    assert [r["iter"] for r in a] == [r["iter"] for r in b] == list(range(1, steps + 1))
    diffs = [abs(x["losses"]["l_total"] - y["losses"]["l_total"]) for x, y in zip(a, b)]
    print(f"\nFIGURE ddp: 2-process gloo vs 1 process, {steps} steps, max |loss diff| = {max(diffs):.3e} "
          f"(relative {max(diffs) / max(abs(x['losses']['l_total']) for x in a):.3e})")
    assert max(diffs) < 1e-5 * max(abs(x["losses"]["l_total"]) for x in a), diffs
    assert a[0]["losses"]["l_total"] == pytest.approx(b[0]["losses"]["l_total"], rel=1e-6)
    # rank 0 alone wrote the checkpoint; validation was sharded (3 images over 2 ranks) and gathered
    ck = torch.load(tmp_path / "ddp" / "models" / f"net_g_{steps}.pth", weights_only=True)["params"]
    for k, v in torch.load(ref.last_checkpoint, weights_only=True)["params"].items():
        torch.testing.assert_close(ck[k], v, rtol=1e-4, atol=1e-5)
    from colorfid.evaluation import Results

    res = Results.load(tmp_path / "ddp" / "validation" / f"results_{steps}.json")
    ref_res = Results.load(tmp_path / "single" / "validation" / f"results_{steps}.json")
    assert [im["name"] for im in res.sets["vs"]["images"]] == ["im00", "im01", "im02"]
    assert res.aggregate("vs", "psnr") == pytest.approx(ref_res.aggregate("vs", "psnr"), rel=1e-4)
    logs = list((tmp_path / "ddp").glob("train_*.log"))
    assert len(logs) == 1  # only rank 0 logs
