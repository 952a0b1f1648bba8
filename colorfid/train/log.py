"""The run's log: rank 0 writes a log file and progress-bar-friendly lines, optional
TensorBoard scalars, and ``train_log.jsonl``; other ranks stay silent."""

from __future__ import annotations

import datetime as _dt
import json
import logging
import sys
import warnings
from typing import Any, Mapping

import torch
import torch.distributed as dist
from torch import Tensor

from .._files import plain
from ..errors import ColorfidWarning

__all__ = ["logger", "TqdmHandler", "setup_logging", "teardown_logging", "log_step"]

logger = logging.getLogger("colorfid.train")


class TqdmHandler(logging.Handler):
    """Log lines through ``tqdm.write``, so they do not break the progress bar."""

    def __init__(self, stream: Any) -> None:
        super().__init__()
        self.stream = stream

    def emit(self, record: logging.LogRecord) -> None:
        try:
            from tqdm.auto import tqdm

            tqdm.write(self.format(record), file=self.stream)
        except Exception:  # pragma: no cover
            self.handleError(record)


def setup_logging(tr: Any) -> None:
    """Attach the run's handlers (file + console on rank 0) and TensorBoard when asked."""
    if not tr.is_main:  # only rank 0 logs; other ranks raise on errors
        h = logging.NullHandler()
        logger.addHandler(h)
        tr.log_handlers.append(h)
        logger.propagate = False
        return
    tr.root.mkdir(parents=True, exist_ok=True)
    stamp = _dt.datetime.now().strftime("%Y%m%d_%H%M%S")
    fmt = logging.Formatter("%(asctime)s %(levelname)s: %(message)s", "%Y-%m-%d %H:%M:%S")
    fh = logging.FileHandler(tr.root / f"train_{tr.opt['name']}_{stamp}.log", encoding="utf-8")
    fh.setFormatter(fmt)
    ch = TqdmHandler(sys.stderr)
    ch.setFormatter(fmt)
    for h in (fh, ch):
        logger.addHandler(h)
        tr.log_handlers.append(h)
    logger.setLevel(logging.INFO)
    logger.propagate = False  # the handlers above print; no second copy via the root logger
    if tr.opt["logger"]["use_tb_logger"]:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            warnings.warn("logger.use_tb_logger is true but tensorboard is not installed "
                          "(pip install 'colorfid[tb]'); no TensorBoard scalars are written", ColorfidWarning,
                          stacklevel=3)
        else:
            tr.tb = SummaryWriter(log_dir=str(tr.root / "tb_logger"))


def teardown_logging(tr: Any) -> None:
    """Detach and close what :func:`setup_logging` attached."""
    for h in tr.log_handlers:
        logger.removeHandler(h)
        h.close()
    tr.log_handlers = []
    logger.propagate = True
    if tr.tb is not None:
        tr.tb.close()
        tr.tb = None


def log_step(tr: Any, stats: Mapping[str, Tensor], its: float, data_time: float) -> None:
    """One log line (losses averaged over ranks), a ``train_log.jsonl`` record, the bar's postfix
    and TensorBoard scalars."""
    names = list(stats)
    vec = torch.stack([stats[k].detach().float().reshape(()) for k in names])
    if tr.world_size > 1:
        dist.all_reduce(vec)
        vec /= tr.world_size
    if not tr.is_main:
        return
    vals = dict(zip(names, vec.tolist()))
    lrs = [g["lr"] for g in tr.optimizer.param_groups]
    it = tr.iteration
    losses = " ".join(f"{k}: {v:.4e}" for k, v in vals.items())
    logger.info("[%s][epoch:%3d, iter:%8d, lr:(%s)] [it/s: %.2f, data: %.3fs] %s%s", tr.opt["name"],
                tr.epoch, it, ",".join(f"{lr:.3e}" for lr in lrs), its, data_time, losses,
                f" skipped: {tr.skipped_total}" if tr.skipped_total else "")
    rec = {"iter": it, "epoch": tr.epoch, "lr": lrs, "it_s": its, "data_s": data_time,
           "losses": vals, "skipped": tr.skipped_total}
    with open(tr.root / "train_log.jsonl", "a", encoding="utf-8") as fh:
        fh.write(json.dumps(plain(rec)) + "\n")
    if tr.bar is not None:
        tr.bar.set_postfix_str(f"loss {vals.get('l_total', float('nan')):.4g} lr {lrs[0]:.2e}", refresh=False)
    if tr.tb is not None:
        for k, v in vals.items():
            tr.tb.add_scalar(f"losses/{k}", v, it)
        tr.tb.add_scalar("lr", lrs[0], it)
        tr.tb.add_scalar("it_per_s", its, it)
