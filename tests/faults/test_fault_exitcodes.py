"""Fault corpus, class *exitcode*: raw crashes and wrong exit codes. Exit 1 means "the gate
failed", so nothing else may end in 1: an output that cannot be written, a number too large for a
float, an unusable folder is a usage error with the path or key named (CLI 2, pytest 4), found
before the long evaluation wherever it can be."""

from __future__ import annotations

import json

import pytest

from faultkit import TINY_TOML, identity_checkpoint, make_set

BIG = "1" + "0" * 400  # a 401-digit integer


def _lq_eval(proj, *extra):
    identity_checkpoint(proj / "id.pth")
    return ["eval", "--checkpoint", "id.pth", "--sets", "lqsets/good", "--device", "cpu", "--no-progress", *extra]


def _nothing_evaluated(proj):
    cache = proj / "cache"
    assert not cache.exists() or not any(p.is_file() for p in cache.rglob("*")), "evaluated before refusing"


# --------------------------------------------------------------------------- outputs that cannot be written


def test_exitcode_json_at_a_folder(runner, proj, env):
    (proj / "out").mkdir()
    runner.cli(*_lq_eval(proj, "--json", "out"), cwd=proj, env=env).usage("OutputError", "out", "folder")
    _nothing_evaluated(proj)


def test_exitcode_json_under_a_file(runner, proj, env):
    (proj / "afile").write_text("x")
    runner.cli(*_lq_eval(proj, "--json", "afile/r.json"), cwd=proj, env=env).usage("OutputError", "afile")
    _nothing_evaluated(proj)


def test_exitcode_report_at_a_file(runner, proj, env):
    (proj / "rep").write_text("x")
    runner.cli(*_lq_eval(proj, "--report", "rep"), cwd=proj, env=env).usage("OutputError", "rep")
    _nothing_evaluated(proj)


def test_exitcode_report_in_an_unwritable_folder(runner, proj, env, unwritable):
    (proj / "rep").mkdir()
    unwritable(proj / "rep")
    runner.cli(*_lq_eval(proj, "--report", "rep"), cwd=proj, env=env).usage("OutputError", "rep")
    _nothing_evaluated(proj)


def test_exitcode_baseline_in_an_unwritable_folder(runner, proj, env, unwritable):
    (proj / "bl").mkdir()
    unwritable(proj / "bl")
    runner.cli(*_lq_eval(proj, "--baseline", "bl/base.json", "--update-baseline"), cwd=proj, env=env).usage(
        "OutputError", "bl")
    _nothing_evaluated(proj)


def test_exitcode_cache_in_an_unwritable_folder(runner, proj, env, unwritable):
    (proj / "cache").mkdir()
    unwritable(proj / "cache")
    runner.cli(*_lq_eval(proj), cwd=proj, env=env).usage("OutputError", "cache", "--no-cache")


def test_exitcode_cache_env_at_a_file(runner, proj, env):
    (proj / "cachefile").write_text("x")
    runner.cli(*_lq_eval(proj), cwd=proj, env={"COLORFID_CACHE": str(proj / "cachefile")}).usage(
        "OutputError", "cachefile")


def test_exitcode_pytest_report_at_a_file(runner, proj, env):
    (proj / "rep").write_text("x")
    runner.pytest("--colorfid-predictions=sets", "--colorfid-report=rep", cwd=proj, env=env).usage(
        "OutputError", "rep", code=4)


def test_exitcode_pytest_baseline_in_an_unwritable_folder(runner, proj, env, unwritable):
    (proj / "bl").mkdir()
    unwritable(proj / "bl")
    runner.pytest("--colorfid-predictions=sets", "--colorfid-baseline=bl/b.json", "--colorfid-update-baseline",
                  cwd=proj, env=env).usage("OutputError", "bl", code=4)


def test_exitcode_pytest_cache_in_an_unwritable_folder(runner, proj, env, unwritable):
    identity_checkpoint(proj / "id.pth")
    (proj / "cache").mkdir()
    unwritable(proj / "cache")
    runner.pytest("--checkpoint=id.pth", "--colorfid-sets=lqsets/good", "--colorfid-device=cpu", cwd=proj,
                  env=env).usage(
        "OutputError", "cache", code=4)


