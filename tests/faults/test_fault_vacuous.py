"""Fault corpus, class *vacuous*: inputs that used to let the gate pass without checking what the
user asked it to check. Each must now be a usage error naming the file and key (CLI exit 2,
pytest exit 4), or be judged as written."""

from __future__ import annotations

import os

import pytest

from faultkit import TINY_TOML, baseline_json, make_set, png, gt_array

P = ["eval", "--predictions", "sets", "--no-progress"]

STRICT = "[tool.colorfid.defaults]\nsat_ratio_hc = { target = 2.0, band = 0.1 }\n"  # fails every set


def _no_toml(proj):
    (proj / "colorfid.toml").unlink()
    return proj


# --------------------------------------------------------------------------- config discovery


def test_vacuous_invalid_pyproject_is_an_error_not_the_bundled_thresholds(runner, proj, env):
    _no_toml(proj)
    (proj / "pyproject.toml").write_text(STRICT)
    runner.cli(*P, "--sets", "good", cwd=proj, env=env).failed("pyproject.toml")  # valid: the project's bound fails
    (proj / "pyproject.toml").write_text(STRICT + "[tool.black\nline-length = 100\n")
    runner.cli(*P, "--sets", "good", cwd=proj, env=env).usage("ConfigError", "pyproject.toml", "not valid TOML")


def test_vacuous_unusable_pyproject_under_pytest(runner, proj, env):
    """(pytest refuses an invalid pyproject.toml itself; one it reads but colorfid cannot use
    must not hand the gate to the bundled thresholds either.)"""
    _no_toml(proj)
    (proj / "pyproject.toml").write_text(STRICT.replace("tool.colorfid", "tool.color-fid"))
    runner.pytest("--colorfid-predictions=sets", "--colorfid-sets=good", cwd=proj, env=env).usage(
        "ConfigError", "pyproject.toml", "tool.color-fid", code=4)


def test_vacuous_colorfid_toml_that_is_a_folder(runner, proj, env):
    _no_toml(proj)
    (proj / "colorfid.toml").mkdir()
    runner.cli(*P, cwd=proj, env=env).usage("ConfigError", "colorfid.toml", "not a file")


def test_vacuous_dangling_colorfid_toml_symlink(runner, proj, env):
    _no_toml(proj)
    os.symlink(proj / "moved-away.toml", proj / "colorfid.toml")
    runner.cli(*P, cwd=proj, env=env).usage("ConfigError", "colorfid.toml")


def test_vacuous_pyproject_not_utf8(runner, proj, env):
    _no_toml(proj)
    (proj / "pyproject.toml").write_bytes(STRICT.encode() + b"# caf\xe9\n")
    runner.cli(*P, cwd=proj, env=env).usage("ConfigError", "pyproject.toml", "cannot be read")


def test_vacuous_misspelt_tool_table(runner, proj, env):
    _no_toml(proj)
    (proj / "pyproject.toml").write_text(STRICT.replace("tool.colorfid", "tool.colorFid"))
    runner.cli(*P, cwd=proj, env=env).usage("ConfigError", "pyproject.toml", "tool.colorFid", "tool.colorfid")


