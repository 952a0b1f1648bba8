"""Ahead-of-time fused CPU kernels: colorfid's own torch formulas, compiled once per machine.

Why
---
Eager PyTorch evaluates a per-pixel formula as one pass over memory per operation: the metric
pipeline of :func:`colorfid.metrics.image_metrics` is hundreds of such passes per image.
``torch.compile`` fuses them, but pays its tracing and compilation in every process before the
first image. AOTInductor (``torch.export`` + ``torch._inductor.aoti_compile_and_package``,
PyTorch >= 2.6) compiles the very same Python functions once into a shared library, which a
later process loads through ``torch._C._aoti.AOTIModelPackageLoader`` (the C++ loader behind
``torch._inductor.aoti_load_package``, without importing Dynamo). Nothing here is a second
implementation of a formula: a kernel is a trace of the functions in :mod:`colorfid.color`,
:mod:`colorfid.difference` and :mod:`colorfid.metrics` (the README's Performance section has
the timings).

How it is used
--------------
* Rooms register a :class:`KernelSpec` when imported (``colorfid.metrics.fused`` registers its
  two); the queries below import the :data:`PROVIDERS` first.
* ``colorfid kernels build`` (or :func:`build`) compiles every registered kernel into the kernel
  folder, each checked against the eager function on its example inputs before it is kept
  (a C++ compiler is needed; once per machine and colorfid/torch version).
* :func:`get` returns a loaded kernel, or ``None`` when it is not built, is stale, is disabled or
  cannot be loaded (then a :class:`~colorfid.errors.ColorfidWarning` says why, once): callers
  fall back to the eager path, which stays the exact reference.

The kernel folder is ``$COLORFID_KERNEL_DIR``, else ``$XDG_CACHE_HOME/colorfid/kernels``, else
``~/.cache/colorfid/kernels``. ``COLORFID_KERNELS=0`` disables every kernel. A kernel's file name
carries a key: the sha256 of its name and settings, the colorfid, torch and Python versions,
the machine and torch's CPU capability, and the bytes of the source files it was traced from --
so an upgrade or an edit of a formula never runs a stale kernel (it is simply not found).
"""

from __future__ import annotations

import hashlib
import importlib
import os
import platform
import tempfile
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch import Tensor

from ._version import __version__
from .errors import ColorfidWarning, KernelError, UnknownNameError

__all__ = [
    "KernelSpec", "PROVIDERS", "register", "registered", "source_files", "kernel_dir", "path_of", "enabled",
    "supported", "get", "build", "status", "clear", "describe",
]

_SUFFIX = ".pt2"


@dataclass(frozen=True)
class KernelSpec:
    """One fused kernel: ``make()`` returns ``(module, example_args, dynamic_shapes)`` for
    ``torch.export.export``; ``sources`` are the modules whose source files key it; ``settings``
    are the static choices baked into it (chunk size, window...), part of the key as well;
    ``rtol``/``atol`` bound its difference from the eager module in the build's self-check."""

    name: str
    description: str
    make: Callable[[], tuple[torch.nn.Module, tuple[Tensor, ...], Any]]
    sources: tuple[str, ...]
    settings: dict[str, Any] = field(default_factory=dict)
    rtol: float = 1e-12
    atol: float = 1e-10


#: The modules that register kernels when imported; loaded on demand by the queries below, so
#: callers need not import them for their side effect.
PROVIDERS: tuple[str, ...] = ("colorfid.metrics.fused",)

_REGISTRY: dict[str, KernelSpec] = {}
_KEYS: dict[str, str] = {}
_LOADED: dict[Path, "_Kernel | None"] = {}
_LOCK = threading.Lock()


def register(spec: KernelSpec) -> None:
    """Add (or replace) a kernel in the registry. Its key is taken now, from the source files as
    they are when the registering module is imported: the code this process would trace."""
    _REGISTRY[spec.name] = spec
    _KEYS[spec.name] = _compute_key(spec)


def _load_providers() -> None:
    for mod_name in PROVIDERS:
        importlib.import_module(mod_name)


def registered() -> dict[str, KernelSpec]:
    """The registered kernels by name (the :data:`PROVIDERS` are imported first)."""
    _load_providers()
    return dict(_REGISTRY)


def _spec(name: str) -> KernelSpec:
    _load_providers()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownNameError(f"unknown kernel {name!r}; known: {sorted(_REGISTRY)}") from None


