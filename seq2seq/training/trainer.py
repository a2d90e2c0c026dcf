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
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Callable

import torch

from seq2seq.config import Config, TrainConfig
from seq2seq.data.batch import Batch, collate
from seq2seq.device import autocast, choose_precision
from seq2seq.errors import DataError
from seq2seq.metric import said
from seq2seq.model.checkpoint import Checkpoint, record_default_model
from seq2seq.model.loss import masked_nll
from seq2seq.model.network import Seq2Seq, count_parameters
from seq2seq.training import distributed, finetune
from seq2seq.training.ema import EMA, ema_keys, ema_views
from seq2seq.training.build import (
    Data, Machine, build_data, build_model, build_schedule, data_report_lines, make_optimizer, read_corpora, setup_machine,
)
from seq2seq.training.interrupt import StopRequest, TrainingInterrupted
from seq2seq.training.logs import attach_log_file, bars_wanted, epoch_bar, format_interval, setup_logging
from seq2seq.training.metrics import MetricsLogger, read_metrics
from seq2seq.training.resume import restore, rng_state, set_rng_state
from seq2seq.runfiles import RunFiles
from seq2seq.training.rundir import ensure_dir, prepare_run_dir, remove_stale_run_files
from seq2seq.training.schedule import (
    HORIZON_KINDS, LOWER_IS_BETTER, Best, EarlyStopping, LRSchedule, Pace, budget_horizon, budget_rate,
    updates_between_validations, validation_due, validation_estimate,
)
from seq2seq.training.validate import (
    KeptBest, best_record, degeneration, metric_label, metric_value, validation_record, validation_scores,
)

__all__ = ["Progress", "TrainResult", "make_optimizer", "train", "train_step"]

log = logging.getLogger("seq2seq")


@dataclass
class Progress:
    """Where training stands; saved in every checkpoint so that a resume continues exactly."""

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0  # batches of `epoch` already trained on
    best: Best = field(default_factory=lambda: Best(TrainConfig().metric))  # the best score (saved as metric, best_score)
    elapsed: float = 0.0  # seconds of training, over all sessions of this run
    world_size: int = 1  # processes that trained it (`step` counts their joint updates)
    bad_steps: int = 0  # non-finite losses in a row, up to now
    validated_at: int = -1  # the step of the last validation
    tgt_tokens: int = 0  # real target tokens of the updates made (all ranks), for curves against data seen
    valid_seconds: float = 0.0  # of `elapsed`, the seconds spent validating (rank 0's), to plan under train.max_time
    validations: int = 0  # validations made
    warm_step: int = -1  # warmup's last update (-1: not reached), where train.max_time's pace is measured from,
    warm_elapsed: float = 0.0  # with `elapsed`
    warm_valid_seconds: float = 0.0  # and `valid_seconds` then

    @property
    def best_score(self) -> float | None:
        """The run's best validation score (None: no validation yet)."""
        return self.best.score

    @property
    def metric(self) -> str:
        """train.metric, which `best_score` is of."""
        return self.best.metric


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
    cfg, source = starting_point(cfg, files, resume)
    t = cfg.train
    corpora = read_corpora(cfg, files)
    # The inputs are good: now the run directory may be made, and the log lines so far go into its train.log.
    distributed.on_main(lambda: (prepare_run_dir(files, cfg, resume, overwrite), ensure_dir(files.root), remove_stale_run_files(files)), dist)
    if source is not None:
        distributed.on_main(lambda: finetune.write_inherited(files, cfg, source), dist)
    attach_log_file(files.log if dist.is_main else None)
    if not dist.is_main:
        log.setLevel(logging.ERROR)
    random.seed(t.seed)
    torch.manual_seed(t.seed)
    bars = bars_wanted(quiet, dist.is_main)
    data = build_data(cfg, files, corpora, dist, progress=bars)
    model = build_model(cfg, data, machine)
    if source is not None:
        finetune.load_weights(model, source)
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
    log_setup(run)
    resumed_at = progress.step if resume else None
    reason = loop(run)
    return finish(run, reason, resumed_at)


