"""The training loop, read top to bottom: `train` builds (machine, corpora, data, model, optimizer, schedule, run
files, resumed state), then `loop` runs step -> log -> validate -> keep best -> save -> stop, then `finish`.

One update (`train_step`): teacher-forced logits for the shifted targets of a Batch (the shift is made in
`data/batch.collate`), the masked loss per real target token (`model/loss.masked_nll`, divided here), backward, clip,
optimizer step; then the moving average of the weights follows (train.ema_decay). Everything a resume needs is in
the checkpoint (`Progress`, the optimizer, the schedule and its horizon, early stopping, the k best, the EMA and
every rank's random generators), so a run killed and resumed ends as the run never interrupted, under DDP too (with
the same number of processes).
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

import torch

from seq2seq.config import Config, TrainConfig
from seq2seq.data.batch import Batch, collate
from seq2seq.device import autocast
from seq2seq.errors import DataError
from seq2seq.model.checkpoint import Checkpoint, record_default_model
from seq2seq.model.loss import masked_nll
from seq2seq.model.network import Seq2Seq
from seq2seq.training import distributed, finetune
from seq2seq.training.ema import EMA, ema_views
from seq2seq.training.build import (
    Data, Machine, build_data, build_model, build_schedule, data_report_lines, make_optimizer, read_corpora, setup_machine,
)
from seq2seq.training.interrupt import StopRequest, TrainingInterrupted
from seq2seq.training.logs import (
    attach_log_file, bars_wanted, epoch_bar, format_interval, log_done, log_setup, log_stop, setup_logging,
)
from seq2seq.training.metrics import MetricsLogger, read_metrics
from seq2seq.training.resume import Progress, progress_state, resume_state, rng_state
from seq2seq.runfiles import RunFiles
from seq2seq.training.rundir import ensure_dir, prepare_run_dir, remove_stale_run_files
from seq2seq.training.schedule import Best, EarlyStopping, LRSchedule, Pace, planned_horizon, validation_due
from seq2seq.training.validate import (
    KeptBest, best_record, log_validation, metric_label, score_validation,
)

__all__ = ["Progress", "TrainResult", "make_optimizer", "train", "train_step"]

log = logging.getLogger("seq2seq")


@dataclass
class TrainResult:
    run_dir: Path
    progress: Progress  # progress.best_score: the run's best, over all its sessions
    best_scores: dict[str, Any] | None  # the validation record of that best (rank 0; None before any validation)


def train_step(
    forward_model: torch.nn.Module,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    batch: Batch,
    t: TrainConfig,
    device: torch.device,
    precision: str,
    dist_ctx: distributed.DistContext = distributed.DistContext(),
) -> tuple[bool, torch.Tensor, int]:
    """One update on `batch` (already on `device`): forward, masked loss per real token, backward, clip, step.

    `forward_model` is `model` or its DDP wrapper. The loss is divided by the real target tokens of all ranks.
    Returns (finite, summed loss over all ranks, their real token count); a non-finite loss or gradient
    norm updates nothing, with clipping on or off (every rank sees the same global figures, so all skip together).
    """
    with autocast(device, precision):
        logits = forward_model(batch.src, batch.src_lengths, batch.tgt_in, t.teacher_forcing_ratio)  # (B, T, V)
    loss_sum, n_tokens = masked_nll(logits, batch.tgt_out, t.label_smoothing)  # summed over real tokens, their count
    total_sum, total_tokens = distributed.global_sums(loss_sum, n_tokens, dist_ctx)  # over all ranks (one: the same)
    # The loss per real target token. Under DDP, which averages gradients over the N ranks, times N: the update
    # is grad(all ranks' summed losses) / all ranks' tokens, one process's update on the union of the batches.
    loss = loss_sum * (dist_ctx.world_size / total_tokens)
    optimizer.zero_grad(set_to_none=True)
    finite = bool(torch.isfinite(total_sum))
    if finite:
        loss.backward()
        if t.clip_grad > 0:
            norm = torch.nn.utils.clip_grad_norm_(model.parameters(), t.clip_grad)
        else:  # no clipping, but a non-finite gradient must not reach the weights either
            norm = torch.nn.utils.get_total_norm([p.grad for p in model.parameters() if p.grad is not None])
        finite = bool(torch.isfinite(norm))
        if finite:
            optimizer.step()
    return finite, total_sum, total_tokens


@dataclass
class Run:
    """What `train` built, handed to the loop: a record, not an object with behaviour."""

    cfg: Config
    files: RunFiles
    machine: Machine
    data: Data
    model: Seq2Seq
    forward_model: torch.nn.Module  # `model`, or its DDP wrapper; validation and checkpoints use `model`
    optimizer: torch.optim.Optimizer
    schedule: LRSchedule
    early: EarlyStopping
    progress: Progress
    kept: KeptBest
    metrics: MetricsLogger | None  # rank 0 only
    bars: bool  # progress bars: rank 0, not --quiet, stderr a terminal
    stop_request: StopRequest | None
    ema: EMA | None  # train.ema_decay > 0: the moving average of the weights
    clock: Callable[[], float]  # seconds, for `elapsed` and train.max_time (time.monotonic; tests pass their own)


def train(
    cfg: Config, run_dir: Path, resume: bool = False, overwrite: bool = False, quiet: bool = False,
    stop_request: StopRequest | None = None, clock: Callable[[], float] = time.monotonic,
) -> TrainResult:
    """Train a model as configured, writing everything into `run_dir`.

    The corpora are read before anything is written, so a wrong path leaves no run directory behind. When
    `stop_request.requested` turns true (a signal), the current step ends, last.pt is written and
    TrainingInterrupted is raised. `clock` measures the training time (train.max_time and its planned horizon).
    """
    files = RunFiles(Path(run_dir))
    machine = setup_machine(cfg.train)
    dist = machine.dist
    setup_logging(quiet or not dist.is_main, buffer=True)
    cfg, source = finetune.start(cfg, files, resume)
    t = cfg.train
    corpora = read_corpora(cfg, files)
    # The inputs are good: now the run directory may be made, and the log lines so far go into its train.log.
    distributed.on_main(lambda: (prepare_run_dir(files, cfg, resume, overwrite), ensure_dir(files.root), remove_stale_run_files(files)), dist)
    attach_log_file(files.log if dist.is_main else None)
    if not dist.is_main:
        log.setLevel(logging.ERROR)
    random.seed(t.seed)
    torch.manual_seed(t.seed)
    bars = bars_wanted(quiet, dist.is_main)
    data = build_data(cfg, files, corpora, dist, progress=bars, init=source)
    model = build_model(cfg, data, machine, init=source)
    optimizer = make_optimizer(model, t)
    schedule = build_schedule(t, len(data.sampler.batches(0)))
    early = EarlyStopping(t.patience)
    ema = EMA(model, t.ema_decay) if t.ema_decay > 0 else None  # from the weights the run starts from
    if resume:
        progress, kept = resume_state(cfg, files, machine, data, model, optimizer, schedule, early, ema)
    else:
        progress, kept = Progress(best=Best(t.metric), world_size=dist.world_size), []
        distributed.seed_rank(t.seed, 0, dist)  # each rank its own dropout, after the shared initialization
    metrics = MetricsLogger(files.metrics, files.tensorboard if t.tensorboard else None, progress.step if resume else None) if dist.is_main else None
    run = Run(
        cfg, files, machine, data, model, distributed.wrap(model, dist), optimizer, schedule, early, progress,
        KeptBest(files, t.keep_best, progress.best, kept), metrics, bars, stop_request, ema, clock,
    )
    if dist.is_main:  # after everything that may refuse the run (a broken last.pt): its train.log stays as it was
        for line in data_report_lines(cfg, corpora, data, fine_tuning=source is not None):
            log.info("data report: %s", line)
    log_setup(cfg, machine, model, len(data.examples), files.root)
    resumed_at = progress.step if resume else None
    reason = loop(run)
    return finish(run, reason, resumed_at)


def loop(run: Run) -> str:
    """Train until a stop condition holds; returns its config key (train.epochs, max_steps, max_time, patience)."""
    p, t, data, machine = run.progress, run.cfg.train, run.data, run.machine
    started = run.clock() - p.elapsed
    window = Window()
    run.model.train()
    while p.epoch < t.epochs:
        batches = data.sampler.batches(p.epoch)
        bar = epoch_bar(len(batches), p.batch_in_epoch, p.epoch, t.epochs, run.bars)
        for index in batches[p.batch_in_epoch :]:
            reason = stop_reason(run)  # before every update: a resumed run may have stopped already
            if reason is not None:
                bar.close()
                return reason
            # step (under train.max_time the schedule's horizon is first planned, once, from the saved progress)
            if run.schedule.pending:
                plan_horizon(run)
            before = p.elapsed  # the training clock before this update, for train.valid_every_minutes
            batch = collate([data.examples[i] for i in index]).to(machine.device)
            for group in run.optimizer.param_groups:
                group["lr"] = run.schedule.lr_at(p.step + 1)
            finite, loss_sum, n_tokens = train_step(
                run.forward_model, run.model, run.optimizer, batch, t, machine.device, machine.precision, machine.dist
            )
            if finite and run.ema is not None:
                run.ema.update(run.model)
            count_update(run, finite, loss_sum, n_tokens, window)
            p.step += 1
            p.batch_in_epoch += 1
            p.elapsed = run.clock() - started
            if p.step == t.warmup_steps:  # the pace that plans a budget's horizon is measured from here
                p.warm_step, p.warm_elapsed, p.warm_valid_seconds = p.step, p.elapsed, p.valid_seconds
            bar.update(1)
            # log
            if p.step % 10 == 0 or p.step % t.log_every == 0:
                window = report(run, window, bar)
            # validate -> keep best -> save (by the clock: rank 0's decides, as the ranks' clocks differ)
            due = validation_due(t, p.step, before, p.elapsed)
            if t.valid_every_minutes is not None:
                due = distributed.from_main(float(due), machine.dist) > 0.5
            if due:
                validate_and_save(run)
            # save on schedule or on a signal (all ranks stop at the same step, even if only some got it)
            interrupted = distributed.any_rank(run.stop_request is not None and run.stop_request.requested, machine.dist)
            if (interrupted or (t.save_every and p.step % t.save_every == 0)) and p.validated_at != p.step:
                save_last(run)  # validate_and_save has just saved it otherwise
            # stop on a signal
            if interrupted:
                bar.close()
                distributed.barrier(machine.dist)  # the checkpoint is on disk before any rank exits
                name = (run.stop_request and run.stop_request.signal_name) or "a signal"
                raise TrainingInterrupted(name, p.step, run.files.last)
        bar.close()
        p.epoch += 1
        p.batch_in_epoch = 0
        if not t.valid_every and t.valid_every_minutes is None and p.validated_at != p.step:
            validate_and_save(run)  # the end of an epoch
    return "train.patience" if run.early.stopped else "train.epochs"


def stop_reason(run: Run) -> str | None:
    """The one place the stop conditions are checked (all ranks agree on each)."""
    p, t = run.progress, run.cfg.train
    out_of_time = t.max_time is not None and p.elapsed >= t.max_time * 60
    if t.max_time is not None and distributed.any_rank(out_of_time, run.machine.dist):  # clocks differ: all stop together
        return "train.max_time"
    if t.max_steps is not None and p.step >= t.max_steps:
        return "train.max_steps"
    if run.early.stopped:
        return "train.patience"
    return None


class Window:
    """Training loss and tokens/s since the last metrics record."""

    def __init__(self) -> None:
        self.start, self.loss, self.tokens = time.monotonic(), 0.0, 0

    def add(self, loss_sum: float, n_tokens: int) -> None:
        self.loss += loss_sum
        self.tokens += n_tokens

    def figures(self) -> tuple[float, float]:
        """(loss per real token, tokens/s)."""
        return self.loss / max(self.tokens, 1), self.tokens / max(time.monotonic() - self.start, 1e-9)


def count_update(run: Run, finite: bool, loss_sum: torch.Tensor, n_tokens: int, window: Window) -> None:
    """Count a made update, or a skipped one: train.max_bad_steps of them in a row stop the run (DataError)."""
    p = run.progress
    if finite:
        p.bad_steps = 0
        p.tgt_tokens += n_tokens
        window.add(loss_sum.item(), n_tokens)
        return
    p.bad_steps += 1
    log.warning("step %d: non-finite loss or gradient, update skipped (%d in a row)", p.step + 1, p.bad_steps)
    if p.bad_steps >= run.cfg.train.max_bad_steps:
        last = run.files.last
        last_good = f"the last good checkpoint is {last}" if last.exists() else "no checkpoint was saved"
        raise DataError(
            f"training diverged: {p.bad_steps} non-finite losses in a row (train.max_bad_steps); {last_good} (try a lower train.lr)"
        )


def report(run: Run, window: Window, bar: Any) -> Window:
    """The bar's figures every 10 updates; a metrics record every train.log_every, which starts a new window."""
    p, t = run.progress, run.cfg.train
    loss, rate = window.figures()
    postfix = {"loss": f"{loss:.3f}", "tok_s": f"{rate:,.0f}"}
    if t.max_time is not None:
        postfix["max_time_in"] = format_interval(max(t.max_time * 60 - p.elapsed, 0))
    bar.set_postfix(postfix)
    if p.step % t.log_every != 0 or run.metrics is None:
        return window
    run.metrics.log({
        "step": p.step, "epoch": p.epoch + 1, "train_loss": loss, "lr": run.optimizer.param_groups[0]["lr"],
        "tokens_per_s": rate, "tgt_tokens": p.tgt_tokens, "elapsed": p.elapsed,
    })
    return Window()


