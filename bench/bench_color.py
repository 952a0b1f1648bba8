"""Benchmark: colorfid colour conversion and CIEDE2000 vs scikit-image, colour-science, kornia.

    python bench/bench_color.py            # 1, 4 and 12 MP, median of 5
    python bench/bench_color.py --quick    # 0.25 and 1 MP, median of 3
    python bench/bench_color.py --cases lab/ de00-f32/ --sizes 12 --rounds 3   # a subset, best of 3 rounds

Every case runs in a fresh subprocess on the same generated data (fixed seed), so its peak
memory is its own: "extra MiB" is the peak RSS during the timed calls minus the RSS just before
them (Linux VmHWM, reset through /proc/self/clear_refs). Throughput is megapixels per second of
the median run; ratios are colorfid / peer on the same size. The fused CIEDE2000 path is timed
after one warm-up call; its compile latency is reported on its own line (cold: empty Inductor
cache in a temporary directory; warm: a second process reusing that cache).

Layouts: every library gets the same values in its own layout -- scikit-image and colour-science
an (H, W, 3) array, colorfid a contiguous (3, H, W) tensor (what colorfid.io's readers and
``srgb_uint8_to_lab`` return). The "-hwc" case gives colorfid a (3, H, W) view of (H, W, 3)
memory instead (``torch.from_numpy(a).permute(2, 0, 1)``), which it de-interleaves chunk by chunk.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

CASES = {
    # name: (kind, implementation, dtype)
    "lab/colorfid": ("lab", "colorfid", "float32"),
    "lab/colorfid-float": ("lab", "colorfid-float", "float32"),
    "lab/skimage": ("lab", "skimage", "float64"),
    "lab/colour": ("lab", "colour", "float64"),
    "lab/kornia": ("lab", "kornia", "float32"),
    "de00-f64/colorfid": ("de00", "colorfid", "float64"),
    "de00-f64/colorfid-fused": ("de00", "colorfid-fused", "float64"),
    "de00-f64/skimage": ("de00", "skimage", "float64"),
    "de00-f64/colour": ("de00", "colour", "float64"),
    "de00-f32/colorfid": ("de00", "colorfid", "float32"),
    "de00-f32/colorfid-fused": ("de00", "colorfid-fused", "float32"),
    "de00-f32/colorfid-fused-hwc": ("de00", "colorfid-fused-hwc", "float32"),
    "de00-f32/skimage": ("de00", "skimage", "float32"),
}


def _rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _hwm_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _reset_hwm() -> None:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def child(case: str, mp: float, repeats: int) -> dict:
    import warnings

    import numpy as np
    import torch

    warnings.filterwarnings("ignore")
    kind, impl, dtype = CASES[case]
    side = int(round((mp * 1e6) ** 0.5))
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (side, side, 3), dtype=np.uint8)
    out: dict = {"case": case, "mp": side * side / 1e6}

    if kind == "lab":
        if impl == "colorfid":  # the explicit integer path (256-entry decode table)
            from colorfid.color import srgb_uint8_to_lab

            t = torch.from_numpy(img).permute(2, 0, 1)
            fn = lambda: srgb_uint8_to_lab(t)  # noqa: E731
        elif impl == "colorfid-float":  # the float path a float image takes
            from colorfid.color import srgb_to_lab, to_float

            t = torch.from_numpy(img).permute(2, 0, 1)
            fn = lambda: srgb_to_lab(to_float(t, torch.float32))  # noqa: E731
        elif impl == "skimage":
            from skimage.color import rgb2lab

            fn = lambda: rgb2lab(img)  # noqa: E731
        elif impl == "colour":
            import colour

            fn = lambda: colour.XYZ_to_Lab(colour.sRGB_to_XYZ(img / 255.0))  # noqa: E731
        else:
            try:
                import kornia.color as kc
            except ImportError:
                return {**out, "skipped": "kornia not installed"}
            t = torch.from_numpy(img).permute(2, 0, 1)[None]
            fn = lambda: kc.rgb_to_lab(t.float() / 255.0)  # noqa: E731
    else:
        from colorfid.color import srgb_to_lab

        t = torch.from_numpy(img).permute(2, 0, 1).double() / 255.0
        lab1 = srgb_to_lab(t)
        lab2 = srgb_to_lab((t + torch.from_numpy(rng.normal(0, 0.05, t.shape))).clamp(0, 1))
        if dtype == "float32":
            lab1, lab2 = lab1.float(), lab2.float()
        if impl.startswith("colorfid"):
            from colorfid.difference import delta_e_2000

            # lab1, lab2 are (3, H, W) views of (H, W, 3) memory (computed from the HWC array).
            # colorfid gets its own layout, a contiguous (3, H, W) tensor (what colorfid.io's
            # readers and srgb_uint8_to_lab return); "-hwc" keeps the interleaved view, so the
            # de-interleave cost is on the table too. scikit-image gets its own (H, W, 3) array.
            if not impl.endswith("-hwc"):
                lab1, lab2 = lab1.contiguous(), lab2.contiguous()
            fused = "fused" in impl
            if fused:
                t0 = time.perf_counter()
                delta_e_2000(lab1[:, :8, :8], lab2[:, :8, :8], fused=True)
                out["compile_s"] = time.perf_counter() - t0
            fn = lambda: delta_e_2000(lab1, lab2, fused=fused)  # noqa: E731
        else:
            n1 = lab1.permute(1, 2, 0).contiguous().numpy()
            n2 = lab2.permute(1, 2, 0).contiguous().numpy()
            del lab1, lab2
            if impl == "skimage":
                from skimage.color import deltaE_ciede2000

                fn = lambda: deltaE_ciede2000(n1, n2, channel_axis=-1)  # noqa: E731
            else:
                import colour

                fn = lambda: colour.difference.delta_E_CIE2000(n1, n2)  # noqa: E731

    times = []
    base = _rss_mib()
    _reset_hwm()
    for _ in range(repeats):
        t0 = time.perf_counter()
        r = fn()
        times.append(time.perf_counter() - t0)
        del r
    out["extra_mib"] = max(0.0, _hwm_mib() - base)
    out["median_s"] = statistics.median(times)
    out["mps"] = out["mp"] / out["median_s"]
    return out


def run_case(case: str, mp: float, repeats: int, env: dict | None = None) -> dict:
    cmd = [sys.executable, __file__, "--child", case, str(mp), str(repeats)]
    res = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if res.returncode != 0:
        return {"case": case, "mp": mp, "error": res.stderr.strip().splitlines()[-1:] or ["?"]}
    return json.loads(res.stdout.strip().splitlines()[-1])


def compile_latency(dtype: str) -> tuple[float, float]:
    cache = tempfile.mkdtemp(prefix="colorfid-inductor-")
    env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": cache}
    case = f"de00-{'f64' if dtype == 'float64' else 'f32'}/colorfid-fused"
    cold = run_case(case, 0.01, 1, env).get("compile_s", float("nan"))
    warm = run_case(case, 0.01, 1, env).get("compile_s", float("nan"))
    return cold, warm


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="0.25 and 1 MP, median of 3")
    ap.add_argument("--child", nargs=3, metavar=("CASE", "MP", "REPEATS"), help=argparse.SUPPRESS)
    ap.add_argument("--sizes", type=float, nargs="+", help="megapixels (default 1 4 12)")
    ap.add_argument("--cases", nargs="+", metavar="PREFIX", help="only the cases starting with these (e.g. lab/ de00-f32/)")
    ap.add_argument("--no-compile-latency", action="store_true", help="skip the compile-latency runs")
    ap.add_argument("--rounds", type=int, default=1,
                    help="run every case this many times, interleaved, and keep each case's best median "
                         "(steadier ratios on a machine shared with other jobs)")
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child[0], float(args.child[1]), int(args.child[2]))))
        return

    import torch

    sizes = args.sizes or ([0.25, 1.0] if args.quick else [1.0, 4.0, 12.0])
    repeats = 3 if args.quick else 5
    print(f"colorfid bench_color — torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs")
    print(f"median of {repeats}; MP/s (higher is better); extra MiB = peak RSS over the data already in memory\n")
    rows = []
    for mp in sizes:
        cases = [c for c in CASES if not args.cases or any(c.startswith(p) for p in args.cases)]
        best: dict[str, dict] = {}
        for _ in range(max(1, args.rounds)):
            for case in cases:
                r = run_case(case, mp, repeats)
                if case not in best or r.get("mps", 0.0) > best[case].get("mps", 0.0):
                    best[case] = r
        for case in cases:
            r = best[case]
            rows.append(r)
            if "error" in r or "skipped" in r:
                print(f"{mp:5.2f} MP  {case:26s}  {r.get('skipped') or r.get('error')}")
            else:
                print(f"{r['mp']:5.2f} MP  {case:26s}  {r['mps']:8.2f} MP/s  {r['median_s']:8.3f} s  extra {r['extra_mib']:7.0f} MiB", flush=True)
    print("\nratios (colorfid / peer, same size, throughput):")
    by = {(round(r["mp"], 2), r["case"]): r for r in rows if "mps" in r}
    for mp in sorted({k[0] for k in by}):
        def ratio(a: str, b: str) -> str:
            ra, rb = by.get((mp, a)), by.get((mp, b))
            return f"{ra['mps'] / rb['mps']:6.1f}x" if ra and rb else "   n/a"
        print(
            f"{mp:5.2f} MP  sRGB(uint8)->Lab vs skimage {ratio('lab/colorfid', 'lab/skimage')}, vs colour {ratio('lab/colorfid', 'lab/colour')}, vs kornia {ratio('lab/colorfid', 'lab/kornia')}; float path vs skimage {ratio('lab/colorfid-float', 'lab/skimage')}\n"
            f"          CIEDE2000 f64 eager vs skimage {ratio('de00-f64/colorfid', 'de00-f64/skimage')}, fused vs skimage {ratio('de00-f64/colorfid-fused', 'de00-f64/skimage')}, fused vs colour {ratio('de00-f64/colorfid-fused', 'de00-f64/colour')}\n"
            f"          CIEDE2000 f32 eager vs skimage {ratio('de00-f32/colorfid', 'de00-f32/skimage')}, fused vs skimage {ratio('de00-f32/colorfid-fused', 'de00-f32/skimage')}, fused on an (H, W, 3) view vs skimage {ratio('de00-f32/colorfid-fused-hwc', 'de00-f32/skimage')}"
        )
    for dt in ("float64", "float32"):
        if args.no_compile_latency or (args.cases and not any(c.startswith("de00") for c in args.cases)):
            break
        cold, warm = compile_latency(dt)
        print(f"fused CIEDE2000 compile latency ({dt}): cold cache {cold:.1f} s, warm on-disk cache {warm:.1f} s")


if __name__ == "__main__":
    main()
