"""The training loop: NAFNet + colorfid losses, exact resume, atomic checkpoints, DDP, validation
through the gate's own code path.

One iteration ``t`` (1-based, as BasicSR counts) does: set the learning rate (linear warm-up
``lr0 * t / warmup_iter`` while ``t < warmup_iter``, else the scheduler's value at ``t``), set the
loss-term weights of the schedule at ``t``, forward (bf16 autocast and channels_last on CUDA),
losses in float32, backward, gradient norm (clipped when ``grad_clip_norm`` is set), the
non-finite guard, optimiser step, EMA update. Every ``print_freq`` iterations a log line with
every loss component, the learning rate and it/s; every ``save_checkpoint_freq`` iterations
``models/net_g_{t}.pth`` and ``training_states/{t}.state``; every ``val_freq`` iterations a
validation with :func:`colorfid.evaluation.evaluate` and :func:`colorfid.gate.judge`.

Checkpoints: ``models/net_g_{t}.pth`` in BasicSR's layout, ``{"params": state_dict}`` (plus
``"params_ema"``), keys without ``module.`` (the official NAFNet code loads it with
``strict=True``); ``training_states/{t}.state`` as :mod:`colorfid.train.state` describes. Every
file is written atomically (temporary name, fsync, rename).

Rooms: :mod:`~colorfid.train.setup` (what the options build), :mod:`~colorfid.train.schedulers`,
:mod:`~colorfid.train.ema`, :mod:`~colorfid.train.state`, :mod:`~colorfid.train.log`,
:mod:`~colorfid.train.validation`; this module holds the step and the loop.

Fine-tune vs resume
-------------------
*Fine-tune* (``path.pretrain_network_g`` / ``--finetune CKPT``) loads weights only: fresh
optimiser, schedule and EMA, iteration 0. *Resume* (``path.resume_state`` / ``--resume STATE``)
continues exactly where the state left off. *Auto-resume* (``--auto-resume`` /
``path.auto_resume: true``) resumes from the newest state under ``experiments/<name>`` when there
is one, and never happens unless asked.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import os
import random
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Iterator, Mapping

import torch
import torch.distributed as dist
from torch import Tensor, nn

from .._files import check_output_dir, plain
from .._format import short
from ..errors import CheckpointError, ColorfidWarning, ConfigError, TrainingError, UsageError
from ..losses.pixel import CharbonnierLoss, L1Loss, MSELoss, PSNRLoss
from .ema import ModelEMA
from .log import log_step, logger, setup_logging, teardown_logging
from .options import load_options, options_to_yaml_dict
from .schedulers import CosineAnnealingRestartLR, MultiStepRestartLR, TrueCosineAnnealingLR, build_scheduler, fit_schedule
from .setup import (
    build_loss, build_losses, build_network, build_optimizer, build_validation, known_losses, load_pretrained, loss_label,
    prepare_experiment_dir,
)
from .state import (
    STATE_FORMAT, STATE_VERSION, atomic_torch_save, find_latest_state, load_training_state, rng_state,
    seed_everything, set_rng_state, to_cpu, unwrap,
)
from .validation import validate

__all__ = [
    "Trainer", "TrainSummary", "train", "ModelEMA", "CosineAnnealingRestartLR", "TrueCosineAnnealingLR",
    "MultiStepRestartLR", "L1Loss", "MSELoss", "CharbonnierLoss", "PSNRLoss", "atomic_torch_save",
    "load_training_state", "find_latest_state", "STATE_FORMAT",
    # also importable from here, as before the split
    "build_loss", "known_losses", "build_scheduler",
]


@dataclasses.dataclass
class TrainSummary:
    """What :meth:`Trainer.train` returns."""

    iteration: int
    epoch: int
    experiments_root: Path
    last_checkpoint: Path | None
    last_state: Path | None
    skipped_steps: int
    best: dict[str, Any]
    history: list[dict[str, Any]]
    seconds: float



class Trainer:
    """Build everything from the options (all errors surface here, before any step) and train.

    Args:
        opt: normalised options (:func:`colorfid.train.options.parse_options`), or a YAML path.
        resume: a training state to continue exactly (overrides ``path.resume_state``).
        auto_resume: resume from the newest state of this experiment if there is one
            (overrides ``path.auto_resume``; never on unless asked).
        finetune: weights to start from with a fresh optimiser/schedule at iteration 0
            (overrides ``path.pretrain_network_g``). Exclusive with ``resume``.
        device: ``"cpu"``, ``"cuda"``...; default: this process's GPU if there is one, else CPU.
        progress: tqdm bar (None: on a terminal only, rank 0).
        model: an ``nn.Module`` to train instead of building ``network_g`` (tests, custom nets).
        scale_schedule: scale the learning-rate and loss schedules to ``train.total_iter`` when it
            is shorter than them (overrides ``train.scale_schedule``; see
            :func:`colorfid.train.schedulers.fit_schedule`); otherwise such a run only warns.

    Under ``torchrun`` (``WORLD_SIZE`` > 1) the process group is initialised here (NCCL on GPUs,
    gloo on CPU, or ``dist_params.backend``) unless it already is.
    """

    def __init__(self, opt: Mapping[str, Any] | str | os.PathLike, *, resume: str | os.PathLike | None = None,
                 auto_resume: bool | None = None, finetune: str | os.PathLike | None = None,
                 device: str | torch.device | None = None, progress: bool | None = None,
                 model: nn.Module | None = None, scale_schedule: bool | None = None) -> None:
        if not isinstance(opt, Mapping):
            opt = load_options(opt)
        elif "unknown_keys" not in opt:  # a raw mapping (as from YAML), not yet validated
            from .options import parse_options

            opt = parse_options(opt)
        self.opt: dict[str, Any] = copy.deepcopy(dict(opt))
        o = self.opt
        paths = o["path"]
        if finetune is not None and resume is not None:
            raise UsageError("--finetune and --resume are exclusive: fine-tune starts a new run from weights, "
                             "resume continues a run exactly")
        if finetune is not None:
            paths["pretrain_network_g"] = Path(finetune).expanduser().resolve()
            paths["resume_state"] = None
        if resume is not None:
            paths["resume_state"] = Path(resume).expanduser().resolve()
        if auto_resume is not None:
            paths["auto_resume"] = bool(auto_resume)
        self.progress = progress
        self._owns_pg = False
        self._init_distributed(device)
        self.device = self._pick_device(device)
        tr = o["train"]
        scale = tr.get("scale_schedule", False) if scale_schedule is None else bool(scale_schedule)
        self.schedule_notes: list[str] = fit_schedule(tr, scale=scale, source=str(o["source"]))
        self.schedule_scaled = scale and bool(self.schedule_notes)
        if not scale:
            for note in self.schedule_notes:
                warnings.warn(note, ColorfidWarning, stacklevel=2)
        self.total_iter: int = tr["total_iter"]
        self.root: Path = paths["experiments_root"]
        check_output_dir(self.root, "experiments folder (path.experiments_root)")  # before anything is built
        self.models_dir: Path = paths["models"]
        self.states_dir: Path = paths["training_states"]

        # -- resume source (decided before anything is written)
        self.resume_path: Path | None = paths["resume_state"]
        if self.resume_path is None and paths["auto_resume"]:
            self.resume_path = find_latest_state(self.states_dir)
        state = load_training_state(self.resume_path) if self.resume_path is not None else None

        # -- seed (rank 0 decides when unset; a resumed run keeps its seed)
        seed = o["manual_seed"]
        if state is not None:
            seed = int(state["seed"])
        if seed is None:
            seed = random.SystemRandom().randrange(0, 2**31)
            if self.world_size > 1:
                box = [seed]
                dist.broadcast_object_list(box, src=0)
                seed = int(box[0])
        self.seed: int = int(seed)
        seed_everything(self.seed + self.rank)

        # -- precision
        on_cuda = self.device.type == "cuda"
        amp = tr["amp"]
        if amp == "auto":
            amp = "bf16" if on_cuda and torch.cuda.is_bf16_supported() else "off"
        if amp == "fp16" and not on_cuda:
            raise ConfigError(f"{o['source']}: train.amp: fp16 needs a CUDA device (this run is on {self.device})")
        self.amp_dtype: torch.dtype | None = {"bf16": torch.bfloat16, "fp16": torch.float16, "off": None}[amp]
        cl = tr["channels_last"]
        self.channels_last: bool = on_cuda if cl == "auto" else bool(cl)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=(amp == "fp16"))

        # -- data
        self._build_data()

        # -- network
        net = model if model is not None else build_network(o)
        self._finetune_from: Path | None = None
        self.pending_log: str | None = None
        if state is None and paths["pretrain_network_g"] is not None:
            self.pending_log = load_pretrained(net, paths["pretrain_network_g"], paths["param_key_g"],
                                               paths["strict_load_g"])
            self._finetune_from = paths["pretrain_network_g"]
        net = net.to(self.device)
        if self.channels_last:
            net = net.to(memory_format=torch.channels_last)
        if self.world_size > 1:  # DDP broadcasts rank 0's initial weights to every rank
            net = nn.parallel.DistributedDataParallel(
                net, device_ids=[self.device.index] if on_cuda else None, broadcast_buffers=False)
        self.net = net
        # the EMA copy is taken after that broadcast, so every rank averages the same weights
        self.ema: ModelEMA | None = ModelEMA(unwrap(net), tr["ema_decay"]) if tr["ema_decay"] > 0 else None

        # -- optimisation
        self.params = [p for p in unwrap(net).parameters() if p.requires_grad]
        self.optimizer = build_optimizer(self.params, tr["optim_g"])
        self.scheduler = build_scheduler(self.optimizer, tr["scheduler"])
        self.base_lrs = [float(g["lr"]) for g in self.optimizer.param_groups]
        self.warmup_iter: int = tr["warmup_iter"]
        self.clip_norm: float | None = tr["grad_clip_norm"]
        self.clip_norm_type: float = tr["grad_clip_norm_type"]
        self.max_nonfinite: int = tr["max_nonfinite_steps"]
        self.losses, self.loss_schedule = build_losses(o, self.device)
        self.wants_components = {k: hasattr(m, "set_weights") and hasattr(m, "components") for k, m in self.losses.items()}
        self.outer_weights: dict[str, float] = {k: 1.0 for k in self.losses}

        # -- validation (sets and thresholds resolved now: errors before training)
        val = build_validation(o, self.root, self.ema is not None)
        self.val_sets, self.thresholds, self.val_use_ema = val.sets, val.thresholds, val.use_ema
        self.val_inputs_to_make = val.inputs_to_make

        # -- counters
        self.iteration = 0
        self.epoch = 0
        self.samples_in_epoch = 0
        self.skipped_total = 0
        self.skipped_consecutive = 0
        self.best: dict[str, Any] = {}
        self.history: list[dict[str, Any]] = []
        self.last_checkpoint: Path | None = None
        self.last_state: Path | None = None
        self._loader_iter: Iterator | None = None
        self._loss_names: list[str] | None = None
        self._last_weights: dict[str, float] | None = None
        self.tb: Any = None  # TensorBoard writer (colorfid.train.log)
        self.log_handlers: list[logging.Handler] = []
        self.bar: Any = None
        if state is not None:
            self._restore(state)

    # ------------------------------------------------------------------ setup helpers
    def _init_distributed(self, device: str | torch.device | None) -> None:
        env_world = int(os.environ.get("WORLD_SIZE", "1"))
        if dist.is_available() and dist.is_initialized():
            self.rank, self.world_size = dist.get_rank(), dist.get_world_size()
        elif env_world > 1:
            gpu = torch.cuda.is_available() and (device is None or torch.device(device).type == "cuda")
            backend = self.opt["dist_params"]["backend"] or ("nccl" if gpu else "gloo")
            if backend == "nccl" and not gpu:
                backend = "gloo"  # BasicSR YAMLs say nccl; NCCL needs GPUs, so CPU runs use gloo
            if backend == "nccl":
                torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
            dist.init_process_group(backend=backend)
            self._owns_pg = True
            self.rank, self.world_size = dist.get_rank(), dist.get_world_size()
        else:
            self.rank, self.world_size = 0, 1
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0")) if self.world_size > 1 else 0
        self.is_main = self.rank == 0

    def _pick_device(self, device: str | torch.device | None) -> torch.device:
        if device is not None:
            dev = torch.device(device)
            if dev.type == "cuda" and not torch.cuda.is_available():
                raise UsageError(f"device {device!r} requested but CUDA is not available here")
            if dev.type == "cuda" and dev.index is None:
                dev = torch.device("cuda", self.local_rank)
            return dev
        if torch.cuda.is_available():
            return torch.device("cuda", self.local_rank % max(torch.cuda.device_count(), 1))
        return torch.device("cpu")

    def _build_data(self) -> None:
        from .data import PairedImageDataset, build_train_loader

        d = self.opt["datasets"]["train"]
        try:
            self.dataset = PairedImageDataset.from_options(d, train=True)
        except ConfigError as exc:
            raise ConfigError(f"{self.opt['source']}: datasets.train: {exc}") from exc
        self.batch_size: int = d["batch_size_per_gpu"]
        self.loader, self.sampler = build_train_loader(
            self.dataset, batch_size=self.batch_size, num_workers=d["num_worker_per_gpu"], seed=self.seed,
            rank=self.rank, world_size=self.world_size, shuffle=d["use_shuffle"],
            enlarge_ratio=d["dataset_enlarge_ratio"],
            pin_memory=d["pin_memory"] and self.device.type == "cuda", persistent_workers=d["persistent_workers"])

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """The full training state (CPU tensors and plain containers only)."""
        rng = rng_state()
        if self.world_size > 1:
            all_rng: list[Any] = [None] * self.world_size
            dist.all_gather_object(all_rng, rng)
        else:
            all_rng = [rng]
        net = unwrap(self.net)
        st = {
            "format": STATE_FORMAT,
            "version": STATE_VERSION,
            "iter": self.iteration,
            "epoch": self.epoch,
            "iteration": self.iteration,
            "seed": self.seed,
            "sampler": {"epoch": self.epoch, "position": self.samples_in_epoch, "world_size": self.world_size,
                        "batch_size": self.batch_size},
            "params": {k: v.detach().cpu() for k, v in net.state_dict().items()},
            "params_ema": None if self.ema is None else {k: v.detach().cpu() for k, v in self.ema.state_dict().items()},
            "optimizers": [to_cpu(self.optimizer.state_dict())],
            "schedulers": [] if self.scheduler is None else [self.scheduler.state_dict()],
            "scaler": self.scaler.state_dict(),
            "rng": all_rng,
            "nonfinite": {"total": self.skipped_total, "consecutive": self.skipped_consecutive},
            "best": plain(self.best),
            "finetuned_from": None if self._finetune_from is None else str(self._finetune_from),
            "options": json.loads(json.dumps(options_to_yaml_dict(self.opt), default=str)),
        }
        return st

    def _restore(self, st: Mapping[str, Any]) -> None:
        net = unwrap(self.net)
        try:
            net.load_state_dict(st["params"], strict=True)
        except RuntimeError as exc:
            raise CheckpointError(f"{self.resume_path}: the saved network does not fit network_g: {exc}") from exc
        if self.ema is not None:
            if st.get("params_ema") is None:
                raise CheckpointError(f"{self.resume_path}: EMA is on (train.ema_decay) but the state has no EMA")
            self.ema.load_state_dict(st["params_ema"])
        self.optimizer.load_state_dict(st["optimizers"][0])
        if self.scheduler is not None and st["schedulers"]:
            self.scheduler.load_state_dict(st["schedulers"][0])
        if st.get("scaler") and self.scaler.is_enabled():
            self.scaler.load_state_dict(st["scaler"])
        self.iteration = int(st["iteration"])
        self.epoch = int(st["epoch"])
        sp = st["sampler"]
        pos = int(sp["position"])
        if int(sp["world_size"]) != self.world_size:
            pos = (pos * int(sp["world_size"])) // self.world_size
            warnings.warn(f"{self.resume_path}: saved with {sp['world_size']} process(es), resumed with "
                          f"{self.world_size}: the data order continues from the same epoch position but the "
                          "run is no longer bit-identical to an uninterrupted one", ColorfidWarning, stacklevel=3)
        self.samples_in_epoch = min(pos, self.sampler.num_samples)
        self.skipped_total = int(st["nonfinite"]["total"])
        self.skipped_consecutive = int(st["nonfinite"]["consecutive"])
        self.best = dict(st.get("best") or {})
        rng = st["rng"]
        set_rng_state(rng[self.rank] if self.rank < len(rng) else rng[0])
        ft = st.get("finetuned_from")
        self._finetune_from = Path(ft) if ft else None

    # ------------------------------------------------------------------ the step
    def _lrs(self, t: int) -> list[float]:
        if self.warmup_iter > 0 and t < self.warmup_iter:
            return [b * t / self.warmup_iter for b in self.base_lrs]
        if self.scheduler is not None:
            return self.scheduler.lr_at(t)
        return list(self.base_lrs)

    def _apply_loss_schedule(self, t: int) -> None:
        w = self.loss_schedule.weights(t)  # type: ignore[union-attr]
        if w == self._last_weights:
            return
        self._last_weights = w
        for key, module in self.losses.items():
            terms = getattr(module, "TERMS", ())
            sub = {k: v for k, v in w.items() if k in terms}
            if sub:
                module.set_weights(sub)  # type: ignore[operator]
            if key in w:
                self.outer_weights[key] = float(w[key])

    def compute_loss(self, pred: Tensor, gt: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """Total loss and its components (detached) for one batch; losses run in float32."""
        pred = pred.float()
        total: Tensor | None = None
        comps: dict[str, Tensor] = {}
        for key, module in self.losses.items():
            label = loss_label(key)
            if self.wants_components[key]:
                value, parts = module(pred, gt, return_components=True)
                for k, v in parts.items():
                    if k != "total":
                        comps[f"{label}.{k}"] = v
            else:
                value = module(pred, gt)
            ow = self.outer_weights[key]
            if ow != 1.0:
                value = value * ow
            comps[label] = value.detach()
            total = value if total is None else total + value
        assert total is not None
        return total, comps

    def train_step(self, batch: Mapping[str, Any]) -> dict[str, Tensor]:
        """One iteration on ``batch`` (a dict with ``lq`` and ``gt``); returns the loss tensors.

        The returned dict holds ``l_total`` and every component, detached (DDP: this rank's).
        Raises :class:`~colorfid.errors.TrainingError` after ``max_nonfinite_steps`` non-finite
        steps in a row (each one is skipped: no weight, EMA or scaler-state change).
        """
        t = self.iteration + 1
        for g, lr in zip(self.optimizer.param_groups, self._lrs(t)):
            g["lr"] = lr
        if self.loss_schedule is not None:
            self._apply_loss_schedule(t)
        dev = self.device
        nb = dev.type == "cuda"
        lq = batch["lq"].to(dev, non_blocking=nb)
        gt = batch["gt"].to(dev, non_blocking=nb)
        if self.channels_last:
            lq = lq.contiguous(memory_format=torch.channels_last)
        self.optimizer.zero_grad(set_to_none=True)
        if self.amp_dtype is not None:
            with torch.autocast(dev.type, dtype=self.amp_dtype):
                pred = self.net(lq)
        else:
            pred = self.net(lq)
        total, comps = self.compute_loss(pred, gt)
        self.scaler.scale(total).backward()
        if self.scaler.is_enabled():
            self.scaler.unscale_(self.optimizer)
        grads = [p.grad for p in self.params if p.grad is not None]
        if self.clip_norm is not None:
            gnorm = torch.nn.utils.clip_grad_norm_(self.params, self.clip_norm, norm_type=self.clip_norm_type,
                                                   foreach=True)
        else:
            gnorm = torch.nn.utils.get_total_norm(grads, norm_type=2.0, foreach=True) if grads else total.new_zeros(())
        check = torch.stack([total.detach().float(), gnorm.detach().float().to(total.device)])
        if self.world_size > 1:
            dist.all_reduce(check)  # NaN/Inf anywhere -> every rank sees it and skips together
        finite = bool(torch.isfinite(check).all())
        if finite:
            self.scaler.step(self.optimizer)
            self.scaler.update()
            if self.ema is not None:
                self.ema.update(unwrap(self.net))
            self.skipped_consecutive = 0
        else:
            self.optimizer.zero_grad(set_to_none=True)
            if self.scaler.is_enabled():
                self.scaler.update()
            self.skipped_total += 1
            self.skipped_consecutive += 1
            logger.warning("iteration %d: non-finite loss or gradient (loss %s, grad norm %s); step skipped "
                           "(%d in a row, %d in total)", t, short(check[0]), short(check[1]),
                           self.skipped_consecutive, self.skipped_total)
            if self.skipped_consecutive >= self.max_nonfinite:
                self.iteration = t
                raise TrainingError(
                    f"{self.skipped_consecutive} consecutive non-finite training steps (iterations "
                    f"{t - self.skipped_consecutive + 1}..{t}; last loss {short(check[0])}, gradient norm "
                    f"{short(check[1])}); stopping (train.max_nonfinite_steps = {self.max_nonfinite}). Lower "
                    "train.optim_g.lr, set train.grad_clip_norm, or check the data for NaN/Inf. The last good "
                    f"checkpoint is {self.last_state or 'none (no state saved yet)'}")
        if self.scheduler is not None:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=r".*lr_scheduler\.step\(\)", category=UserWarning)
                self.scheduler.step()
        self.iteration = t
        out = {"l_total": total.detach()}
        out.update(comps)
        out["grad_norm"] = gnorm.detach()
        return out

    # ------------------------------------------------------------------ data
    def _next_batch(self) -> dict[str, Any]:
        if self._loader_iter is None:
            self.sampler.set_epoch(self.epoch, self.samples_in_epoch)
            self._loader_iter = iter(self.loader)
        try:
            batch = next(self._loader_iter)
        except StopIteration:
            self.epoch += 1
            self.samples_in_epoch = 0
            self.sampler.set_epoch(self.epoch, 0)
            self._loader_iter = iter(self.loader)
            batch = next(self._loader_iter)
        self.samples_in_epoch += self.batch_size
        return batch

    # ------------------------------------------------------------------ checkpoints
    def save_checkpoint(self) -> tuple[Path, Path] | None:
        """Write ``models/net_g_{iter}.pth`` then ``training_states/{iter}.state`` (rank 0; all
        ranks must call it under DDP: the RNG states are gathered)."""
        st = self.state_dict()
        if not self.is_main:
            return None
        net_path = self.save_network()
        state_path = self.states_dir / f"{self.iteration}.state"
        atomic_torch_save(st, state_path)
        self.last_state = state_path
        logger.info("saved %s and %s", net_path, state_path)
        return net_path, state_path

    def save_network(self, path: Path | None = None) -> Path:
        """BasicSR layout ``{'params': ..., 'params_ema': ...}`` (rank 0 only); with EMA also
        ``'train': {'iter', 'ema_decay'}``, so that an evaluation of the EMA weights can tell how
        many iterations they averaged (BasicSR and the official code read only their entry)."""
        path = path or self.models_dir / f"net_g_{self.iteration}.pth"
        obj: dict[str, Any] = {"params": {k: v.detach().cpu() for k, v in unwrap(self.net).state_dict().items()}}
        if self.ema is not None:
            obj["params_ema"] = {k: v.detach().cpu() for k, v in self.ema.state_dict().items()}
            obj["train"] = {"iter": int(self.iteration), "ema_decay": float(self.ema.decay)}
        atomic_torch_save(obj, path)
        self.last_checkpoint = path
        return path

    # ------------------------------------------------------------------ validation
    def validate(self) -> dict[str, Any] | None:
        """Evaluate on the validation sets (sharded across ranks), judge, record bests, report.

        Returns a summary dict on rank 0 (None elsewhere or without validation sets)."""
        return validate(self)

    # ------------------------------------------------------------------ logging
    # ------------------------------------------------------------------ the loop
    def train(self) -> TrainSummary:
        """Run until ``train.total_iter``; returns a :class:`TrainSummary`."""
        from tqdm.auto import tqdm

        start_time = time.perf_counter()
        if self.resume_path is not None and self.iteration >= self.total_iter:
            if self.is_main:
                print(f"colorfid train {self.opt['name']}: nothing to do: {self.resume_path} is at iteration "
                      f"{self.iteration} and train.total_iter is {self.total_iter} (raise total_iter to train on)",
                      file=sys.stderr)
            return TrainSummary(iteration=self.iteration, epoch=self.epoch, experiments_root=self.root,
                                last_checkpoint=None, last_state=self.resume_path, skipped_steps=self.skipped_total,
                                best=dict(self.best), history=[], seconds=time.perf_counter() - start_time)
        self._archived: Path | None = prepare_experiment_dir(self)
        if self.world_size > 1:
            dist.barrier()
        setup_logging(self)
        o = self.opt
        lg = o["logger"]
        val_freq = o["val"]["val_freq"] if o["val"] is not None else None
        try:
            if self.is_main:
                if self._archived is not None:
                    logger.info("an earlier run was in %s; moved to %s", self.root, self._archived)
                n_params = sum(p.numel() for p in self.params)
                mode = (f"resume from {self.resume_path} at iteration {self.iteration}" if self.resume_path else
                        f"fine-tune from {self._finetune_from}" if self._finetune_from else "from scratch")
                logger.info("colorfid train %s: %s; %s params; device %s x%d; amp %s; channels_last %s; seed %d; "
                            "%d training pairs, batch %d per process", o["name"], mode, f"{n_params:,}", self.device,
                            self.world_size, self.amp_dtype, self.channels_last, self.seed, len(self.dataset),
                            self.batch_size)
                if self.pending_log:
                    logger.info(self.pending_log)
                for note in self.schedule_notes if self.schedule_scaled else []:
                    logger.info(note)
                if self.val_sets:
                    gate_src = "none (val.gate: false or no thresholds file found)" if self.thresholds is None \
                        else self.thresholds.source
                    logger.info("validation: %d set(s) (%s), %s weights, gate thresholds: %s", len(self.val_sets),
                                ", ".join(s.name for s in self.val_sets),
                                "EMA (params_ema, what colorfid eval scores by default)" if self.val_use_ema
                                else "raw (params; colorfid eval --weights params)", gate_src)
                if self.ema is not None and self.total_iter < 1.0 / (1.0 - self.ema.decay):
                    logger.warning(
                        "train.ema_decay %g averages over ~%.0f iterations but total_iter is %d: the EMA weights "
                        "(params_ema%s) stay close to the initial weights for the whole run; lower ema_decay (e.g. "
                        "1 - 10 / total_iter) or set it to 0", self.ema.decay, 1.0 / (1.0 - self.ema.decay),
                        self.total_iter, ", what validation and colorfid eval score" if self.val_use_ema else "")
            show = self.progress if self.progress is not None else sys.stderr.isatty()
            self.bar = tqdm(total=self.total_iter, initial=self.iteration, desc=o["name"], unit="it",
                             disable=not (show and self.is_main), dynamic_ncols=True, file=sys.stderr)
            window_t0 = time.perf_counter()
            window_n = 0
            data_time = 0.0
            saved_at = validated_at = -1
            while self.iteration < self.total_iter:
                td = time.perf_counter()
                batch = self._next_batch()
                data_time += time.perf_counter() - td
                stats = self.train_step(batch)
                window_n += 1
                it = self.iteration
                self.bar.update(1)
                if it % lg["print_freq"] == 0 or it == self.total_iter:
                    now = time.perf_counter()
                    log_step(self, stats, window_n / max(now - window_t0, 1e-9), data_time / max(window_n, 1))
                    window_t0, window_n, data_time = now, 0, 0.0
                if it % lg["save_checkpoint_freq"] == 0:
                    self.save_checkpoint()
                    saved_at = it
                if val_freq and it % val_freq == 0:
                    self.validate()
                    validated_at = it
            if saved_at != self.iteration:
                self.save_checkpoint()
            if self.val_sets and validated_at != self.iteration:
                self.validate()
            if self.is_main:
                logger.info("done: iteration %d, epoch %d, %d skipped step(s), %.1fs", self.iteration, self.epoch,
                            self.skipped_total, time.perf_counter() - start_time)
        finally:
            if self.bar is not None:
                self.bar.close()
            self._loader_iter = None
            teardown_logging(self)
        return TrainSummary(iteration=self.iteration, epoch=self.epoch, experiments_root=self.root,
                            last_checkpoint=self.last_checkpoint, last_state=self.last_state,
                            skipped_steps=self.skipped_total, best=dict(self.best), history=list(self.history),
                            seconds=time.perf_counter() - start_time)

    def close(self) -> None:
        """Release the process group if this trainer created it."""
        self._loader_iter = None
        if self._owns_pg and dist.is_initialized():
            dist.barrier()
            dist.destroy_process_group()
            self._owns_pg = False


def train(opt: Mapping[str, Any] | str | os.PathLike, **kwargs: Any) -> TrainSummary:
    """Build a :class:`Trainer` (same keyword arguments) and train; releases the process group."""
    trainer = Trainer(opt, **kwargs)
    try:
        return trainer.train()
    finally:
        trainer.close()