def validate_and_save(run: Run) -> None:
    """Validate -> log -> keep best -> save. Rank 0 scores the validation set (train.metric; with train.ema_decay the
    EMA's weights too), writes the record, best.pt on a new best (the better of the two weights), ckpt-STEP.pt among
    the k best and last.pt; every rank takes the same schedule and early-stopping steps from rank 0's score."""
    p, t, machine = run.progress, run.cfg.train, run.machine
    p.validated_at = p.step
    began = run.clock()
    scored = score_validation(run.model, run.ema, run.data, machine, run.cfg, p, run.bars, model_state(run)) if machine.dist.is_main else None
    score = distributed.from_main(scored.score if scored is not None else 0.0, machine.dist)
    spent = run.clock() - began  # what the budget pays per validation (train.max_time's horizon counts it)
    p.elapsed, p.valid_seconds, p.validations = p.elapsed + spent, p.valid_seconds + spent, p.validations + 1
    improved = p.best.update(score)  # the one question; the plateau, early stopping and best.pt take its answer
    label = metric_label(t.metric)
    if run.schedule.on_validation(improved):
        log.info("step %d: val %s on a plateau (train.plateau_patience): learning rate now %.3g", p.step, label, run.schedule.lr_at(p.step + 1))
    run.early.update(improved)
    if scored is not None and run.metrics is not None:
        log_validation(t.metric, p.step, scored, improved)
        run.metrics.log(scored.record)
        run.kept.offer(p.step, score, scored.best)
    state = checkpoint_state(run)  # gathers every rank's random generators; None on the other ranks
    if state is not None:
        if improved and scored is not None:
            replace(state, weights=scored.best.weights, scores=scored.best.scores).write(run.files.best)
        state.write(run.files.last)
    distributed.barrier(machine.dist)


