"""Fault corpus, class *neighbour*: colorfid's pytest plugin is installed in environments whose
own suites know nothing of it. It must never break a suite that does not use it, and must say so
when the suite's own ``--checkpoint`` shadows it."""

from __future__ import annotations

SUB_CONFTEST = "def pytest_addoption(parser):\n    parser.addoption('--checkpoint', default=None)\n"
THEIR_TEST = "def test_theirs(request):\n    print('their checkpoint:', request.config.getoption('checkpoint'))\n"


def _sub_owner(proj):
    sub = proj / "sub"
    sub.mkdir()
    (sub / "conftest.py").write_text(SUB_CONFTEST)
    (sub / "test_sub.py").write_text(THEIR_TEST)
    (proj / "test_root.py").write_text("def test_root():\n    pass\n")
    return sub


def test_neighbour_subfolder_conftest_with_checkpoint_runs_the_whole_suite(runner, proj, env):
    _sub_owner(proj)
    r = runner.pytest(cwd=proj, env=env).passed("2 passed")
    assert "colorfid:" not in r.out and "colorfid gate" not in r.out


def test_neighbour_subfolder_conftest_and_the_gate_together(runner, proj, env):
    _sub_owner(proj)
    runner.pytest("--colorfid-predictions=sets", "--colorfid-sets=good", cwd=proj, env=env).passed("3 passed")


def test_neighbour_their_checkpoint_reaches_their_tests(runner, proj, env):
    _sub_owner(proj)
    r = runner.pytest("sub", "--checkpoint=their.ckpt", "-s", cwd=proj, env=env).passed(
        "their checkpoint: their.ckpt", "colorfid gate did NOT run", "--colorfid-checkpoint")
    assert "1 passed" in r.out


def test_neighbour_plugin_owning_checkpoint(runner, proj, env):
    (proj / "theirplugin.py").write_text(SUB_CONFTEST)
    (proj / "pytest.ini").write_text("[pytest]\npythonpath = .\n")
    (proj / "test_root.py").write_text("def test_root():\n    pass\n")
    runner.pytest("-p", "theirplugin", "--checkpoint=x.pth", cwd=proj, env=env).passed(
        "1 passed", "colorfid gate did NOT run")


def test_neighbour_help_with_a_subfolder_conftest(runner, proj, env):
    _sub_owner(proj)
    runner.pytest("--help", cwd=proj, env=env).passed("--colorfid-checkpoint")


def test_neighbour_collect_only_with_a_subfolder_conftest(runner, proj, env):
    _sub_owner(proj)
    runner.pytest("--collect-only", "-q", cwd=proj, env=env).passed("test_sub.py::test_theirs")


def test_neighbour_unrelated_suite_stays_untouched(runner, proj, env):
    (proj / "test_plain.py").write_text(
        "def test_plain():\n    pass\n")
    r = runner.pytest("test_plain.py", cwd=proj, env=env).passed("1 passed")
    assert "colorfid:" not in r.out and "colorfid gate" not in r.out


def test_neighbour_checkpoint_alias_still_works_without_an_owner(runner, proj, env):
    from faultkit import identity_checkpoint

    identity_checkpoint(proj / "id.pth")
    runner.pytest("--checkpoint=id.pth", "--colorfid-sets=lqsets/good", "--colorfid-device=cpu", cwd=proj,
                  env=env).passed(
        "1 passed", "colorfid: checkpoint")
