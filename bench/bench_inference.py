"""Benchmark colorfid.models.inference.run_model: speed, peak memory, tiled-vs-whole fidelity.

    python bench/bench_inference.py            # width 16/32 x (peer, whole, tiled) at 1024x1024,
                                               # 3300x2200 width-32 tiled, and the PSNR figures
    python bench/bench_inference.py --quick    # 512x512 cases only (a minute or two)
    python bench/bench_inference.py --table    # only the speed/memory table (--big, --psnr: likewise)
    python bench/bench_inference.py --psnr --checkpoint net_g.pth --image photo.jpg   # real weights

Every speed/memory case runs in a fresh subprocess so that its peak resident set size
(``resource.getrusage(RUSAGE_SELF).ru_maxrss``) is its own; "base" is the RSS after the model
and the image exist, before inference, so "peak - base" is what inference added. The peer is
the plain ``model(x)`` call under ``torch.inference_mode`` (how the official NAFNet demo runs a
whole image); ratios are relative to it.

Weights are random (no network access): PyTorch's default initialisation with beta/gamma drawn
from N(0, sigma) so the blocks are not the identity (a zero-initialised NAFNet is the identity
plus a few convolutions). The test image is a synthetic "room": smooth walls, saturated panels
and sensor-like noise, so different tiles see different statistics.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

SIDD = dict(img_channel=3, middle_blk_num=12, enc_blk_nums=[2, 2, 4, 8], dec_blk_nums=[2, 2, 2, 2])
RSS_LIMIT_GIB = 3.0


def make_model(width: int, sigma: float = 0.1, seed: int = 0, tlc: bool = False):
    from colorfid.models.nafnet import NAFNet, NAFNetLocal

    torch.manual_seed(seed)
    model = (NAFNetLocal if tlc else NAFNet)(width=width, **SIDD)
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(("beta", "gamma")):
                p.copy_(torch.randn(p.shape, generator=g) * sigma)
    return model.eval()


def make_image(h: int, w: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    img = torch.stack([0.55 + 0.25 * xx, 0.5 + 0.2 * yy, 0.45 + 0.15 * xx * yy])
    colours = torch.tensor([[0.1, 0.3, 0.8], [0.1, 0.6, 0.3], [0.0, 0.55, 0.55], [0.9, 0.85, 0.8],
                            [0.3, 0.2, 0.15], [0.95, 0.95, 1.0]])
    for _ in range(14):
        c = colours[int(torch.randint(len(colours), (1,), generator=g))].view(3, 1, 1)
        y0, x0 = int(torch.randint(0, h - 40, (1,), generator=g)), int(torch.randint(0, w - 40, (1,), generator=g))
        hh, ww = int(torch.randint(40, h // 2, (1,), generator=g)), int(torch.randint(40, w // 2, (1,), generator=g))
        img[:, y0 : y0 + hh, x0 : x0 + ww] = c * (0.8 + 0.4 * xx[y0 : y0 + hh, x0 : x0 + ww])
    return (img + 0.02 * torch.randn(img.shape, generator=g)).clamp(0, 1)


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = ((a.double() - b.double()) ** 2).mean().item()
    return float("inf") if mse == 0 else 10 * math.log10(1.0 / mse)


def _rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 2**30  # Linux: KiB


def run_case(case: dict) -> dict:
    """One speed/memory case, in this (fresh) process."""
    from colorfid.models.inference import run_model

    model = make_model(case["width"])
    x = make_image(case["h"], case["w"])
    base = _rss_gib()
    t0 = time.perf_counter()
    if case["mode"] == "peer":
        with torch.inference_mode():
            y = model(x[None])[0]
    else:
        y = run_model(model, x, tile=case["tile"], device="cpu", progress=False)
    dt = time.perf_counter() - t0
    assert y.shape == x.shape and torch.isfinite(y).all()
    return {**case, "seconds": dt, "s_per_mp": dt / (case["h"] * case["w"] / 1e6),
            "rss_base_gib": base, "rss_peak_gib": _rss_gib(), "threads": torch.get_num_threads()}


def spawn(case: dict) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--case", json.dumps(case)], capture_output=True, text=True)
    if proc.returncode != 0:
        return {**case, "error": (proc.stderr.strip().splitlines() or ["?"])[-1]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def speed_table(cases: list[dict]) -> list[dict]:
    from colorfid.models.inference import DEFAULT_MAX_PIXELS, DEFAULT_OVERLAP, DEFAULT_TILE

    print(f"\n## speed and peak memory (CPU, fresh process per case; overlap {DEFAULT_OVERLAP}; "
          f"auto = the default policy: whole up to {DEFAULT_MAX_PIXELS / 1e6:.2f} MP, else tiles of {DEFAULT_TILE})")
    print(f"{'width':>5} {'size':>10} {'mode':>14} {'s/MP':>8} {'x peer':>7} {'peak RSS GiB':>13} {'added GiB':>10} {'x peer':>7}")
    rows, peers = [], {}
    for case in cases:
        r = spawn(case)
        rows.append(r)
        key = (r["width"], r["h"], r["w"])
        size = f"{r['w']}x{r['h']}"
        if "error" in r:
            print(f"{r['width']:>5} {size:>10} {r['label']:>14}  failed: {r['error']}")
            continue
        added = r["rss_peak_gib"] - r["rss_base_gib"]
        if r["mode"] == "peer":
            peers[key] = r
        p = peers.get(key)
        t_ratio = f"{r['s_per_mp'] / p['s_per_mp']:.2f}" if p else "-"
        m_ratio = f"{added / max(p['rss_peak_gib'] - p['rss_base_gib'], 1e-9):.2f}" if p else "-"
        print(f"{r['width']:>5} {size:>10} {r['label']:>14} {r['s_per_mp']:>8.2f} {t_ratio:>7} "
              f"{r['rss_peak_gib']:>13.2f} {added:>10.2f} {m_ratio:>7}", flush=True)
    return rows


def psnr_figures(quick: bool, checkpoint: str | None = None, image: str | None = None) -> None:
    from colorfid.models.checkpoint import load_model
    from colorfid.models.inference import DEFAULT_OVERLAP, DEFAULT_TILE, run_model

    width, (h, w) = (16, (640, 768)) if quick else (32, (768, 1024))
    if image:
        from colorfid.io import read_image

        x = read_image(image)
        h, w = x.shape[-2:]
    else:
        x = make_image(h, w, seed=3)
    what = checkpoint or f"random width-{width} SIDD NAFNet"
    print(f"\n## tiled (tile {DEFAULT_TILE}, overlap {DEFAULT_OVERLAP}) vs whole-image output, {what}, "
          f"{w}x{h} {'image ' + image if image else 'synthetic image'}")
    print(f"{'beta/gamma sigma':>16} {'PSNR(out, in)':>14} {'NAFNet tiled vs whole':>22} {'TLC tiled vs whole':>19} "
          f"{'TLC vs NAFNet (whole)':>22}")
    for sigma in ("checkpoint",) if checkpoint else (0.1, 0.5):
        if checkpoint:
            plain, local = load_model(checkpoint), load_model(checkpoint, tlc=True)
        else:
            plain = make_model(width, sigma=sigma)
            local = make_model(width, sigma=sigma, tlc=True)
            local.load_state_dict(plain.state_dict())
        whole = run_model(plain, x, tile=0, device="cpu")
        tiled = run_model(plain, x, tile=DEFAULT_TILE, overlap=DEFAULT_OVERLAP, device="cpu", progress=False)
        whole_l = run_model(local, x, tile=0, device="cpu")
        tiled_l = run_model(local, x, tile=DEFAULT_TILE, overlap=DEFAULT_OVERLAP, device="cpu", progress=False)
        print(f"{sigma:>16} {psnr(whole, x):>11.2f} dB {psnr(tiled, whole):>19.2f} dB {psnr(tiled_l, whole_l):>16.2f} dB "
              f"{psnr(whole_l, whole):>19.2f} dB", flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small images, no 3300x2200 case")
    ap.add_argument("--table", action="store_true", help="the speed/memory table (width 16/32, peer/whole/tiled)")
    ap.add_argument("--psnr", action="store_true", help="the tiled-vs-whole PSNR figures")
    ap.add_argument("--big", action="store_true", help="the 3300x2200 width-32 tiled case (peak RSS <= 3 GiB)")
    ap.add_argument("--checkpoint", help="PSNR figures on these weights instead of random ones")
    ap.add_argument("--image", help="PSNR figures on this image instead of the synthetic one")
    ap.add_argument("--case", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.case:
        print(json.dumps(run_case(json.loads(args.case))))
        return 0
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import colorfid

    print(f"colorfid {getattr(colorfid, '__version__', '?')}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, {os.cpu_count()} CPUs")
    from colorfid.models.inference import DEFAULT_TILE

    status = 0
    everything = not (args.table or args.psnr or args.big)
    if args.table or everything:
        side = 512 if args.quick else 1024
        cases = []
        for width in (16, 32):
            tile = DEFAULT_TILE // 2 if args.quick else DEFAULT_TILE  # smaller than the image: really tiles
            for mode, t, label in (("peer", None, "model(x)"), ("run", 0, "run_model whole"),
                                   ("run", tile, f"tiled {tile}")):
                cases.append(dict(width=width, h=side, w=side, mode=mode, tile=t, label=label))
        speed_table(cases)
    if args.big or (everything and not args.quick):
        rows = speed_table([dict(width=32, h=2200, w=3300, mode="run", tile=None, label="run_model auto")])
        peak = rows[0].get("rss_peak_gib", float("inf"))
        verdict = "PASS" if peak <= RSS_LIMIT_GIB else "FAIL"
        print(f"3300x2200 width-32 tiled: peak RSS {peak:.2f} GiB (limit {RSS_LIMIT_GIB} GiB): {verdict}")
        status |= verdict != "PASS"
    if args.psnr or everything:
        psnr_figures(args.quick, args.checkpoint, args.image)
    return status


if __name__ == "__main__":
    sys.exit(main())
