"""The fused CPU kernels (colorfid._aot, the kernels colorfid.metrics registers).

Oracles: the same colour-science / scikit-image / numpy checks as tests/test_metrics.py, run on
the fused path, and the eager path (itself tested against those oracles) on bundled images and
edge cases. The kernels are built once per test session (under xdist, once for all workers:
a file lock), which takes ~2 minutes on 2 cores; those tests are marked slow.
"""

from __future__ import annotations

import fcntl
import math
import os
import sys
from pathlib import Path

import pytest
import torch

import colorfid._aot as A
from colorfid import metrics as M
from colorfid.metrics import fused as F
from colorfid.cli import main
from colorfid.errors import ColorfidWarning, KernelError, UnknownNameError

sys.path.insert(0, str(Path(__file__).parent))
from test_metrics import assert_metrics_match_oracles, rand_img, same  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture()
def empty_kernel_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("COLORFID_KERNEL_DIR", str(tmp_path / "kernels"))
    monkeypatch.delenv("COLORFID_KERNELS", raising=False)
    return tmp_path / "kernels"


@pytest.fixture(scope="session")
def built_dir(tmp_path_factory):
    """A kernel folder with both metric kernels, shared by the xdist workers of this session."""
    root = tmp_path_factory.getbasetemp()
    shared = root.parent if os.environ.get("PYTEST_XDIST_WORKER") else root
    folder = shared / "colorfid_kernels"
    folder.mkdir(exist_ok=True)
    old = os.environ.get("COLORFID_KERNEL_DIR")
    os.environ["COLORFID_KERNEL_DIR"] = str(folder)
    try:
        with open(shared / "colorfid_kernels.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # the first worker builds, the other finds them present
            A.build()
            fcntl.flock(lock, fcntl.LOCK_UN)
    finally:
        if old is None:
            os.environ.pop("COLORFID_KERNEL_DIR", None)
        else:
            os.environ["COLORFID_KERNEL_DIR"] = old
    return folder


@pytest.fixture()
def kernels(built_dir, monkeypatch):
    monkeypatch.setenv("COLORFID_KERNEL_DIR", str(built_dir))
    monkeypatch.delenv("COLORFID_KERNELS", raising=False)
    assert M.metric_kernels() == "fused"
    return built_dir


def assert_same_metrics(a: dict, b: dict, rel: float = 1e-12, hue_rel: float | None = None) -> None:
    """Equal keys; values within ``rel`` (``hue_rel`` for the hue metrics); NaN (None in a
    results file) and inf only where the other is the same."""
    assert list(a) == list(b)
    for k in a:
        x, y = (math.nan if v is None else v for v in (a[k], b[k]))
        tol = hue_rel if hue_rel is not None and k.startswith("hue_") else rel
        if math.isnan(x) or math.isnan(y) or math.isinf(x):
            assert same(x, y), (k, x, y)
        else:
            assert y == pytest.approx(x, rel=tol, abs=tol), (k, x, y)


# ----------------------------------------------------------------------------------------------
# Without built kernels (fast)
# ----------------------------------------------------------------------------------------------


def test_registered_kernels_and_eager_default(empty_kernel_dir):
    assert set(A.registered()) == {F.PIXEL_KERNEL, F.SSIM_KERNEL}
    assert M.metric_kernels() == "eager"
    assert A.get(F.PIXEL_KERNEL) is None
    assert all(not s["built"] for s in A.status())
    with pytest.raises(UnknownNameError, match="metrics_pixels_f64"):
        A.get("no_such_kernel")


def test_fused_true_without_kernels_is_a_clear_error(empty_kernel_dir):
    p, t = rand_img(1), rand_img(2)
    with pytest.raises(KernelError, match="colorfid kernels build"):
        M.image_metrics(p, t, fused=True)
    with pytest.raises(KernelError, match="float64 on CPU, not float32"):
        M.image_metrics(p, t, dtype=torch.float32, fused=True)


def test_corrupt_kernel_file_warns_and_falls_back_to_eager(empty_kernel_dir):
    empty_kernel_dir.mkdir(parents=True)
    path = A.path_of(F.PIXEL_KERNEL)
    path.write_bytes(b"not a kernel package")
    A.path_of(F.SSIM_KERNEL).write_bytes(b"PK\x03\x04 truncated")
    p, t = rand_img(3), rand_img(4)
    with pytest.warns(ColorfidWarning, match="could not be loaded"):
        m = M.image_metrics(p, t)
    assert_same_metrics(M.image_metrics(p, t, fused=False), m, rel=0.0)
    with pytest.raises(KernelError, match="not built"):
        M.image_metrics(p, t, fused=True)
    A._forget(path)
    A._forget(A.path_of(F.SSIM_KERNEL))


def test_key_follows_sources_and_settings(tmp_path, monkeypatch):
    mod = tmp_path / "cf_kernel_src_probe.py"
    mod.write_text("X = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    spec = A.KernelSpec("probe", "probe", lambda: None, ("cf_kernel_src_probe",), {"chunk": 8})  # type: ignore[arg-type]
    k1 = A._compute_key(spec)
    mod.write_text("X = 2\n")
    assert A._compute_key(spec) != k1  # an edited formula never meets an old kernel
    mod.write_text("X = 1\n")
    assert A._compute_key(spec) == k1
    other = A.KernelSpec("probe", "probe", spec.make, spec.sources, {"chunk": 16})
    assert A._compute_key(other) != k1


def test_cli_kernels_status(empty_kernel_dir, capsys):
    assert main(["kernels"]) == 0
    out = capsys.readouterr().out
    assert str(empty_kernel_dir) in out and "not built" in out and "runs: eager" in out
    assert main(["info"]) == 0
    assert "0/2 built" in capsys.readouterr().out


@pytest.mark.slow
def test_build_refuses_a_kernel_that_disagrees_with_its_eager_function(empty_kernel_dir):
    class Noisy(torch.nn.Module):  # eager output differs run to run: the self-check must fail
        def forward(self, x):
            return x + torch.rand_like(x)

    spec = A.KernelSpec("test_noisy", "a kernel whose eager result is not reproducible",
                        lambda: (Noisy(), (torch.zeros(8, dtype=torch.float64),), None), ("colorfid.errors",))
    A.register(spec)
    try:
        with pytest.raises(KernelError, match="differs from the eager function"):
            A.build(["test_noisy"])
        assert list(empty_kernel_dir.iterdir()) == []  # nothing kept, no temporary left
    finally:
        A._REGISTRY.pop("test_noisy")
        A._KEYS.pop("test_noisy")


# ----------------------------------------------------------------------------------------------
# With built kernels (slow: one build per session)
# ----------------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("shape", [(20, 22), (190, 181)])  # one padded chunk; two chunks, seven SSIM strips
def test_fused_metrics_match_the_oracles(kernels, shape):
    p, t = rand_img(91, *shape), rand_img(92, *shape)
    m = M.image_metrics(p, t, fused=True)
    assert_metrics_match_oracles(m, p, t)


def _edge_cases() -> list[tuple[str, torch.Tensor, torch.Tensor]]:
    """(name, prediction, target). Where one side is grey (and counted: a zero chroma floor for a
    grey target) the hue angles are those of a* and b* at rounding level (~1e-14):
    ill-conditioned, so those hue metrics agree to 1e-9, not 1e-12."""
    g = torch.Generator().manual_seed(5)
    r = lambda *s: torch.rand(*s, generator=g, dtype=torch.float64)  # noqa: E731
    t = r(3, 64, 80)
    bad = t.clone()
    bad[0, 1, 2], bad[1, 3, 4], bad[2, 5, 6], bad[0, 7, 8] = float("nan"), float("inf"), -float("inf"), 1.5
    grey = t[:1].expand(3, -1, -1).contiguous()
    chunk = F.PIXEL_CHUNK
    return [
        ("identity", t, t),
        ("black vs colour", torch.zeros_like(t), t),
        ("white vs colour", torch.ones_like(t), t),
        ("grey prediction", grey, t),
        ("grey target", t, grey),
        ("bad values", bad, t),
        ("width 11 (eager SSIM)", r(3, 30, 11), r(3, 30, 11)),
        ("width 12", r(3, 30, 12), r(3, 30, 12)),
        ("one row", r(3, 1, 300), r(3, 1, 300)),
        ("exactly one chunk", r(3, chunk // 128, 128), r(3, chunk // 128, 128)),
        ("one chunk and a pixel", r(3, 1, chunk + 1), r(3, 1, chunk + 1)),
        ("8-bit values", (r(3, 40, 50) * 255).round() / 255, (r(3, 40, 50) * 255).round() / 255),
        ("float32 input", r(3, 33, 47).float(), r(3, 33, 47).float()),
    ]


@pytest.mark.slow
def test_fused_agrees_with_eager_on_edge_cases_and_protocols(kernels):
    protocols = [None, M.MetricProtocol(hc_saturation=0.0, hc_chroma=0.0, hue_chroma_floor=0.0, grey_tolerance=0.0),
                 M.MetricProtocol(hc_saturation=0.9, hc_chroma=90.0, hue_chroma_floor=60.0, grey_tolerance=0.3)]
    for name, p, t in _edge_cases():
        for proto in protocols:
            eager = M.image_metrics(p, t, protocol=proto, fused=False)
            fused = M.image_metrics(p, t, protocol=proto, fused=True)
            try:
                assert_same_metrics(eager, fused, hue_rel=1e-9 if name.startswith("grey") else None)
            except AssertionError as exc:
                raise AssertionError(f"{name}, {proto}: {exc}") from None


@pytest.mark.slow
def test_fused_agrees_with_eager_on_bundled_sets(kernels):
    from colorfid.io import read_image
    from colorfid.stress import bundled_set

    for set_name in ("photos", "saturated_paint", "neutral", "colorchecker", "colorization"):
        for pair in bundled_set(set_name).pairs[:3]:
            lq, gt = read_image(pair.lq), read_image(pair.gt)
            assert_same_metrics(M.image_metrics(lq, gt, fused=False), M.image_metrics(lq, gt))


@pytest.mark.slow
def test_kernels_off_switch_and_provenance(kernels, monkeypatch, tmp_path):
    from colorfid.evaluation import evaluate

    r = evaluate("identity", ["neutral"], cache_dir=tmp_path / "c", progress=False, device="cpu")
    assert r.provenance["metric_kernels"] == "fused"
    monkeypatch.setenv("COLORFID_KERNELS", "0")
    assert M.metric_kernels() == "eager" and A.get(F.PIXEL_KERNEL) is None
    r0 = evaluate("identity", ["neutral"], cache_dir=tmp_path / "c", progress=False, device="cpu")
    assert r0.provenance["metric_kernels"] == "eager"
    for im, im0 in zip(r.sets["neutral"]["images"], r0.sets["neutral"]["images"]):
        assert_same_metrics(im0["metrics"], im["metrics"])
    with pytest.raises(KernelError, match="COLORFID_KERNELS=0"):
        M.image_metrics(rand_img(1), rand_img(2), fused=True)


@pytest.mark.slow
def test_cli_build_keeps_present_kernels(kernels, capsys):
    assert main(["kernels", "build"]) == 0
    out = capsys.readouterr().out
    assert "0 built, 2 already present" in out
    assert main(["kernels"]) == 0
    assert "runs: fused" in capsys.readouterr().out