def starting_point(cfg: Config, files: RunFiles, resume: bool) -> tuple[Config, Checkpoint | None]:
    """The config this run trains with, and the model it fine-tunes (train.init_from; None: from scratch).

    A resumed run continues from its own last.pt: train.init_from is not read again, and a fine-tuning run takes the
    model's keys from its own config.yaml."""
    if resume:
        if cfg.train.init_from is not None:
            log.info("--resume: the run continues from its own last.pt; train.init_from is not read")
        return finetune.resumed_config(cfg, files), None
    if cfg.train.init_from is None:
        return cfg, None
    source = finetune.read_source(cfg.train.init_from, files)
    cfg = finetune.inherit_config(cfg, source.config, source.path or cfg.train.init_from)
    log.info("%s", finetune.describe(source))
    return cfg, source


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
    scored = score_validation(run) if machine.dist.is_main else None
    score = distributed.from_main(scored.score if scored is not None else 0.0, machine.dist)
    spent = run.clock() - began  # what the budget pays per validation (train.max_time's horizon counts it)
    p.elapsed, p.valid_seconds, p.validations = p.elapsed + spent, p.valid_seconds + spent, p.validations + 1
    improved = p.best.update(score)  # the one question; the plateau, early stopping and best.pt take its answer
    label = metric_label(t.metric)
    if run.schedule.on_validation(improved):
        log.info("step %d: val %s on a plateau (train.plateau_patience): learning rate now %.3g", p.step, label, run.schedule.lr_at(p.step + 1))
    run.early.update(improved)
    if scored is not None and run.metrics is not None:
        log_validation(run, scored, improved)
        run.metrics.log(scored.record)
        run.kept.offer(p.step, score, scored.best)
    state = checkpoint_state(run)  # gathers every rank's random generators; None on the other ranks
    if state is not None:
        if improved and scored is not None:
            replace(state, weights=scored.best.weights, scores=scored.best.scores).write(run.files.best)
        state.write(run.files.last)
    distributed.barrier(machine.dist)


@dataclass
class Scored:
    """One validation, on rank 0: its metrics record, and the better of the raw and the EMA weights."""

    record: dict[str, Any]  # metrics.jsonl's: the raw weights' val_* keys; with the EMA, its val_ema_* keys too
    score: float  # train.metric of the better weights
    best: Checkpoint  # the better weights, their own record as scores (with "ema": True when they are the EMA's)
    warning: str | None  # the raw outputs degenerate
    ema: bool = False  # the EMA scored better than the raw weights


def score_validation(run: Run) -> Scored:
    """Score the raw weights and, with train.ema_decay, the EMA's; the EMA is the better only when it scores better."""
    p, t, d, m = run.progress, run.cfg.train, run.data, run.machine

    def score(model: Seq2Seq) -> tuple[Any, dict[str, Any], float]:
        scores = validation_scores(model, d.valid_pairs, d.src_enc, d.tgt_enc, m.device, m.precision, run.cfg.decode, run.bars)
        epoch = p.epoch + 1 if p.batch_in_epoch else p.epoch  # at an epoch's end `p.epoch` counts it already
        return scores, validation_record(scores, p.step, epoch, p.tgt_tokens, p.elapsed), metric_value(scores, t.metric)

    scores, record, value = score(run.model)
    warning = degeneration(scores, d.valid_pairs)
    if run.ema is None:
        return Scored(record, value, replace(model_state(run), scores=record), warning)
    _, ema_record, ema_value = score(run.ema.model)
    record = {**record, **ema_keys(ema_record)}
    if p.best.better(ema_value, value):  # strictly better: on a tie the raw weights stay
        best = replace(model_state(run), weights=run.ema.weights(), scores={**ema_record, "ema": True})
        return Scored(record, ema_value, best, warning, ema=True)
    return Scored(record, value, replace(model_state(run), scores=record), warning)


