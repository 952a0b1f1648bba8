#!/usr/bin/env python
"""Screenshot an HTML report with headless Chromium into a small PNG (docs/report_screenshot.png).

    python scripts/screenshot_report.py --html colorfid-report/index.html   # a real report
    python scripts/screenshot_report.py                                     # a generated demo report
    python scripts/screenshot_report.py --full-page --out /tmp/full.png     # the whole page

Dev-time script (the README's picture). It drives the system Chromium over the DevTools pipe
with the client of tests/test_report_browser.py (nothing is downloaded), captures the top of
the page (header, set x metric matrix, first worst image) at ``--width`` CSS pixels, and
shrinks the PNG (fewer bits per channel, then a palette) until it is at most ``--max-bytes``.
Without ``--html`` it first writes a demo report of generated images (three checkpoints, a
baseline and a gate verdict; tests/test_report.py's ``make_report``) into a temp folder.
"""

from __future__ import annotations

import argparse
import base64
import io
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))


def shrink_png(png: bytes, max_bytes: int) -> bytes:
    """Fit a PNG into ``max_bytes``: full colour, then 6/5/4 bits per channel (smooth colour bars
    stay smooth, unlike a 256-colour palette), then a dithered palette at smaller sizes."""
    from PIL import Image

    im = Image.open(io.BytesIO(png)).convert("RGB")

    def encode(img: Image.Image) -> bytes:
        buf = io.BytesIO()
        img.save(buf, format="PNG", optimize=True)
        return buf.getvalue()

    def levels(bits: int) -> Image.Image:  # round to 2**bits levels; white stays white
        step = 256 >> bits
        lut = [min(255, round(v / step) * step) for v in range(256)]
        return im.point(lut * 3)

    for bits in (8, 6, 5, 4):
        data = encode(im if bits == 8 else levels(bits))
        if len(data) <= max_bytes:
            return data
    f = 1.0
    while True:
        small = im.resize((round(im.width * f), round(im.height * f)), Image.Resampling.LANCZOS)
        data = encode(small.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.FLOYDSTEINBERG))
        if len(data) <= max_bytes or f < 0.3:
            return data
        f *= 0.85


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--html", type=Path, default=None, help="report index.html (default: generate a demo report)")
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "report_screenshot.png")
    ap.add_argument("--width", type=int, default=1000, help="viewport width in CSS px")
    ap.add_argument("--height", type=int, default=1480, help="height captured in CSS px (top of the page)")
    ap.add_argument("--full-page", action="store_true", help="capture the whole page (for reviewing, not the README)")
    ap.add_argument("--max-bytes", type=int, default=300_000)
    args = ap.parse_args(argv)

    from test_report_browser import Chromium, find_chromium

    exe = find_chromium()
    if exe is None:
        print("no Chromium found (install Debian's chromium or set COLORFID_CHROMIUM)", file=sys.stderr)
        return 2
    html = args.html
    if html is None:
        from test_report import make_report

        html, _, _ = make_report(Path(tempfile.mkdtemp(prefix="colorfid-demo-")), n_checkpoints=3, size=(192, 288))
        print(f"demo report: {html}", file=sys.stderr)
    b = Chromium(exe)
    try:
        b.open_page()
        b.send("Emulation.setDeviceMetricsOverride", {"width": args.width, "height": args.height, "deviceScaleFactor": 1, "mobile": False})
        b.navigate(html.resolve().as_uri())
        b.eval("Promise.all(Array.from(document.images).map(function (i) { return i.decode().catch(function () {}); }))")
        height = args.height
        if args.full_page:
            height = int(b.eval("document.documentElement.scrollHeight"))
        shot = b.send(
            "Page.captureScreenshot",
            {"format": "png", "captureBeyondViewport": True, "clip": {"x": 0, "y": 0, "width": args.width, "height": height, "scale": 1}},
        )
    finally:
        b.close()
    png = base64.b64decode(shot["data"])
    if not args.full_page:
        png = shrink_png(png, args.max_bytes)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(png)
    print(f"{args.out} ({len(png) / 1000:.0f} kB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
