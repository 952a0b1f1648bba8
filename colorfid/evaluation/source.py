"""What produced the outputs of an evaluation: a checkpoint, an ``nn.Module``, the identity, or
saved predictions (:func:`resolve_model`)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, Union

import torch
from torch import nn

from ..errors import CheckpointError, ColorfidError, UsageError

__all__ = ["ModelLike", "IdentityModel", "ModelSource", "resolve_model"]

ModelLike = Union[nn.Module, str, os.PathLike, None]


class IdentityModel(nn.Module):
    """A model that returns its input: the "do nothing" baseline (LQ passed through).

    Handy for demos and for checking that a gate *fails* an untouched input.
    ``evaluate("identity", ...)`` uses it.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return x.clone()


class ModelSource:
    """What produced the outputs of an evaluation (see :func:`resolve_model`).

    ``kind`` is ``"checkpoint"``, ``"module"``, ``"identity"`` or ``"predictions"``;
    ``cache_key`` is the cache folder's key, ``reuse_cache`` whether cached outputs may be read;
    ``weights`` the checkpoint entry the model is read from (``"params_ema"``, ``"params"``, None
    for a bare state dict or another kind), ``train`` what colorfid's trainer recorded in the
    file (``{"iter", "ema_decay"}``) or None.
    A checkpoint resolved lazily is loaded on first access to :attr:`model` (a run served
    entirely from the output cache never loads it).
    """

    def __init__(
        self,
        kind: str,
        name: str,
        model: nn.Module | None = None,
        checkpoint: str | None = None,
        sha256: str | None = None,
        cache_key: str | None = None,
        reuse_cache: bool = False,
        loader: Any = None,
        weights: str | None = None,
        train: dict[str, Any] | None = None,
    ) -> None:
        self.kind, self.name, self.checkpoint, self.sha256 = kind, name, checkpoint, sha256
        self.cache_key, self.reuse_cache = cache_key, reuse_cache
        self._model, self._loader = model, loader
        self.weights, self.train = weights, train

    def ema_note(self) -> str | None:
        """A warning when the EMA weights being scored averaged over fewer iterations than their
        window 1 / (1 - decay): they are then still mostly the initial weights. None otherwise."""
        info = self.train or {}
        decay, it = info.get("ema_decay"), info.get("iter")
        if self.weights != "params_ema" or not decay or not it:
            return None
        window = 1.0 / (1.0 - float(decay))
        if it >= window:
            return None
        return (f"{Path(self.checkpoint or '').name}: scoring its EMA weights (params_ema), which averaged "
                f"{int(it)} iterations with ema_decay {float(decay):g} (window ~{window:.0f} iterations): they are "
                "still mostly the initial weights; --weights params scores the raw weights")

    @property
    def has_model(self) -> bool:
        return self.kind != "predictions"

    @property
    def loaded_model(self) -> nn.Module | None:
        """The model if it is loaded (a lazy checkpoint not yet needed: None)."""
        return self._model

    @property
    def model(self) -> nn.Module | None:
        if self._model is None and self._loader is not None:
            self._model = self._loader()
            self._loader = None
            self.name = type(self._model).__name__
        return self._model

    def __repr__(self) -> str:
        return f"ModelSource(kind={self.kind!r}, name={self.name!r}, checkpoint={self.checkpoint!r})"


def _module_fingerprint(model: nn.Module) -> str:
    h = hashlib.sha256(f"{type(model).__module__}.{type(model).__qualname__}".encode())
    h.update(repr(model).encode())
    for key, value in model.state_dict().items():
        h.update(key.encode())
        if isinstance(value, torch.Tensor):
            v = value.detach().cpu().contiguous()
            h.update(str(v.dtype).encode() + str(tuple(v.shape)).encode())
            h.update(v.view(-1).view(torch.uint8).numpy().tobytes() if v.numel() else b"")
    return h.hexdigest()


