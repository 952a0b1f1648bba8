"""BasicSR registration of the colour losses.

After ``colorfid.losses.register_basicsr()`` a BasicSR YAML can say ``pixel_opt: {type:
ColorAwareLoss, ...}``. NAFNet's fork of BasicSR has no registry: it looks ``pixel_opt.type`` up
as an attribute of ``basicsr.models.losses``; two lines at the end of its ``__init__.py`` make
every colorfid loss visible there::

    from colorfid.losses import BASICSR_LOSSES
    globals().update(BASICSR_LOSSES)
"""

from __future__ import annotations

from typing import Any

from torch import nn

from ..errors import MissingDependencyError, UsageError
from .color_aware import ColorAwareLoss
from .colorization import ColorDiversityLoss, ConfidenceLoss, HueDiversityLoss, LabLoss, SaturationLoss

__all__ = ["BASICSR_LOSSES", "register_basicsr"]

#: Every loss class by name: what ``register_basicsr`` registers, and what the NAFNet-fork
#: recipe (``globals().update(BASICSR_LOSSES)`` in ``basicsr/models/losses/__init__.py``) adds.
BASICSR_LOSSES: dict[str, type[nn.Module]] = {
    "ColorAwareLoss": ColorAwareLoss,
    "LabLoss": LabLoss,
    "SaturationLoss": SaturationLoss,
    "HueDiversityLoss": HueDiversityLoss,
    "ConfidenceLoss": ConfidenceLoss,
    "ColorDiversityLoss": ColorDiversityLoss,
}


def register_basicsr(registry: Any = None) -> list[str]:
    """Register every colorfid loss in BasicSR's ``LOSS_REGISTRY``; return the names added.

    After ``import colorfid.losses; colorfid.losses.register_basicsr()`` a BasicSR YAML can say
    ``pixel_opt: {type: ColorAwareLoss, loss_weight: 1.0, space: ycbcr}``. Idempotent: a class
    already registered is skipped. ``registry`` overrides the target (any object with BasicSR's
    ``register(obj)`` / ``__contains__`` / ``get(name)``).

    Raises :class:`~colorfid.errors.MissingDependencyError` when basicsr cannot be imported, and
    :class:`~colorfid.errors.UsageError` when a *different* object already holds one of the names.
    """
    if registry is None:
        try:
            from basicsr.utils.registry import LOSS_REGISTRY  # type: ignore[import-not-found]
        except ImportError as exc:
            raise MissingDependencyError(
                "register_basicsr: cannot import basicsr.utils.registry.LOSS_REGISTRY "
                f"({exc}); install BasicSR (pip install basicsr). For NAFNet's fork, which has no "
                "registry, add to basicsr/models/losses/__init__.py: "
                "'from colorfid.losses import BASICSR_LOSSES' and 'globals().update(BASICSR_LOSSES)'"
            ) from exc
        registry = LOSS_REGISTRY
    added: list[str] = []
    for name, cls in BASICSR_LOSSES.items():
        if name in registry:
            existing = registry.get(name)
            if existing is cls:
                continue
            raise UsageError(
                f"register_basicsr: LOSS_REGISTRY already holds a different {name!r} "
                f"({getattr(existing, '__module__', '?')}.{getattr(existing, '__qualname__', existing)})"
            )
        registry.register(cls)
        added.append(name)
    return added