def log_validation(run: Run, scored: Scored, improved: bool) -> None:
    """One line per validation: the raw weights' figures, the EMA's score beside them, and whether it is the best."""
    p, t, r = run.progress, run.cfg.train, scored.record
    extra = "" if t.metric in ("bleu", "chrf") else " " + said(t.metric, r[f"val_{t.metric}"])
    if run.ema is not None:
        extra += "; EMA " + said(t.metric, r[f"val_ema_{t.metric}"])
    best = "" if not improved else " (best, EMA)" if scored.ema else " (best)"
    log.info(
        "step %d: val loss %.4f ppl %.2f BLEU %.2f chrF %.2f%s%s",
        p.step, r["val_loss"], r["val_ppl"], r["val_bleu"], r["val_chrf"], extra, best,
    )
    if scored.warning is not None:  # "the model outputs the same sentence for every input", said with its numbers
        log.warning("step %d: %s", p.step, scored.warning)


def plan_horizon(run: Run) -> None:
    """train.max_time: fix the schedule's horizon at the updates the budget holds, once `schedule.plan_due` says the
    pace is known (the rule and its why: training/schedule.py). It reads the saved progress, not the clock, so a run
    resumed from a checkpoint plans as the run never interrupted; rank 0 plans and every rank takes its horizon."""
    p, t, d, dist = run.progress, run.cfg.train, run.data, run.machine.dist
    assert t.max_time is not None
    since = (p.warm_step, p.warm_elapsed, p.warm_valid_seconds) if p.warm_step >= 0 else None
    pace, budget = Pace(p.step, p.elapsed, p.valid_seconds, p.validations, since), t.max_time * 60
    planned, rate = -1.0, 0.0
    if dist.is_main and run.schedule.plan_due(pace, p.validated_at, budget):
        per_epoch = len(d.sampler.batches(p.epoch))  # this rank's batches, one per update
        per_batch = len(d.examples) / max(per_epoch * dist.world_size, 1)  # sentences a rank trains on per update
        estimate = validation_estimate(pace, len(d.valid_pairs.pairs), per_batch)
        rate = budget_rate(pace, updates_between_validations(t, pace, per_epoch, estimate), estimate)
        planned = float(budget_horizon(pace, budget, rate))
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


def resume_state(
    cfg: Config, files: RunFiles, machine: Machine, data: Data, model: Seq2Seq, optimizer: torch.optim.Optimizer,
    schedule: LRSchedule, early: EarlyStopping, ema: EMA | None = None,
) -> tuple[Progress, list[dict[str, Any]]]:
    """Load last.pt into the model, optimizer, schedule, early stopping, the EMA and random generators; returns the
    progress and the k best so far. Every rank restores its own generators when the number of processes is the same."""
    t, dist = cfg.train, machine.dist
    ckpt = Checkpoint.read(files.last)
    ranks = ckpt.training.get("rng_ranks")
    exact = (len(ranks) if isinstance(ranks, list) else 1) == dist.world_size
    planned = schedule.decay_steps
    saved = restore(
        ckpt, model, optimizer, data.src_vocab, data.tgt_vocab,
        lambda rng: set_rng_state(ranks[dist.rank] if dist.enabled and exact else rng),  # type: ignore[index]
        extras={"schedule": schedule, "early_stopping": early, **({"ema": ema} if ema is not None else {})},
    )
    p = progress_from(saved, t.metric)
    p.batch_in_epoch = distributed.rescale_position(p.batch_in_epoch, p.world_size, dist.world_size)
    if not exact:  # other processes than saved: their generators cannot continue the saved ones
        distributed.seed_rank(t.seed, p.step, dist)
        log.info("%d process(es) resume a run of %d: random generators seeded afresh", dist.world_size, p.world_size)
    p.world_size = dist.world_size
    log.info("resumed %s at step %d (epoch %d, batch %d)", files.last, p.step, p.epoch + 1, p.batch_in_epoch)
    if schedule.kind in HORIZON_KINDS and planned is not None and schedule.decay_steps is not None and planned > schedule.decay_steps:
        log.info(
            "this run goes on past its learning-rate schedule (planned over %d updates): from update %d on the "
            "learning rate stays at train.min_lr %g", schedule.decay_steps, schedule.decay_steps + 1, t.min_lr,
        )
    return p, list(ckpt.training.get("kept_best", []))