def kernel_dir() -> Path:
    """The folder kernels are built into and loaded from (see the module notes)."""
    env = os.environ.get("COLORFID_KERNEL_DIR")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "colorfid" / "kernels"


def enabled() -> bool:
    """False when ``COLORFID_KERNELS=0`` is set: every caller then takes its eager path."""
    return os.environ.get("COLORFID_KERNELS", "1") != "0"


def _loader_class() -> Any:
    aoti = getattr(torch._C, "_aoti", None)
    return getattr(aoti, "AOTIModelPackageLoader", None)


def supported() -> tuple[bool, str]:
    """Whether this torch can build and load kernels, and why not when it cannot."""
    if _loader_class() is None:
        return False, f"torch {torch.__version__} has no AOTInductor package loader (needs torch >= 2.6)"
    return True, "ok"


def _key(spec: KernelSpec) -> str:
    """The kernel's key (module notes), taken when it was registered."""
    key = _KEYS.get(spec.name)
    if key is None:
        key = _KEYS[spec.name] = _compute_key(spec)
    return key


def source_files(spec: KernelSpec) -> list[Path]:
    """The files whose bytes key ``spec``: each source module's file, every ``.py`` file of a
    source package."""
    files: list[Path] = []
    for mod_name in spec.sources:
        path = Path(importlib.import_module(mod_name).__file__)  # type: ignore[arg-type]
        files += sorted(path.parent.rglob("*.py")) if path.name == "__init__.py" else [path]
    return files


def _compute_key(spec: KernelSpec) -> str:
    h = hashlib.sha256()
    cap = getattr(getattr(torch.backends, "cpu", None), "get_cpu_capability", lambda: "unknown")()
    for part in (spec.name, repr(sorted(spec.settings.items())), __version__, str(torch.__version__),
                 platform.python_version(), platform.machine(), str(cap)):
        h.update(part.encode())
        h.update(b"\0")
    for path in source_files(spec):
        h.update(path.name.encode())
        h.update(path.read_bytes())
        h.update(b"\0")
    return h.hexdigest()[:20]


def path_of(name: str) -> Path:
    """Where the kernel ``name`` lives for this machine and these sources (built or not)."""
    spec = _spec(name)
    return kernel_dir() / f"{spec.name}-{_key(spec)}{_SUFFIX}"


class _Kernel:
    """A loaded kernel: ``kernel(*tensors) -> list[Tensor]``. Inputs must have the exported
    dtypes and (static) shapes, contiguous; calls are serialised (one runner per process)."""

    def __init__(self, name: str, path: Path) -> None:
        self.name, self.path = name, path
        self._loader = _loader_class()(str(path), "model", False, 1, -1)
        self._lock = threading.Lock()

    def __call__(self, *args: Tensor) -> list[Tensor]:
        with self._lock:
            return self._loader.run(list(args))


def get(name: str) -> _Kernel | None:
    """The built kernel ``name`` for this machine, loaded once per process, or None (not built,
    stale after an upgrade, ``COLORFID_KERNELS=0``, unsupported torch, or unloadable -- the last
    with a warning naming the file)."""
    path = path_of(name)
    if not enabled() or _loader_class() is None:
        return None
    with _LOCK:
        if path in _LOADED:
            return _LOADED[path]
        if not path.is_file():
            return None  # not remembered: a build in another process is picked up on the next call
        try:
            kernel: _Kernel | None = _Kernel(name, path)
        except Exception as exc:  # a truncated or foreign file, a missing runtime library...
            warnings.warn(
                f"colorfid kernel {name!r} at {path} could not be loaded ({type(exc).__name__}: "
                f"{str(exc).splitlines()[0] if str(exc) else ''}); using the eager path. "
                "Rebuild it with `colorfid kernels build --force`.",
                ColorfidWarning,
                stacklevel=2,
            )
            kernel = None
        _LOADED[path] = kernel
        return kernel


def _forget(path: Path) -> None:
    with _LOCK:
        _LOADED.pop(path, None)


