"""``python -m colorfid.train -opt options.yml [--resume STATE | --auto-resume] [--finetune CKPT]``.

Also the entry point under ``torchrun --nproc_per_node N -m colorfid.train -opt options.yml``
(DDP: NCCL on GPUs, gloo on CPU). The command is ``colorfid train``'s (:mod:`colorfid.cli`).
Exit codes: 0 done, 2 usage/configuration error, 3 training stopped
(:class:`~colorfid.errors.TrainingError`).
"""

from __future__ import annotations

import sys

from ..cli import train_main as main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