def test_exitcode_report_command_out_unwritable(runner, proj, env, unwritable):
    runner.cli("eval", "--predictions", "sets", "--json", "r.json", "--no-progress", cwd=proj, env=env).no_traceback()
    (proj / "rep").mkdir()
    unwritable(proj / "rep")
    runner.cli("report", "r.json", "--out", "rep", cwd=proj, env=env).usage("OutputError", "rep")


def test_exitcode_history_at_a_folder(runner, proj, env):
    runner.cli("eval", "--predictions", "sets", "--json", "r.json", "--no-progress", cwd=proj, env=env).no_traceback()
    (proj / "hist").mkdir()
    runner.cli("report", "r.json", "--out", "rep", "--history", "hist", "--append-history", cwd=proj, env=env).usage(
        "OutputError", "hist", "folder")


def test_exitcode_history_unwritable(runner, proj, env, unwritable):
    runner.cli("eval", "--predictions", "sets", "--json", "r.json", "--no-progress", cwd=proj, env=env).no_traceback()
    (proj / "h").mkdir()
    unwritable(proj / "h")
    runner.cli("report", "r.json", "--out", "rep", "--history", "h/hist.jsonl", "--append-history", cwd=proj,
               env=env).usage("OutputError", "hist.jsonl")
    assert not (proj / "rep").exists(), "the report was written before the history was found unwritable"


def test_exitcode_kernels_build_into_an_unwritable_folder(runner, proj, env, unwritable):
    (proj / "k").mkdir()
    unwritable(proj / "k")
    r = runner.cli("kernels", "build", cwd=proj, env={**env, "COLORFID_KERNEL_DIR": str(proj / "k")}, timeout=60)
    r.usage("OutputError", "k")
    assert r.wall < 20, "it compiled before finding the folder unwritable"


def test_exitcode_demo_out_at_a_file(runner, proj, env):
    (proj / "demo").write_text("x")
    r = runner.cli("demo", "--out", "demo", "--no-progress", cwd=proj, env=env, timeout=60)
    r.usage("OutputError", "demo")
    assert r.wall < 20


TRAIN = """\
name: t
datasets:
  train:
    dataroot_gt: {root}/lqsets/good/gt
    dataroot_lq: {root}/lqsets/good/lq
    gt_size: 16
    batch_size_per_gpu: 1
    num_worker_per_gpu: 0
network_g: {{type: NAFNet, width: 8, enc_blk_nums: [], middle_blk_num: 1, dec_blk_nums: []}}
path:
  experiments_root: {exp}
train:
  optim_g: {{type: Adam, lr: 0.001}}
  total_iter: {iters}
  pixel_opt: {{type: L1Loss, loss_weight: 1.0}}

logger: {{print_freq: 1, save_checkpoint_freq: 1000}}
"""


def test_exitcode_train_total_iter_overflow(runner, proj, env):
    (proj / "t.yml").write_text(TRAIN.format(root=proj, exp=proj / "exp", iters=BIG))
    runner.cli("train", "-opt", "t.yml", "--device", "cpu", "--no-progress", cwd=proj, env=env).usage(
        "ConfigError", "total_iter")


def test_exitcode_train_float_overflow(runner, proj, env):
    (proj / "t.yml").write_text(TRAIN.format(root=proj, exp=proj / "exp", iters=2).replace("lr: 0.001",
                                                                                          "lr: 1.0e+400"))
    runner.cli("train", "-opt", "t.yml", "--device", "cpu", "--no-progress", cwd=proj, env=env).usage(
        "ConfigError", "lr")


def test_exitcode_train_experiments_folder_unwritable(runner, proj, env, unwritable):
    (proj / "exp").mkdir()
    unwritable(proj / "exp")
    (proj / "t.yml").write_text(TRAIN.format(root=proj, exp=proj / "exp" / "t", iters=2))
    runner.cli("train", "-opt", "t.yml", "--device", "cpu", "--no-progress", cwd=proj, env=env).usage(
        "OutputError", "exp")


# --------------------------------------------------------------------------- numbers too large for a float