def resolve_model(
    model_or_predictions: ModelLike,
    *,
    device: str | torch.device | None = None,
    cache_key: str | None = None,
    lazy: bool = False,
    weights: str | None = None,
) -> ModelSource:
    """Turn what the user passed into a :class:`ModelSource`.

    * ``nn.Module`` — used as is (moved to ``device``, put in eval mode);
    * ``"identity"`` — :class:`IdentityModel`;
    * ``None`` or ``"predictions"`` — no model: sets must carry ``pred/`` images;
    * any other ``str`` / path — a checkpoint file, loaded with
      :func:`colorfid.models.checkpoint.load_model` and keyed by its sha256 (with ``lazy``
      only when a model output is first needed). ``weights`` picks the BasicSR entry:
      ``"params_ema"`` (the default: the EMA weights a training validated, ``params`` when the
      file has none) or ``"params"``; the entry used is ``ModelSource.weights`` and part of the
      output cache's key.

    Raises:
        CheckpointError: the checkpoint is missing or cannot be loaded.
        UsageError: an unsupported type.
    """
    from ..models.inference import select_device

    if isinstance(model_or_predictions, ModelSource):
        return model_or_predictions
    if model_or_predictions is None or (
        isinstance(model_or_predictions, str) and model_or_predictions == "predictions"
    ):
        return ModelSource(kind="predictions", name="predictions")
    dev = select_device(device)
    if isinstance(model_or_predictions, str) and model_or_predictions == "identity":
        model_or_predictions = IdentityModel()
    if isinstance(model_or_predictions, IdentityModel):
        return ModelSource(
            kind="identity",
            name="IdentityModel",
            model=model_or_predictions.to(dev).eval(),
            cache_key=cache_key or "identity",
            reuse_cache=True,
        )
    if isinstance(model_or_predictions, nn.Module):
        model = model_or_predictions.to(dev).eval()
        key = cache_key or "module-" + _module_fingerprint(model)[:16]
        return ModelSource(
            kind="module",
            name=type(model).__name__,
            model=model,
            cache_key=key,
            reuse_cache=cache_key is not None,
        )
    if isinstance(model_or_predictions, (str, os.PathLike)):
        from ..models.checkpoint import EVAL_PARAM_KEY, WEIGHTS, checkpoint_weights, file_sha256, load_model

        wanted = EVAL_PARAM_KEY if weights is None else weights
        if wanted not in WEIGHTS:
            raise UsageError(f"weights must be one of {', '.join(WEIGHTS)}, got {weights!r}")
        path = Path(model_or_predictions).expanduser()
        if not path.is_file():
            raise CheckpointError(
                f"checkpoint {str(path)!r} does not exist"
                + (" (it is a directory)" if path.is_dir() else "")
            )
        sha = file_sha256(path)
        try:
            info = checkpoint_weights(path, wanted)
        except ColorfidError:
            raise
        except Exception as exc:  # noqa: BLE001 - torch.load can fail in many ways on a bad file
            raise CheckpointError(
                f"checkpoint {str(path)!r} cannot be read ({type(exc).__name__}: {exc}); corrupt or not a checkpoint?"
            ) from exc

        def _load() -> nn.Module:
            try:
                return load_model(path, device=dev, param_key=wanted).eval()
            except (ColorfidError, MemoryError):
                raise
            except Exception as exc:  # noqa: BLE001 - torch.load can fail in many ways on a bad file
                if torch.device(dev).type != "cpu" and _loads_on_cpu(path, wanted):
                    raise UsageError(
                        f"checkpoint {str(path)!r} loads on the CPU but not on device {str(dev)!r} "
                        f"({type(exc).__name__}: {exc}); choose another device (--device cpu)"
                    ) from exc
                raise CheckpointError(
                    f"checkpoint {str(path)!r} cannot be loaded ({type(exc).__name__}: {exc}); corrupt or not a checkpoint?"
                ) from exc

        src = ModelSource(
            kind="checkpoint",
            name="NAFNet",
            checkpoint=str(path.resolve()),
            sha256=sha,
            # the EMA weights' outputs are not the raw weights' outputs
            cache_key=sha[:16] + ("-ema" if info["weights"] == "params_ema" else ""),
            reuse_cache=True,
            loader=_load,
            weights=info["weights"],
            train=info["train"],
        )
        if not lazy:
            src.model  # noqa: B018 - load now: errors surface here
        return src
    raise UsageError(
        "evaluate() takes an nn.Module, a checkpoint path, 'identity', or None / 'predictions'; "
        f"got {type(model_or_predictions).__name__}"
    )


def _loads_on_cpu(path: Path, weights: str) -> bool:
    """Whether the checkpoint loads on the CPU (tells a device problem from a bad file)."""
    from ..models.checkpoint import load_model

    try:
        load_model(path, device="cpu", param_key=weights)
    except Exception:  # noqa: BLE001 - any failure: the file is the problem
        return False
    return True
