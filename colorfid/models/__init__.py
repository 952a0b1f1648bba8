"""Models: NAFNet (official-compatible), safe checkpoint loading/saving, tiled inference."""

from __future__ import annotations

from .checkpoint import (
    file_sha256,
    infer_nafnet_config,
    load_model,
    read_state_dict,
    save_model,
)
from .inference import run_model, select_device
from .nafnet import LayerNorm2d, LocalAvgPool2d, NAFBlock, NAFNet, NAFNetLocal, SimpleGate

__all__ = [
    "NAFNet",
    "NAFNetLocal",
    "NAFBlock",
    "LayerNorm2d",
    "LocalAvgPool2d",
    "SimpleGate",
    "load_model",
    "save_model",
    "read_state_dict",
    "file_sha256",
    "infer_nafnet_config",
    "run_model",
    "select_device",
]