def test_exitcode_huge_integer_in_thresholds(runner, proj, env):
    (proj / "colorfid.toml").write_text(f"[defaults]\nde00_p95 = {{ max = {BIG} }}\n")
    runner.cli("eval", "--predictions", "sets", "--no-progress", cwd=proj, env=env).usage(
        "ConfigError", "colorfid.toml", "defaults.de00_p95.max")


def test_exitcode_huge_integer_in_thresholds_under_pytest(runner, proj, env):
    (proj / "colorfid.toml").write_text(f"[defaults]\nde00_p95 = {{ max = {BIG} }}\n")
    runner.pytest("--colorfid-predictions=sets", cwd=proj, env=env).usage(
        "ConfigError", "colorfid.toml", "defaults.de00_p95.max", code=4)


def test_exitcode_huge_integer_in_protocol(runner, proj, env):
    (proj / "colorfid.toml").write_text(f"[protocol]\nhc_saturation = {BIG}\n" + TINY_TOML)
    runner.cli("eval", "--predictions", "sets", "--no-progress", cwd=proj, env=env).usage(
        "ConfigError", "colorfid.toml", "hc_saturation")


def test_exitcode_huge_integer_in_set_toml(runner, proj, env):
    (proj / "sets" / "good" / "set.toml").write_text(f"[protocol]\nworst_k = {BIG}\n")
    runner.cli("eval", "--predictions", "sets", "--sets", "good", "--no-progress", cwd=proj, env=env).usage(
        "StressSetError", "set.toml", "worst_k")


def test_exitcode_huge_integer_in_baseline(runner, proj, env):
    from faultkit import baseline_json

    (proj / "base.json").write_text(baseline_json({"good": {"de00_p95": {"mean": 0.0}}}).replace("0.0", BIG))
    runner.cli("eval", "--predictions", "sets", "--sets", "good", "--baseline", "base.json", "--no-progress",
               cwd=proj, env=env).usage("BaselineError", "base.json", "sets.good.metrics.de00_p95.mean")


def test_exitcode_huge_integer_in_results(runner, proj, env):
    runner.cli("eval", "--predictions", "sets", "--json", "r.json", "--no-progress", cwd=proj, env=env).no_traceback()
    data = json.loads((proj / "r.json").read_text())
    data["sets"]["good"]["aggregate"]["de00_p95"]["mean"] = int(BIG)
    (proj / "r.json").write_text(json.dumps(data))
    runner.cli("report", "r.json", "--out", "rep", cwd=proj, env=env).usage(
        "ConfigError", "r.json", "sets.good.aggregate.de00_p95.mean")


def test_exitcode_huge_tile_and_worst_k(runner, proj, env):
    runner.cli("eval", "--predictions", "sets", "--json", "r.json", "--no-progress", cwd=proj, env=env).no_traceback()
    for argv, opt in ((["report", "r.json", "--out", "rep", "--worst-k", "-1"], "--worst-k"),
                      (_lq_eval(proj, "--tile", BIG), "--tile")):
        r = runner.cli(*argv, cwd=proj, env=env).no_traceback()  # argparse's own usage error
        assert r.rc == 2 and f"error: argument {opt}" in r.err, r.show()
        _nothing_evaluated(proj)


# --------------------------------------------------------------------------- the one mapping


@pytest.mark.parametrize("etype,code,pytest_code", [
    ("ConfigError", 2, 4), ("OutputError", 2, 4), ("CheckpointError", 2, 4), ("ImageReadError", 2, 4),
    ("TrainingError", 3, None), ("KernelError", 2, 4),
])
def test_exitcode_one_mapping(etype, code, pytest_code):
    import colorfid.errors as E

    exc = getattr(E, etype)("x")
    assert E.exit_code(exc) == code
    if pytest_code is not None:
        assert E.pytest_exit_code(exc) == pytest_code
    assert E.exit_code(PermissionError(13, "Permission denied", "/x")) == 2
    assert (E.EXIT_PASSED, E.EXIT_FAILED, E.EXIT_USAGE, E.EXIT_TRAINING) == (0, 1, 2, 3)