def _self_check(spec: KernelSpec, module: torch.nn.Module, args: tuple[Tensor, ...], kernel: _Kernel) -> None:
    with torch.no_grad():
        want = module(*args)
    want = list(want) if isinstance(want, (tuple, list)) else [want]
    got = kernel(*(a.contiguous() for a in args))
    if len(got) != len(want):
        raise KernelError(f"kernel {spec.name!r}: {len(got)} outputs, the eager function gives {len(want)}")
    for i, (g, w) in enumerate(zip(got, want)):
        if g.shape != w.shape or g.dtype != w.dtype:
            raise KernelError(f"kernel {spec.name!r}: output {i} is {tuple(g.shape)} {g.dtype}, eager {tuple(w.shape)} {w.dtype}")
        if not torch.allclose(g, w, rtol=spec.rtol, atol=spec.atol, equal_nan=True):
            err = float((g.double() - w.double()).abs().max())
            raise KernelError(f"kernel {spec.name!r}: output {i} differs from the eager function by {err:.3g}")


def build(
    names: Sequence[str] | None = None,
    *,
    force: bool = False,
    log: Callable[[str], None] | None = None,
) -> list[dict[str, Any]]:
    """Compile the named (default: all registered) kernels into :func:`kernel_dir`.

    Each kernel is traced with ``torch.export``, compiled with AOTInductor into a temporary file
    in the kernel folder, loaded and compared with the eager function on its example inputs, and
    only then renamed to its final name (atomic: a concurrent or interrupted build never leaves
    a partial kernel under that name). Already built kernels are kept unless ``force``.

    Returns one dict per kernel: name, path, status ("built" / "present"), seconds.
    Raises :class:`~colorfid.errors.KernelError` when torch cannot build kernels, the C++
    compiler fails, or a kernel disagrees with its eager function.
    """
    ok, why = supported()
    if not ok:
        raise KernelError(f"cannot build colorfid kernels: {why}")
    aoti_compile = getattr(getattr(torch, "_inductor", None), "aoti_compile_and_package", None)
    if aoti_compile is None:  # pragma: no cover - torch >= 2.6 has it
        raise KernelError(f"cannot build colorfid kernels: torch {torch.__version__} has no aoti_compile_and_package")
    say = log or (lambda s: None)
    todo = list(names) if names is not None else sorted(registered())
    folder = kernel_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise KernelError(f"cannot create the kernel folder {folder}: {exc}") from exc
    results: list[dict[str, Any]] = []
    for i, name in enumerate(todo, 1):
        spec = _spec(name)
        path = path_of(name)
        if path.is_file() and not force:
            results.append({"name": name, "path": str(path), "status": "present", "seconds": 0.0})
            say(f"[{i}/{len(todo)}] {name}: present ({path})")
            continue
        say(f"[{i}/{len(todo)}] {name}: building ({spec.description}) ...")
        t0 = time.perf_counter()
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp.pt2", dir=folder)
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            module, args, dynamic = spec.make()
            module.eval()
            with torch.no_grad():
                exported = torch.export.export(module, args, dynamic_shapes=dynamic)
                aoti_compile(exported, package_path=str(tmp))
            _self_check(spec, module, args, _Kernel(name, tmp))
            os.replace(tmp, path)
        except KernelError:
            raise
        except Exception as exc:
            raise KernelError(f"building kernel {name!r} failed: {type(exc).__name__}: {exc}") from exc
        finally:
            tmp.unlink(missing_ok=True)
        _forget(path)
        dt = time.perf_counter() - t0
        results.append({"name": name, "path": str(path), "status": "built", "seconds": round(dt, 1)})
        say(f"[{i}/{len(todo)}] {name}: built in {dt:.0f} s -> {path}")
    return results


def status() -> list[dict[str, Any]]:
    """One dict per registered kernel: name, description, path, built (bool), bytes."""
    out = []
    for name in sorted(registered()):
        path = path_of(name)
        out.append({"name": name, "description": _REGISTRY[name].description, "path": str(path),
                    "built": path.is_file(), "bytes": path.stat().st_size if path.is_file() else 0})
    return out


def clear() -> list[Path]:
    """Delete every colorfid kernel file (any key) of the registered kernels from the kernel folder."""
    folder = kernel_dir()
    removed: list[Path] = []
    if not folder.is_dir():
        return removed
    for name in registered():
        for p in folder.glob(f"{name}-*{_SUFFIX}"):
            p.unlink(missing_ok=True)
            _forget(p)
            removed.append(p)
    return removed


def describe() -> str:
    """A line for ``colorfid info``: the folder and which kernels are built."""
    ok, why = supported()
    if not ok:
        return f"unsupported ({why})"
    st = status()
    built = [s["name"] for s in st if s["built"]]
    state = "disabled (COLORFID_KERNELS=0)" if not enabled() else f"{len(built)}/{len(st)} built"
    return f"{state} in {kernel_dir()}"

