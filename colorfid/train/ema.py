"""Exponential moving average of a model's parameters (BasicSR ``model_ema``)."""

from __future__ import annotations

import copy
from typing import Mapping

import torch
from torch import Tensor, nn

from ..errors import ConfigError

__all__ = ["ModelEMA"]


class ModelEMA:
    """Exponential moving average of a model's parameters (BasicSR ``model_ema``).

    After every optimiser step ``ema = decay * ema + (1 - decay) * param`` (buffers are copied);
    it starts as a copy of the model. The averaged network is :attr:`module` (eval mode, no grad).
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ConfigError(f"train.ema_decay: expected a number in (0, 1), got {decay!r}")
        self.decay = float(decay)
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self._pairs: list[tuple[Tensor, Tensor]] | None = None
        self._model_ref = model

    def _bind(self, model: nn.Module) -> tuple[list[Tensor], list[Tensor]]:
        ema_p = dict(self.module.named_parameters())
        src = dict(model.named_parameters())
        keys = list(ema_p)
        return [ema_p[k] for k in keys], [src[k] for k in keys]

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        dst, src = self._bind(model)
        torch._foreach_mul_(dst, self.decay)
        torch._foreach_add_(dst, [s.detach() for s in src], alpha=1.0 - self.decay)
        ema_b = dict(self.module.named_buffers())
        for k, b in model.named_buffers():
            if k in ema_b:
                ema_b[k].copy_(b)

    def state_dict(self) -> dict[str, Tensor]:
        return self.module.state_dict()

    def load_state_dict(self, sd: Mapping[str, Tensor]) -> None:
        self.module.load_state_dict(sd, strict=True)
