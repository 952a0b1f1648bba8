"""Keep the C heap from being handed back to the kernel between chunks of per-pixel work.

Why: colorfid's per-pixel maths (colour conversions, CIEDE2000, image metrics) runs in chunks
whose temporaries are a few hundred KiB to a few MiB each. glibc's ``malloc`` serves blocks above
its mmap threshold (initially 128 KiB) with a fresh ``mmap`` and returns them with ``munmap``, and
trims the top of the heap once more than twice that threshold is free -- so, by default, every
temporary costs page faults on first touch, which can cost the conversions and metrics as much
as their arithmetic (``python bench/bench_color.py`` measures it).

glibc's own remedy is its *dynamic* mmap threshold (mallopt(3), M_MMAP_THRESHOLD): when a block
that was served by mmap is freed, the threshold rises to that block's size (up to 32 MiB on
64-bit) and the trim threshold to twice it. :func:`warm` triggers it once per process by
allocating and freeing one untouched ~32 MiB block (an ``mmap``/``munmap`` pair; no page is
touched, so it costs microseconds). Afterwards chunk temporaries are recycled from the heap.
Nothing else changes: no ``mallopt`` call, no fixed threshold; on other C libraries the block
is simply allocated and freed. ``COLORFID_HEAP_WARMUP=0`` in the environment turns it off.

"""

from __future__ import annotations

import os

import torch

#: Just under glibc's DEFAULT_MMAP_THRESHOLD_MAX (32 MiB on 64-bit), the most the dynamic
#: threshold rises to.
_BLOCK_BYTES = (32 << 20) - (1 << 16)

_done = False


def warm() -> None:
    """Raise glibc's dynamic mmap/trim thresholds once per process (see the module notes)."""
    global _done
    if _done:
        return
    _done = True
    if os.environ.get("COLORFID_HEAP_WARMUP", "1") == "0":
        return
    block = torch.empty(_BLOCK_BYTES, dtype=torch.uint8)  # never touched: no page faults
    del block