def progress_state(p: Progress) -> dict[str, Any]:
    """The progress as the checkpoint keeps it: plain values, its best as `metric` and `best_score`."""
    saved = {f.name: getattr(p, f.name) for f in fields(p) if f.name != "best"}
    return {**saved, "metric": p.best.metric, "best_score": p.best.score}


def progress_from(saved: dict[str, Any], metric: str) -> Progress:
    """The saved progress; one written before train.metric had `best_bleu` (-1: none yet) and followed BLEU."""
    values = {k: v for k, v in saved.items() if k in Progress.__dataclass_fields__ and k != "best"}
    if "best_bleu" in saved and "best_score" not in saved:
        best = Best("bleu", saved["best_bleu"] if saved["best_bleu"] >= 0 else None)
    else:
        best = Best(saved.get("metric", metric), saved.get("best_score"))
    return Progress(**values, best=best)


def log_setup(run: Run) -> None:
    cfg, m, t = run.cfg, run.machine, run.cfg.train
    log.info(
        "training %s: %d parameters, %d pairs, device %s, %s; run directory %s",
        cfg.model.attention, count_parameters(run.model), len(run.data.examples), m.device, m.precision, run.files.root,
    )
    log.info("precision %s: %s", m.precision, choose_precision(t.precision, m.device).reason)
    if cfg.model.attention == "bahdanau":
        fast = run.model.uses_fast_bahdanau(m.device)
        log.info("decoder loop for training: %s", "the fast Bahdanau loop" if fast else "the textbook loop")
    if m.dist.enabled:
        log.info("distributed: %d processes, each update takes one batch from each", m.dist.world_size)
    if t.valid_every_minutes is not None:
        log.info("validation every %g min of training time (train.valid_every_minutes)", t.valid_every_minutes)
    better = "lower" if t.metric in LOWER_IS_BETTER else "higher"
    log.info("best.pt follows val %s (train.metric; %s is better)", metric_label(t.metric), better)


FINISHED = {
    "train.epochs": "train.epochs: {t.epochs} trained",
    "train.max_steps": "train.max_steps: {t.max_steps} updates made",
    "train.max_time": "train.max_time: its {t.max_time:g} min are spent",
    "train.patience": "train.patience: early stopping ended it",
}


def finish(run: Run, reason: str, resumed_at: int | None) -> TrainResult:
    """Say why training stopped, validate the last weights if not yet, and report the run's best."""
    p, t, files = run.progress, run.cfg.train, run.files
    label = metric_label(t.metric)
    if resumed_at is not None and p.step == resumed_at:  # a warning: --quiet shows it
        log.warning("the run in %s is finished (%s): nothing was trained", files.root, FINISHED[reason].format(t=t))
    elif reason in ("train.max_time", "train.max_steps"):
        log.info("stopping: %s reached", reason)
    elif reason == "train.patience":
        log.info("stopping early: no better val %s in %d validations (train.patience)", label, t.patience)
    if p.validated_at != p.step:
        validate_and_save(run)
    if run.metrics is not None:
        run.metrics.close()
    best = None
    if run.machine.dist.is_main:
        record_default_model(files.root)
        best = best_record(ema_views(read_metrics(files.metrics)), t.metric, p.step) if files.metrics.exists() else None
    shown = f"{label} none yet" if p.best.score is None else said(t.metric, p.best.score)
    log.info("done: %d steps in %.1f s, best val %s -> %s", p.step, p.elapsed, shown, files.best)
    return TrainResult(files.root, p, best)
