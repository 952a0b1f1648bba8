"""Models: NAFNet (official-compatible), safe checkpoint loading/saving, tiled inference."""

from __future__ import annotations

from .checkpoint import (
    DEFAULT_MAX_PARAMS,
    MAX_BLOCKS,
    MAX_PARAMS_ENV,
    check_nafnet_budget,
    file_sha256,
    infer_nafnet_config,
    load_model,
    read_state_dict,
    max_params,
    save_model,
    validate_nafnet_state,
)
from .inference import run_model, select_device
from .nafnet import LayerNorm2d, LocalAvgPool2d, NAFBlock, NAFNet, NAFNetLocal, SimpleGate, nafnet_size

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
    "validate_nafnet_state",
    "check_nafnet_budget",
    "nafnet_size",
    "max_params",
    "DEFAULT_MAX_PARAMS",
    "MAX_PARAMS_ENV",
    "MAX_BLOCKS",
    "run_model",
    "select_device",
]
