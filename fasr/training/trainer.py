"""The training loop (Sections III-E and IV-B): two-phase losses, Adam with two learning rates, per-epoch decay,
validation with best/last checkpoints, exact resume, SIGINT/SIGTERM handling, DDP and mixed precision.

Run folder (``out_dir``): ``config.yaml`` (resolved config), ``last.pt`` (resumable, written every epoch and on
interrupt), ``best.pt`` (highest validation PSNR), ``metrics.jsonl``, ``train.log`` and ``tb/``.

Resume is exact on CPU with ``data.num_workers: 0``: the sampler restarts at the interrupted batch and every
rank's RNG states are restored, so the weights equal those of an uninterrupted run bit for bit.
"""

from __future__ import annotations

import hashlib
import math
import shutil
import signal
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from fasr.checkpoint import (
    INFERENCE_FIELDS,
    METRICS_FILE,
    load_checkpoint,
    load_model,
    resolve_checkpoint_path,
    save_checkpoint,
)
from fasr.config import RunConfig, from_dict, save_config, to_dict
from fasr.data.datasets import build_dataset
from fasr.data.degrade import PerSample
from fasr.data.normalize import FOREGROUND_LEVEL
from fasr.data.types import PairedSample
from fasr.errors import EXIT_INTERRUPTED, FasrError
from fasr.models import GROWN_WEIGHTS, WEIGHT_FREE_FIELDS, build_model
from fasr.models.correspondence import match_target
from fasr.models.extractor import TextureExtractor
from fasr.scoring.volumes import BICUBIC, merge_predictions, predict_volumes, score_predictions, spread_indices
from fasr.training.distributed import DistContext, init_distributed, shutdown
from fasr.training.logger import LOG_FILE, TB_DIR, RunLogger
from fasr.training.losses import build_loss
from fasr.training.optim import amp_dtype, build_optimizer, build_scheduler
from fasr.training.rng import capture_rng, restore_rng, seed_everything
from fasr.training.sampler import EpochSampler, epoch_seed

__all__ = ["train", "Trainer", "resolve", "TrainingInterrupted", "RUN_FILES", "RESUMABLE_CHANGES"]

RUN_FILES = ("config.yaml", "last.pt", "best.pt", METRICS_FILE, LOG_FILE, TB_DIR)
# Config keys that may differ when resuming (extend or shorten the run, change logging); anything else would
# make the resumed run a different experiment.
RESUMABLE_CHANGES = ("schedule.epochs", "schedule.max_steps", "schedule.val_every", "data.num_workers", "log.")


class TrainingInterrupted(FasrError):
    """SIGINT/SIGTERM stopped training after a resumable checkpoint was written."""

    exit_status = EXIT_INTERRUPTED


def resolve(cfg: RunConfig) -> RunConfig:
    """``cfg`` with the loss and optimiser presets filled in (what the run folder records)."""
    return replace(cfg, loss=cfg.loss.resolved(), optim=cfg.optim.resolved())


