"""Small generated image pairs shared by the tests (tests/test_pytest_plugin.py, the fault corpus)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def png(path: Path, arr: np.ndarray) -> Path:
    """Write an (H, W, 3) array of 0-255 values as an 8-bit RGB PNG (folders created)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.clip(np.round(arr), 0, 255).astype(np.uint8), "RGB").save(path)
    return path


def gt_array(seed: int, h: int = 24, w: int = 24, grey: bool = False) -> np.ndarray:
    """A GT of two saturated halves (blue | red) with a per-pixel brightness jitter, or a grey one."""
    rng = np.random.default_rng(seed)
    if grey:
        return np.repeat(rng.uniform(60, 190, (h, w, 1)), 3, axis=2)
    a = np.empty((h, w, 3))
    a[:] = (30, 70, 200)
    a[:, w // 2:] = (200, 40, 40)
    return a * rng.uniform(0.85, 1.0, (h, w, 1))
