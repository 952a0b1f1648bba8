"""The output cache of :func:`~colorfid.evaluation.evaluate`.

Model outputs are cached per (checkpoint sha256, inference settings, set, image stem) under
``<cache_dir>/<key>-<settings tag>/<set>/``: ``<stem>.npy`` holds the exact float32 output
(out-of-range and non-finite values included, so the health metrics see what the model
produced), ``<stem>.png`` a 16-bit PNG of the clipped output for reports, and ``<stem>.json`` the
sha256 of the input image it was computed from (a changed input is a miss). Set names and stems
become file names through :func:`colorfid._files.safe_name`, so two names never share an entry
(``a b`` and ``a_b``, ``A`` and ``a``). The folder is, in order: the ``cache_dir`` argument,
``$COLORFID_CACHE``, ``./.colorfid_cache``; one that cannot be written is an
:class:`~colorfid.errors.OutputError` (checked before any inference: :meth:`OutputCache.check`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._atomic import atomic_open
from .._files import atomic_write_json, check_output_dir, os_reason, safe_name, utc_now
from .._version import __version__
from ..errors import ColorfidWarning, OutputError

__all__ = ["default_cache_dir", "OutputCache"]


def default_cache_dir(cache_dir: str | os.PathLike | None = None) -> Path:
    """The output cache folder: ``cache_dir``, else ``$COLORFID_CACHE``, else ``./.colorfid_cache``."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    env = os.environ.get("COLORFID_CACHE")
    if env:
        return Path(env).expanduser()
    return Path.cwd() / ".colorfid_cache"


@dataclasses.dataclass
class OutputCache:
    """The cache folder of one model and its inference settings (module notes)."""

    root: Path
    key: str
    settings: dict[str, Any]
    reuse: bool
    enabled: bool = True
    model_dtype: str = "float32"

    @property
    def folder(self) -> Path:
        tag = hashlib.sha256(json.dumps(self.settings, sort_keys=True).encode()).hexdigest()[:8]
        return self.root / f"{self.key}-{tag}"

    def paths(self, set_name: str, stem: str) -> tuple[Path, Path, Path]:
        d = self.folder / safe_name(set_name)
        s = safe_name(stem)
        return d / f"{s}.npy", d / f"{s}.png", d / f"{s}.json"

    def check(self) -> None:
        """OutputError now, before any inference, when the cache folder cannot be written."""
        if self.enabled:
            check_output_dir(self.root, "output cache folder",
                             hint="; choose another with --cache / $COLORFID_CACHE, or run with --no-cache")

    def _error(self, exc: OSError) -> OutputError:
        return OutputError(f"output cache folder {str(self.root)!r} cannot be written: {os_reason(exc)}"
                           + (f" ({exc.filename})" if getattr(exc, "filename", None) else "")
                           + "; choose another with --cache / $COLORFID_CACHE, or run with --no-cache")

    def get(self, set_name: str, stem: str, input_sha: str, shape: tuple[int, ...]) -> np.ndarray | None:
        if not (self.enabled and self.reuse):
            return None
        npy, _png, meta = self.paths(set_name, stem)
        try:
            info = json.loads(meta.read_text(encoding="utf-8"))
            if info.get("input_sha256") != input_sha:
                return None
            arr = np.load(npy, allow_pickle=False)
        except FileNotFoundError:
            return None
        except (OSError, ValueError, json.JSONDecodeError) as exc:
            warnings.warn(f"colorfid: ignoring a corrupt cache entry {meta}: {exc}", ColorfidWarning, stacklevel=3)
            return None
        if arr.dtype != np.float32 or arr.ndim != 3 or arr.shape[0] != 3:
            return None
        return arr

    def put(self, set_name: str, stem: str, input_sha: str, out: np.ndarray) -> Path | None:
        if not self.enabled:
            return None
        npy, png, meta = self.paths(set_name, stem)
        try:
            npy.parent.mkdir(parents=True, exist_ok=True)
            with atomic_open(npy, "wb") as fh:  # straight to the file: no second copy of the output
                np.save(fh, out, allow_pickle=False)
        except OSError as exc:
            raise self._error(exc) from None
        self.ensure_png(set_name, stem, out)
        atomic_write_json(
            meta,
            {"input_sha256": input_sha, "shape": list(out.shape), "dtype": "float32", "created": utc_now(),
             "key": self.key, "settings": self.settings}, what="output cache entry",
        )
        if not (self.folder / "meta.json").exists():
            atomic_write_json(
                self.folder / "meta.json",
                {"key": self.key, "settings": self.settings, "model_dtype": self.model_dtype,
                 "colorfid_version": __version__}, what="output cache entry",
            )
        return png

    def recorded_model_dtype(self, default: str) -> str:
        """The model dtype recorded when the folder was filled (``default`` if unknown)."""
        try:
            return str(json.loads((self.folder / "meta.json").read_text(encoding="utf-8")).get("model_dtype", default))
        except (OSError, ValueError):
            return default

    def ensure_png(self, set_name: str, stem: str, out: np.ndarray) -> Path | None:
        if not self.enabled:
            return None
        _npy, png, _meta = self.paths(set_name, stem)
        if not png.exists():
            from ..io import write_image

            t = torch.from_numpy(np.nan_to_num(out, nan=0.0, posinf=1.0, neginf=0.0)).clamp_(0.0, 1.0)
            try:
                png.parent.mkdir(parents=True, exist_ok=True)
                write_image(png, t, bits=16)
            except OSError as exc:  # ImageWriteError included
                raise self._error(exc.__cause__ if isinstance(exc.__cause__, OSError) else exc) from None
        return png
