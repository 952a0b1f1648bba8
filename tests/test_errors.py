"""colorfid.errors.exit_status: the one exception -> exit-code mapping of every entry point."""

from __future__ import annotations

import io

import pytest

from colorfid.errors import CheckpointError, ConfigError, TrainingError, UnknownNameError, exit_status


@pytest.mark.parametrize(
    ("exc", "code", "text"),
    [
        (ConfigError("options.yml: train.total_iter must be > 0"), 2, "prog: error: ConfigError: options.yml: train.total_iter"),
        (UnknownNameError("unknown metric 'sat_ration'"), 2, "prog: error: UnknownNameError: unknown metric"),
        (CheckpointError("x.pth: missing keys"), 2, "prog: CheckpointError: x.pth: missing keys"),
        (TrainingError("10 non-finite steps in a row"), 3, "prog: TrainingError: 10 non-finite steps"),
        (PermissionError(13, "Permission denied", "/x/r.json"), 2, "prog: error: PermissionError: [Errno 13] Permission denied: '/x/r.json'"),
    ],
)
def test_exit_status(exc, code, text):
    out = io.StringIO()
    assert exit_status("prog", exc, out) == code
    assert out.getvalue().startswith(text)