def plan_horizon(run: Run) -> None:
    """train.max_time: fix the schedule's horizon once `schedule.plan_due` says the pace is known (the rule and its
    why: training/schedule.py), from the saved progress, not the clock, so a resumed run plans as the run never
    interrupted; rank 0 plans and every rank takes its horizon."""
    p, t, d, dist = run.progress, run.cfg.train, run.data, run.machine.dist
    since = (p.warm_step, p.warm_elapsed, p.warm_valid_seconds) if p.warm_step >= 0 else None
    pace = Pace(p.step, p.elapsed, p.valid_seconds, p.validations, since)
    planned, rate = -1.0, 0.0
    if dist.is_main and run.schedule.plan_due(pace, p.validated_at, (t.max_time or 0) * 60):
        per_epoch = len(d.sampler.batches(p.epoch))  # this rank's batches, one per update
        horizon, rate = planned_horizon(t, pace, per_epoch, len(d.examples) / max(per_epoch * dist.world_size, 1), len(d.valid_pairs.pairs))
        planned = float(horizon)
    planned = distributed.from_main(planned, dist)
    if planned < 0:
        return
    horizon = run.schedule.plan(int(planned), p.step)
    decay = "" if run.schedule.decay_start is None else f"; the decay runs from update {run.schedule.decay_start + 1}"
    log.info(
        "learning-rate horizon: %d updates, planned from the rate of updates %d-%d (%.1f updates/min incl. "
        "validation) for max_time %g min%s", horizon, (since[0] if since and p.step > since[0] else 0) + 1, p.step,
        rate * 60, t.max_time, decay,
    )