def _flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        out.update(_flatten(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


def _changed_keys(old: RunConfig, new: RunConfig) -> list[str]:
    """Config keys whose values differ and that :data:`RESUMABLE_CHANGES` does not allow to change."""
    a, b = _flatten(to_dict(old)), _flatten(to_dict(new))
    changed = [k for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
    return [k for k in changed if not any(k == p or (p.endswith(".") and k.startswith(p)) for p in RESUMABLE_CHANGES)]


_BATCH_FIELDS = ("lr", "ref", "hr", "hr_coords", "ref_coords")


def _load_starting_weights(model: nn.Module, start: dict[str, Tensor], grown: set[str], source: str) -> None:
    """Load ``init_from`` weights into a fresh ``model``; only the weights that the ``grown`` fields
    (:data:`GROWN_WEIGHTS`) add may be missing from them, and they must be the model's fresh zeros."""
    missing, unexpected = model.load_state_dict(start, strict=False)
    marks = tuple(GROWN_WEIGHTS[f] for f in grown)
    fresh = model.state_dict()
    new = [k for k in missing if any(m in k for m in marks)]
    missing = [k for k in missing if k not in new] + [k for k in new if torch.any(fresh[k] != 0)]
    if missing or unexpected:
        raise FasrError(f"init_from '{source}' does not fit this model (missing {missing[:3]}, unexpected "
                        f"{unexpected[:3]}); fine-tune a checkpoint of the same architecture")


def _collate(samples: list[PairedSample]) -> tuple[Any, ...]:
    """Stack a batch into (lr (B, 1, h, w), ref (B, 1, H, W), hr (B, 1, H, W), hr_coords (B, 2, H, W),
    ref_coords (B, 2, H, W), the B degradation specs)."""
    stacked = tuple(torch.stack([getattr(s, k) for s in samples]) for k in _BATCH_FIELDS)
    return (*stacked, [s.degradation for s in samples])


@contextmanager
def _stop_on_signals() -> Iterator[list[bool]]:
    """Turn the first SIGINT/SIGTERM into a request (``flag[0]``) to stop after the current step; a second
    SIGINT aborts at once. Handlers are only installed in the main thread."""
    flag = [False]

    def request(signum: int, frame: Any) -> None:
        if flag[0] and signum == signal.SIGINT:
            raise KeyboardInterrupt
        flag[0] = True

    try:
        previous = {s: signal.signal(s, request) for s in (signal.SIGINT, signal.SIGTERM)}
    except ValueError:  # not the main thread
        previous = {}
    try:
        yield flag
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


class Trainer:
    """One training run; see :func:`train`."""

    def __init__(self, cfg: RunConfig, out_dir: Path, ctx: DistContext, resume: bool, force: bool) -> None:
        self.cfg, self.out_dir, self.ctx = resolve(cfg), out_dir, ctx
        # Checked before the run folder is touched: a wrong init_from must not cost an earlier run (--force).
        start = self._starting_weights(self.cfg.init_from) if self.cfg.init_from and not resume else None
        # start: (weights, the GROWN_WEIGHTS fields this run switches on over them), or None
        state, existing = self._check_run_dir(resume, force)
        seed_everything(self.cfg.seed + ctx.rank)
        data, scale = self.cfg.data, self.cfg.model.scale
        self.train_set: Dataset = build_dataset(data, "train", scale=scale, train=True)
        self.val_set: Dataset | None = build_dataset(data, "val", scale=scale, train=False)
        if len(self.val_set) == 0:
            self.val_set = None
        self.model = build_model(self.cfg.model).to(ctx.device)
        if start is not None:
            _load_starting_weights(self.model, *start, self.cfg.init_from)
        self.loss, self.perceptual_source = build_loss(self.cfg.loss, self.cfg.model.feature_levels)
        # Where a texture extractor's weights started (FASR-Net, TTSR), for the log and the checkpoints: hashed
        # once, at a fresh start, by the process that writes; a resumed run keeps what its checkpoint says.
        extractor = getattr(self.model, "extractor", None)
        self.extractor_source: str | None = None
        if isinstance(extractor, TextureExtractor) and ctx.is_main and state is None:
            self.extractor_source = (
                f"init_from {self.cfg.init_from}" if start is not None else extractor.initial_weights()
            )
        # Correspondence supervision (ours) for models with alignment modules, when loss.match_weight > 0.
        self.supervise_matching = self.loss.match_weight > 0 and hasattr(self.model, "align")
        # Degradation randomisation: models that make their own Ref-down-up make it per sample, as its LR was made.
        self.per_sample_degradation = data.degradation.kind == "random" and hasattr(self.model, "ref_degradation")
        self.loss.to(ctx.device)
        self.optimizer = build_optimizer(self.model, self.cfg.optim, self.cfg.model.name)
        self.scheduler = build_scheduler(self.optimizer, self.cfg.schedule)
        self.amp = amp_dtype(self.cfg.schedule.amp, ctx.device)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp == torch.float16)
        per_rank = self.cfg.schedule.steps_per_epoch * data.batch_size or len(self.train_set) // ctx.world_size
        self.steps_per_epoch = per_rank // data.batch_size
        if self.steps_per_epoch == 0:
            raise FasrError(
                f"training split has {len(self.train_set)} slices, fewer than one batch of {data.batch_size} per "
                "process; add subjects, lower data.batch_size or set schedule.steps_per_epoch"
            )
        self.sampler = EpochSampler(
            len(self.train_set), self.steps_per_epoch * data.batch_size, self.cfg.seed, ctx.rank, ctx.world_size
        )
        self.epoch, self.batch, self.step, self.best_psnr, self.validations = 0, 0, 0, -math.inf, 0
        self.loss_sums: dict[str, float] = {}  # this epoch's loss terms summed over its batches so far
        # Wall seconds of the run's earlier pieces up to their last checkpoint (a killed piece's time after it is
        # redone, so not counted), and when this piece began.
        self.earlier_seconds, self.piece_start = 0.0, time.perf_counter()
        self._write_run_dir(state, existing)
        if state is not None:
            self._restore(state)
        self.log = RunLogger(out_dir, self.cfg.log, ctx.is_main, resume_step=self.step if state else None)
        self.net: nn.Module = self.model
        if ctx.distributed:
            device_ids = [ctx.local_rank] if ctx.device.type == "cuda" else None
            self.net = DistributedDataParallel(self.model, device_ids=device_ids)

    # -- run folder and checkpoints ------------------------------------------------------------------------
    def _check_run_dir(self, resume: bool, force: bool) -> tuple[dict[str, Any] | None, list[str]]:
        """Check the run folder (nothing is written): the checkpoint to resume from, if any, and the run files
        already there."""
        existing = [name for name in RUN_FILES if (self.out_dir / name).exists()]
        if resume and "last.pt" not in existing:
            raise FasrError(f"nothing to resume in '{self.out_dir}' (no last.pt); start the run without --resume")
        state = None
        if resume:
            state = load_checkpoint(self.out_dir / "last.pt", map_location=self.ctx.device)
            stored = from_dict(RunConfig, state["config"])
            changed = _changed_keys(stored, self.cfg)
            if changed:
                raise FasrError(
                    f"cannot resume '{self.out_dir}': config differs from the run's in {changed}; "
                    f"pass the run's own config ({self.out_dir / 'config.yaml'}) or start over with --force"
                )
        elif existing and not force:
            raise FasrError(
                f"'{self.out_dir}' already holds a run ({', '.join(existing)}); "
                "pass --resume to continue it or --force to overwrite it"
            )
        return state, existing

    def _write_run_dir(self, state: dict[str, Any] | None, existing: list[str]) -> None:
        """Clear an overwritten run's files and write ``config.yaml``: only once the data and the model are built,
        so a run that cannot start leaves nothing behind that blocks its corrected retry (and --force never
        deletes a run for a command that fails)."""
        self.ctx.barrier()  # every rank has checked the folder before rank 0 changes it
        if self.ctx.is_main:
            for name in existing if state is None else ():
                path = self.out_dir / name
                if path.is_dir():
                    shutil.rmtree(path)
                else:
                    path.unlink()
            self.out_dir.mkdir(parents=True, exist_ok=True)
            save_config(self.cfg, self.out_dir / "config.yaml")
        self.ctx.barrier()

    def _starting_weights(self, source: str) -> tuple[dict[str, Tensor], set[str]]:
        """The weights of ``source`` (``init_from``), for a model of this run's architecture, and the fields of
        :data:`GROWN_WEIGHTS` that this run switches on over them (their weights start at zero)."""
        expected = self.cfg.init_from_sha256
        if expected is not None:  # a recipe pinned to its starting weights cannot start from other ones
            digest = hashlib.sha256(resolve_checkpoint_path(source).read_bytes()).hexdigest()
            if digest != expected.lower():
                raise FasrError(
                    f"init_from '{source}' has SHA-256 {digest[:12]}..., not the {expected[:12]}... the config pins; "
                    "give the file it was written for (or update init_from_sha256 on purpose)"
                )
        start, stored = load_model(source)
        # none of these changes the weights' shapes
        ignored = {"backbone_weights", *INFERENCE_FIELDS, *WEIGHT_FREE_FIELDS.get(self.cfg.model.name, ())}
        ours, theirs = to_dict(self.cfg)["model"], to_dict(stored)["model"]
        grown = {k for k in GROWN_WEIGHTS if ours.get(k) and not theirs.get(k)}  # new weights start at zero
        differ = sorted(f"model.{k}" for k in ours if k not in ignored | grown and ours[k] != theirs.get(k))
        if differ:
            raise FasrError(
                f"init_from '{source}' was trained with other {differ} "
                f"({', '.join(f'{k}={theirs.get(k[6:])!r}' for k in differ)}); set them as it has to fine-tune it"
            )
        return start.state_dict(), grown

    def _restore(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.epoch, self.batch, self.step = state["epoch"], state["batch"], state["step"]
        self.loss_sums = state["loss_sums"]
        self.earlier_seconds = state.get("seconds", 0.0)  # absent from checkpoints written before it was kept
        self.extractor_source = state["metrics"].get("extractor")  # absent from checkpoints written before it
        self.best_psnr, self.validations = state["metrics"]["best_psnr"], state["metrics"]["validations"]
        rng = state["rng"]
        if len(rng) == self.ctx.world_size:
            restore_rng(rng[self.ctx.rank])
        # else: a different number of processes than before -- keep the fresh seeds (not bitwise-exact).

    def _save(self, names: tuple[str, ...], metrics: dict[str, Any]) -> None:
        """Write the full training state to ``out_dir/<name>`` for each name (collective: gathers RNG states)."""
        rng = self.ctx.gather(capture_rng())
        if not self.ctx.is_main:
            return
        state = {
            "model": self.model.state_dict(),
            "config": to_dict(self.cfg),
            "epoch": self.epoch,
            "batch": self.batch,
            "step": self.step,
            "loss_sums": self.loss_sums,
            "seconds": self.seconds(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": rng,
            "metrics": {
                **metrics,
                "best_psnr": self.best_psnr,
                "validations": self.validations,
                "perceptual": self.perceptual_source,
                "extractor": self.extractor_source,
            },
        }
        for name in names:
            save_checkpoint(self.out_dir / name, state)

    def seconds(self) -> float:
        """Wall seconds of training (with validation and checkpoints) over every piece of the run so far."""
        return self.earlier_seconds + time.perf_counter() - self.piece_start

    # -- training ------------------------------------------------------------------------------------------
    def _loader(self) -> DataLoader:
        """This epoch's batches, starting after the ``self.batch`` batches already trained on."""
        self.sampler.set_epoch(self.epoch, start=self.batch * self.cfg.data.batch_size)
        return DataLoader(
            self.train_set,
            batch_size=self.cfg.data.batch_size,
            sampler=self.sampler,
            num_workers=self.cfg.data.num_workers,
            collate_fn=_collate,
            drop_last=True,
            pin_memory=self.ctx.device.type == "cuda",
            generator=torch.Generator().manual_seed(epoch_seed(self.cfg.seed + 1, self.epoch)),  # worker seeds
        )

    def _train_step(
        self, lr: Tensor, ref: Tensor, hr: Tensor, hr_coords: Tensor, ref_coords: Tensor, degradations: list[str]
    ) -> dict[str, float]:
        device = self.ctx.device
        lr, ref, hr = (t.to(device, non_blocking=True) for t in (lr, ref, hr))
        kwargs: dict[str, Any] = {}
        if self.supervise_matching:
            target = match_target(hr_coords.to(device), ref_coords.to(device), hr, 4, FOREGROUND_LEVEL)
            kwargs = {"match": target, "match_temperature": self.cfg.loss.match_temperature}
        if self.per_sample_degradation:
            kwargs["degradation"] = PerSample.of(degradations)
        with torch.autocast(device.type, dtype=self.amp, enabled=self.amp is not None):
            out = self.net(lr, ref, **kwargs)
        terms = self.loss(out.sr.float(), hr, self.epoch, out.match_loss)  # losses in fp32
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(terms.total).backward()
        if self.cfg.optim.grad_clip > 0:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.optim.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return {"total": float(terms.total.detach()), **terms.parts}

    def _finished(self) -> bool:
        s = self.cfg.schedule
        return self.epoch >= s.epochs or (s.max_steps > 0 and self.step >= s.max_steps)

    def run(self) -> Path:
        s = self.cfg.schedule
        self.log.info(
            f"{'resuming at' if self.step else 'starting'} epoch {self.epoch + 1}/{s.epochs} step {self.step}; "
            f"{self.steps_per_epoch} steps/epoch x {self.cfg.data.batch_size} x {self.ctx.world_size} process(es) "
            f"on {self.ctx.device}; {len(self.train_set)} training slices"
        )
        self.log.info(f"perceptual loss (Eq. 23): {self.perceptual_source}")
        if self.extractor_source and self.step == 0 and not self.cfg.init_from:  # init_from: the line below
            self.log.info(f"texture extractor starts from: {self.extractor_source}")
        if self.cfg.init_from and self.step == 0:
            self.log.info(f"starting from the weights of '{self.cfg.init_from}' (init_from)")
        if self.supervise_matching:
            self.log.info(f"correspondence loss on (loss.match_weight={self.loss.match_weight})")
        try:
            with _stop_on_signals() as stop:
                while not self._finished():
                    self._run_epoch(stop)
        finally:
            self.log.close()
        return self.out_dir / "best.pt"

    def _run_epoch(self, stop: list[bool]) -> None:
        s, world, batch_size = self.cfg.schedule, self.ctx.world_size, self.cfg.data.batch_size
        self.model.train()
        bar = tqdm(
            total=self.steps_per_epoch,
            initial=self.batch,
            desc=f"epoch {self.epoch + 1}/{s.epochs}",
            disable=not (self.ctx.is_main and self.cfg.log.progress),
            leave=False,
            dynamic_ncols=True,
            mininterval=0.1 if sys.stderr.isatty() else 30.0,  # a log file gets a line every 30 s, not every step
        )
        start, trained = time.perf_counter(), 0
        for batch in self._loader():
            parts = self._train_step(*batch)
            if not math.isfinite(parts["total"]) and not self.scaler.is_enabled():  # fp16 AMP skips such steps
                raise FasrError(
                    f"the loss became {parts['total']} at step {self.step + 1}; lower optim.lr_rest/lr_extractor "
                    "or set optim.grad_clip, then --resume from last.pt or start over with --force"
                )
            self.batch, self.step, trained = self.batch + 1, self.step + 1, trained + 1
            self.loss_sums = {k: self.loss_sums.get(k, 0.0) + v for k, v in parts.items()}
            speed = trained * batch_size * world / (time.perf_counter() - start)
            bar.set_postfix(loss=f"{parts['total']:.4f}", samples_s=f"{speed:.1f}")
            bar.update()
            if self.step % self.cfg.log.log_every == 0:
                self.log.scalars("loss", self.ctx.mean(parts), self.step)
                self.log.scalars("lr", {g["name"]: g["lr"] for g in self.optimizer.param_groups}, self.step)
            if self.ctx.any(stop[0]):
                bar.close()
                self._save(("last.pt",), {})
                self.log.info(f"interrupted at epoch {self.epoch + 1} step {self.step}; saved last.pt")
                raise TrainingInterrupted(
                    f"training interrupted at step {self.step}; resumable checkpoint {self.out_dir / 'last.pt'}; "
                    f"continue with `fasr train --out {self.out_dir} --resume`"
                )
            if s.max_steps and self.step >= s.max_steps:
                break
        bar.close()
        seconds = time.perf_counter() - start
        completed, batches = self.batch == self.steps_per_epoch, self.batch
        if completed:
            self.epoch, self.batch = self.epoch + 1, 0
            self.scheduler.step()
        record = {
            "epoch": self.epoch if completed else self.epoch + 1,
            "step": self.step,
            "loss": self.ctx.mean({k: v / max(batches, 1) for k, v in self.loss_sums.items()}),
            "lr": {g["name"]: g["lr"] for g in self.optimizer.param_groups},
            "samples_per_s": trained * batch_size * world / max(seconds, 1e-9),
        }
        self.log.scalars("loss_epoch", record["loss"], self.step)
        if completed:
            self.loss_sums = {}
        validate = self.val_set is not None and (self._finished() or self.epoch % s.val_every == 0)
        self._end_epoch(record, validate)

    def _end_epoch(self, record: dict[str, Any], validate: bool) -> None:
        """Validate (maybe), then write ``last.pt`` and, on a new best validation PSNR, ``best.pt``."""
        if not validate:
            self._save(("last.pt",) + (("best.pt",) if self.val_set is None else ()), {})
            if self.val_set is None:
                self.log.info(f"epoch {record['epoch']} step {self.step}: no validation split; best.pt = last.pt")
            return
        scores, volumes = self._validate()
        key = self.cfg.model.name
        record.update({k: scores[key][k] for k in ("psnr", "ssim", "nmse")})
        record.update({f"{BICUBIC}_{k}": scores[BICUBIC][k] for k in ("psnr", "ssim")})
        improved = record["psnr"] > self.best_psnr
        self.best_psnr = max(self.best_psnr, record["psnr"])
        self.log.validation(record, volumes, key, self.validations)
        self.validations += 1
        metrics = {k: record[k] for k in ("psnr", "ssim", "nmse", "bicubic_psnr", "bicubic_ssim")}
        self._save(("last.pt", "best.pt") if improved else ("last.pt",), metrics)

    def _validate(self) -> tuple[dict[str, Any], dict]:
        """fastMRI-convention scores on (at most ``log.val_max_slices``) validation slices, shared over ranks."""
        indices = spread_indices(len(self.val_set), self.cfg.log.val_max_slices)
        mine = indices[self.ctx.rank :: self.ctx.world_size]
        models = {self.cfg.model.name: self.model}
        shard = predict_volumes(models, self.val_set, mine, self.cfg.data.batch_size, self.ctx.device)
        volumes = merge_predictions(self.ctx.gather(shard))
        self.model.train()
        return score_predictions(volumes, "fastmri"), volumes


def train(cfg: RunConfig, out_dir: Path, resume: bool = False, force: bool = False) -> Path:
    """Train a model as ``cfg`` describes, writing the run folder ``out_dir``; returns ``out_dir/best.pt``.

    Under ``torchrun`` every process calls this; rank 0 alone logs and writes files.

    Args:
        cfg: the run config (presets are resolved here).
        out_dir: run folder; must not already hold a run unless ``resume`` or ``force``.
        resume: continue from ``out_dir/last.pt`` (the config may only differ in :data:`RESUMABLE_CHANGES`).
        force: delete an existing run's files in ``out_dir`` and start over.

    Raises:
        TrainingInterrupted: after SIGINT/SIGTERM, once ``last.pt`` is written.
    """
    ctx = init_distributed()
    try:
        return Trainer(cfg, Path(out_dir), ctx, resume, force).run()
    finally:
        shutdown(ctx)
