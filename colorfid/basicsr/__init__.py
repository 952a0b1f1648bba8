"""colorfid inside BasicSR (upstream 1.4.x) and NAFNet's fork of it.

``python -m colorfid.basicsr -opt options.yml`` registers everything below and runs BasicSR's own
training pipeline (:mod:`colorfid.basicsr.__main__`); no wrapper script, no edit of BasicSR.

* **Metrics** (:mod:`colorfid.basicsr.metrics`): every :func:`colorfid.metrics.image_metrics` key
  as a BasicSR metric ``colorfid_<key>`` (``val: metrics: {sat_hc: {type: colorfid_sat_ratio_hc}}``),
  with BasicSR's calling convention (8-bit BGR HWC images from ``tensor2img``, ``crop_border``,
  ``input_order``), plus ``colorfid_<key>_deviation`` = ``|value - target|`` for target metrics.
* **Model types** (:mod:`colorfid.basicsr.model`): ``ColorfidSRModel`` / ``ColorfidImageRestorationModel``
  log each loss and each ``ColorAwareLoss`` term (``l_pix_chroma``, ``l_pix_hue``, ...) and accept
  several ``*_opt`` losses; ``model_type: ColorfidSRModel`` is the one YAML line that changes.
* **Registration** (:mod:`colorfid.basicsr.register`): :func:`register_all` (losses, metrics,
  model type, NAFNet for upstream BasicSR, which has none), and :func:`check_options`, which
  refuses what BasicSR would get wrong silently.

BasicSR itself is imported only when something is registered: this package imports without it.
"""

from __future__ import annotations

from typing import Any

from .metrics import DEVIATION_SUFFIX, PREFIX, BasicSRMetric, basicsr_metrics, get_basicsr_metric
from .register import (
    MODEL_TYPES,
    check_options,
    flavour,
    register_all,
    register_archs,
    register_metrics,
    register_models,
)

__all__ = [
    "PREFIX",
    "DEVIATION_SUFFIX",
    "BasicSRMetric",
    "basicsr_metrics",
    "get_basicsr_metric",
    "MODEL_TYPES",
    "check_options",
    "flavour",
    "register_all",
    "register_archs",
    "register_metrics",
    "register_models",
    "register_basicsr_all",
    "LossSum",
    "model_class",
]

#: The name colorfid's top level exports: ``colorfid.register_basicsr_all()``.
register_basicsr_all = register_all


def __getattr__(name: str) -> Any:
    if name in ("LossSum", "model_class", "ColorfidModelMixin"):
        from . import model

        return getattr(model, name)
    raise AttributeError(f"module 'colorfid.basicsr' has no attribute {name!r}")