def model_state(run: Run) -> Checkpoint:
    """What decoding needs: weights, config, vocabularies and tokenizers."""
    d = run.data
    return Checkpoint(run.cfg, d.src_vocab, d.tgt_vocab, d.src_tokenizer, d.tgt_tokenizer, run.model.state_dict(), run.progress.step)


def checkpoint_state(run: Run) -> Checkpoint | None:
    """What resuming needs besides (rank 0; None on the others, whose random generators it gathers): optimizer,
    progress, every rank's random generators, schedule, early stopping, the k best."""
    rngs = distributed.gather_objects(rng_state(), run.machine.dist)  # in rank order
    if not run.machine.dist.is_main:
        return None
    training = {
        "optimizer": run.optimizer.state_dict(),
        "progress": progress_state(run.progress),
        "rng": rngs[0],
        "schedule": run.schedule.state_dict(),
        "early_stopping": run.early.state_dict(),
        "kept_best": run.kept.state(),
    }
    if run.ema is not None:
        training["ema"] = run.ema.state_dict()
    if len(rngs) > 1:
        training["rng_ranks"] = rngs  # under DDP: each rank's own dropout and teacher-forcing draws
    return replace(model_state(run), training=training)


def save_last(run: Run) -> None:
    state = checkpoint_state(run)
    if state is not None:
        state.write(run.files.last)


def finish(run: Run, reason: str, resumed_at: int | None) -> TrainResult:
    """Say why training stopped, validate the last weights if not yet, and report the run's best."""
    p, t, files = run.progress, run.cfg.train, run.files
    log_stop(t, files.root, p.step, reason, resumed_at)
    if p.validated_at != p.step:
        validate_and_save(run)
    if run.metrics is not None:
        run.metrics.close()
    best = None
    if run.machine.dist.is_main:
        record_default_model(files.root)
        best = best_record(ema_views(read_metrics(files.metrics)), t.metric, p.step) if files.metrics.exists() else None
    log_done(t.metric, p.step, p.elapsed, p.best.score, files.best)
    return TrainResult(files.root, p, best)