def test_vacuous_config_found_from_a_subfolder_of_the_project(runner, proj, env):
    """The project's colorfid.toml applies when the command runs in one of its sub-folders."""
    (proj / "colorfid.toml").write_text(STRICT.replace("tool.colorfid.", ""))
    (proj / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    sub = proj / "docs"
    sub.mkdir()
    runner.cli("eval", "--predictions", "../sets", "--sets", "good", "--no-progress", cwd=sub, env=env).failed(
        str(proj / "colorfid.toml"))


def test_vacuous_empty_stress_sets_list(runner, proj, env):
    (proj / "colorfid.toml").write_text("stress_sets = []\n" + TINY_TOML)
    identity = proj / "id.pth"
    from faultkit import identity_checkpoint

    identity_checkpoint(identity)
    runner.cli("eval", "--checkpoint", identity, "--no-progress", cwd=proj, env=env).usage(
        "ConfigError", "colorfid.toml", "stress_sets")


# --------------------------------------------------------------------------- what a set is


def _typo_parent(proj):
    parent = proj / "parent"
    make_set(parent, "good")
    for i in range(2):  # a typo'd set: images but no gt/ + pred/
        png(parent / "photoss" / f"im{i}.png", gt_array(i))
    return parent


def test_vacuous_predictions_folder_with_a_folder_that_is_not_a_set(runner, proj, env):
    _typo_parent(proj)
    runner.cli("eval", "--predictions", "parent", "--no-progress", cwd=proj, env=env).usage(
        "StressSetError", "photoss")


def test_vacuous_sets_folder_with_a_folder_that_is_not_a_set(runner, proj, env):
    from faultkit import identity_checkpoint

    parent = proj / "lqparent"
    make_set(parent, "good", sides=("lq",))
    (parent / "photoss").mkdir()
    png(parent / "photoss" / "im0.png", gt_array(0))
    identity_checkpoint(proj / "id.pth")
    runner.cli("eval", "--checkpoint", "id.pth", "--sets", "lqparent", "--no-progress", cwd=proj, env=env).usage(
        "StressSetError", "photoss")


def test_vacuous_upper_case_set_folders(runner, proj, env):
    parent = proj / "parent"
    make_set(parent, "good")
    make_set(parent, "shouty", sides=("PRED",))
    (parent / "shouty" / "gt").rename(parent / "shouty" / "GT")
    runner.cli("eval", "--predictions", "parent", "--no-progress", cwd=proj, env=env).usage(
        "StressSetError", "shouty", "GT")


def test_vacuous_upper_case_set_folders_under_pytest(runner, proj, env):
    parent = proj / "parent"
    make_set(parent, "good")
    make_set(parent, "shouty", sides=("LQ",))
    runner.pytest("--colorfid-predictions=parent", cwd=proj, env=env).usage("StressSetError", "shouty", "LQ", code=4)


def test_vacuous_dangling_symlinks_in_gt_and_pred(runner, proj, env):
    s = proj / "sets" / "good"
    os.symlink(s / "gone.png", s / "gt" / "im9.png")
    os.symlink(s / "gone.png", s / "pred" / "im9.png")
    runner.cli(*P, "--sets", "good", cwd=proj, env=env).usage("StressSetError", "im9.png", "dangling")


def test_vacuous_folders_named_like_images(runner, proj, env):
    s = proj / "sets" / "good"
    (s / "gt" / "x.png").mkdir()
    (s / "pred" / "x.png").mkdir()
    runner.cli(*P, "--sets", "good", cwd=proj, env=env).usage("StressSetError", "x.png", "folder")


def test_vacuous_images_in_formats_colorfid_does_not_read(runner, proj, env):
    s = proj / "sets" / "good"
    from PIL import Image

    for side in ("gt", "pred"):
        Image.new("RGB", (24, 24), (200, 30, 30)).save(s / side / "im7.gif")
    runner.cli(*P, "--sets", "good", cwd=proj, env=env).usage("StressSetError", "im7.gif")


def test_vacuous_misspelt_set_toml(runner, proj, env):
    s = proj / "sets" / "good"
    (s / "Set.toml").write_text("[protocol]\nhc_saturation = 0.3\n")
    runner.cli(*P, "--sets", "good", cwd=proj, env=env).usage("StressSetError", "Set.toml", "set.toml")


def test_vacuous_empty_image_files(runner, proj, env):
    s = proj / "sets" / "good"
    (s / "gt" / "im5.png").write_bytes(b"")
    (s / "pred" / "im5.png").write_bytes(b"")
    runner.cli(*P, "--sets", "good", cwd=proj, env=env).usage("StressSetError", "im5.png")


# --------------------------------------------------------------------------- baselines


def _regress_toml(proj):
    (proj / "colorfid.toml").write_text("[defaults]\nde00_p95 = { worse_abs = 0.5 }\n"
                                        "sat_ratio_hc = { worse_abs = 0.02, stat = \"p95\" }\n")


GOOD_AGG = {"mean": 0.0, "median": 0.0, "p95": 0.0, "worst": 0.0, "n": 2}


def test_vacuous_baseline_set_with_no_metrics(runner, proj, env):
    _regress_toml(proj)
    (proj / "base.json").write_text(baseline_json({"good": {}}))
    runner.cli(*P, "--sets", "good", "--baseline", "base.json", cwd=proj, env=env).usage(
        "BaselineError", "base.json", "sets.good.metrics")


def test_vacuous_baseline_missing_the_checked_metric(runner, proj, env):
    _regress_toml(proj)
    (proj / "base.json").write_text(baseline_json({"good": {"psnr": GOOD_AGG}}))
    runner.cli(*P, "--sets", "good", "--baseline", "base.json", cwd=proj, env=env).usage(
        "BaselineError", "base.json", "sets.good.metrics.de00_p95")


def test_vacuous_baseline_missing_the_checked_statistic(runner, proj, env):
    _regress_toml(proj)
    agg = {k: v for k, v in GOOD_AGG.items() if k != "p95"}
    (proj / "base.json").write_text(baseline_json({"good": {"de00_p95": GOOD_AGG, "sat_ratio_hc": agg}}))
    runner.cli(*P, "--sets", "good", "--baseline", "base.json", cwd=proj, env=env).usage(
        "BaselineError", "base.json", "sets.good.metrics.sat_ratio_hc.tail95")  # 'p95' is read as its new name


def test_vacuous_baseline_with_no_sets(runner, proj, env):
    (proj / "base.json").write_text(baseline_json({}))
    runner.cli(*P, "--sets", "good", "--baseline", "base.json", cwd=proj, env=env).usage(
        "BaselineError", "base.json", "no sets")


# --------------------------------------------------------------------------- options that say nothing


def test_vacuous_conftest_owns_checkpoint_says_the_gate_did_not_run(runner, proj, env):
    (proj / "conftest.py").write_text("def pytest_addoption(parser):\n    parser.addoption('--checkpoint')\n")
    (proj / "test_theirs.py").write_text(
        "def test_theirs(request):\n    assert request.config.getoption('checkpoint') == 'bad.pth'\n")
    r = runner.pytest("--checkpoint=bad.pth", cwd=proj, env=env).passed("colorfid gate did NOT run",
                                                                       "--colorfid-checkpoint")
    assert "1 passed" in r.out


@pytest.mark.parametrize("opt", ["--colorfid-baseline", "--colorfid-config", "--colorfid-sets"])
def test_vacuous_empty_option_value_under_pytest(runner, proj, env, opt):
    runner.pytest("--colorfid-predictions=sets", f"{opt}=", cwd=proj, env=env).usage("UsageError", opt, code=4)


def test_vacuous_empty_set_name_on_the_command_line(runner, proj, env):
    runner.cli(*P, "--sets", "", cwd=proj, env=env).usage("UsageError", "empty")
