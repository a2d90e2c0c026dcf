"""The training loop: build -> step -> validate -> stop.

One update (`train_step`): teacher-forced logits for the shifted targets of a Batch (the shift is made in
`data/batch.collate`), the masked loss per real target token (`model/loss.masked_nll`, divided here), backward, clip, optimizer step.
Around it, `Trainer` validates (BLEU on the validation set, best.pt and last.pt), keeps the k best checkpoints,
and stops on max_steps, max_time, early stopping or a signal; every checkpoint lets a run resume exactly.
"""

from __future__ import annotations

import logging
import random
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Sequence

import torch
from tqdm import tqdm

from seq2seq.training import distributed
from seq2seq.data import shards
from seq2seq.model.checkpoint import Checkpoint, record_default_model
from seq2seq.config import Config, TrainConfig, dump_config
from seq2seq.data.batch import Batch, BucketSampler, Encoder, collate, encode_pairs, example_lengths
from seq2seq.data.corpus import Pair, load_corpus
from seq2seq.device import autocast, choose_precision, keep_freed_memory, resolve_device, resolve_precision
from seq2seq.errors import DataError
from seq2seq.decode.evaluate import evaluate
from seq2seq.model.fast_bahdanau import bahdanau_steps, pays
from seq2seq.files import atomic_write_text
from seq2seq.training.interrupt import StopRequest, TrainingInterrupted
from seq2seq.model.loss import masked_nll
from seq2seq.training.metrics import MetricsLogger
from seq2seq.model.network import Seq2Seq, count_parameters
from seq2seq.training.resume import restore
from seq2seq.training.rundir import (
    RunFiles, ensure_dir, load_or_build_tokenizers, load_or_build_vocabs, prepare_run_dir, remove_stale_run_files,
)
from seq2seq.training.schedule import EarlyStopping, LRSchedule
from seq2seq.data.tokenizer import Tokenizer
from seq2seq.data.vocab import Vocab

log = logging.getLogger("seq2seq")


@dataclass
class Progress:
    """Where training stands; saved in every checkpoint so that a resume continues exactly."""

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0  # batches of `epoch` already trained on
    best_bleu: float = -1.0
    elapsed: float = 0.0  # seconds of training, over all sessions of this run
    world_size: int = 1  # processes that trained it (`step` counts their joint updates)
    bad_steps: int = 0  # non-finite losses in a row, up to now
    validated_at: int = -1  # the step of the last validation
    tgt_tokens: int = 0  # real target tokens of the updates made (all ranks), for curves against data seen


@dataclass
class TrainResult:
    run_dir: Path
    progress: Progress
    best_scores: dict[str, Any] | None


def make_optimizer(model: torch.nn.Module, t: TrainConfig) -> torch.optim.Optimizer:
    """AdamW when train.weight_decay is set, else Adam, at train.lr."""
    if t.weight_decay > 0:
        return torch.optim.AdamW(model.parameters(), lr=t.lr, weight_decay=t.weight_decay)
    return torch.optim.Adam(model.parameters(), lr=t.lr)


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
    norm updates nothing (every rank sees the same global figures, so all skip together).
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


def train(
    cfg: Config, run_dir: Path, resume: bool = False, overwrite: bool = False, quiet: bool = False,
    stop_request: StopRequest | None = None,
) -> TrainResult:
    """Train a model as configured, writing everything into `run_dir`.

    The corpora are read before anything is written, so a wrong path leaves no run directory behind. When
    `stop_request.requested` turns true (a signal), the current step ends, last.pt is written and
    TrainingInterrupted is raised.
    """
    return Trainer(cfg, RunFiles(Path(run_dir)), resume, overwrite, quiet, stop_request).run()


class _Window:
    """Training loss and tokens/s since the last log line."""

    def __init__(self) -> None:
        self.start, self.loss, self.tokens = time.monotonic(), 0.0, 0

    def add(self, loss_sum: float, n_tokens: int) -> None:
        self.loss += loss_sum
        self.tokens += n_tokens

    def figures(self) -> tuple[float, float]:
        """(loss per real token, tokens/s)."""
        return self.loss / max(self.tokens, 1), self.tokens / max(time.monotonic() - self.start, 1e-9)


class Trainer:
    """One run: `__init__` builds (data, vocabularies, model, optimizer, resumed state); `run` loops."""

    def __init__(
        self, cfg: Config, files: RunFiles, resume: bool, overwrite: bool, quiet: bool, stop_request: StopRequest | None
    ):
        self.cfg, self.t, self.files, self.quiet, self.stop_request = cfg, cfg.train, files, quiet, stop_request
        self.dist = distributed.init(resolve_device(cfg.train.device))  # single process unless torchrun started us
        setup_logging(None, quiet or not self.dist.is_main, buffer=True)
        self.device = self.dist.device
        if self.t.num_threads:
            torch.set_num_threads(self.t.num_threads)
        if self.device.type == "cpu":
            keep_freed_memory()
        self.precision = resolve_precision(self.t.precision, self.device)
        self.shard_set = shards.open_shards(files.root, cfg)  # made by `seq2seq preprocess`; None: read the text
        d = cfg.data
        train_pairs = load_corpus(d.train, d.format, d.src_lang, d.tgt_lang, "train") if self.shard_set is None else None
        self.valid_pairs = load_corpus(d.valid, d.format, d.src_lang, d.tgt_lang, "valid")
        # The inputs are good: now the run directory may be made, and the log lines so far go into its train.log.
        distributed.on_main(lambda: (prepare_run_dir(files, cfg, resume, overwrite), ensure_dir(files.root), remove_stale_run_files(files)), self.dist)
        attach_log_file(files.log if self.dist.is_main else None)
        if not self.dist.is_main:
            log.setLevel(logging.ERROR)
        random.seed(self.t.seed)
        torch.manual_seed(self.t.seed)
        self._build_data(train_pairs)
        self._build_model(resume)

    # ---- build ------------------------------------------------------------------------------------

    def _build_data(self, train_pairs: list[Pair] | None) -> None:
        cfg, files, shard_set = self.cfg, self.files, self.shard_set

        def vocabs() -> tuple[Vocab, Vocab]:
            if shard_set is not None:
                shard_set.restore_vocabs(files.src_vocab, files.tgt_vocab)
            return load_or_build_vocabs(cfg, files, train_pairs, self.quiet)

        self.src_vocab, self.tgt_vocab = distributed.on_main(vocabs, self.dist)  # built once, by rank 0
        if self.dist.is_main:
            atomic_write_text(files.config, dump_config(cfg))

        def tokenizers() -> tuple[dict[str, Any], dict[str, Any]]:
            src_tok, tgt_tok = load_or_build_tokenizers(cfg, files)
            return src_tok.to_dict(), tgt_tok.to_dict()

        src_dict, tgt_dict = distributed.on_main(tokenizers, self.dist)  # rank 0's sentencepiece models reach every rank
        self.src_tokenizer, self.tgt_tokenizer = Tokenizer.from_dict(src_dict), Tokenizer.from_dict(tgt_dict)
        self.src_enc, self.tgt_enc = Encoder(self.src_tokenizer, self.src_vocab), Encoder(self.tgt_tokenizer, self.tgt_vocab)
        if shard_set is not None:
            shard_set.check_vocabs(self.src_vocab, self.tgt_vocab)
            self.examples: Sequence[Any] = shard_set.dataset()
            lengths = self.examples.lengths()
            log.info("training data: %s (%d examples)", shard_set.files.root, len(self.examples))
        else:
            assert train_pairs is not None
            self.examples = encode_pairs(train_pairs, self.src_enc, self.tgt_enc, max_len=cfg.data.max_len)
            lengths = example_lengths(self.examples)
        t = self.t
        self.sampler = BucketSampler(
            *lengths, batch_size=t.batch_size, max_tokens=t.max_tokens, seed=t.seed, rank=self.dist.rank, world_size=self.dist.world_size
        )

    def _build_model(self, resume: bool) -> None:
        t = self.t
        fast = pays(self.device, self.precision)  # the written rule: where the fast Bahdanau loop measurably pays
        self.model = Seq2Seq(self.cfg.model, len(self.src_vocab), len(self.tgt_vocab), fast_decoder=bahdanau_steps if fast else None)
        self.model.to(self.device)
        self.optimizer = make_optimizer(self.model, t)
        planned_steps = t.epochs * len(self.sampler.batches(0))
        self.schedule = LRSchedule.from_config(t, min(planned_steps, t.max_steps or planned_steps))
        self.early = EarlyStopping(t.patience)
        self.kept: list[dict[str, Any]] = []  # the k best validations: {"step", "val_bleu"}, best first
        self.progress = Progress()
        if resume:
            self._resume()
        self.metrics = (
            MetricsLogger(self.files.metrics, self.files.tensorboard if t.tensorboard else None, self.progress.step if resume else None)
            if self.dist.is_main
            else None
        )
        p = self.progress
        p.batch_in_epoch = distributed.rescale_position(p.batch_in_epoch, p.world_size, self.dist.world_size)
        p.world_size = self.dist.world_size
        distributed.seed_rank(t.seed, p.step, self.dist)
        self.forward_model = distributed.wrap(self.model, self.dist)  # DDP under torchrun; validation and checkpoints use `model`
        log.info(
            "training %s: %d parameters, %d pairs, device %s, %s; run directory %s",
            self.cfg.model.attention, count_parameters(self.model), len(self.examples), self.device, self.precision, self.files.root,
        )
        log.info("precision %s: %s", self.precision, choose_precision(t.precision, self.device).reason)
        if self.cfg.model.attention == "bahdanau":
            log.info("decoder loop: %s", "the fast Bahdanau loop (measured faster on this device)" if self.model.fast_decoder else "the textbook loop")
        if self.dist.enabled:
            log.info("distributed: %d processes, each update takes one batch from each", self.dist.world_size)

    def _resume(self) -> None:
        last = self.files.last
        ckpt = Checkpoint.read(last)
        saved = restore(
            ckpt, self.model, self.optimizer, self.src_vocab, self.tgt_vocab, _set_rng_state,
            extras={"schedule": self.schedule, "early_stopping": self.early},
        )
        self.progress = Progress(**{k: v for k, v in saved.items() if k in Progress.__dataclass_fields__})
        self.kept = [dict(k) for k in ckpt.training.get("kept_best", [])]
        p = self.progress
        log.info("resumed %s at step %d (epoch %d, batch %d)", last, p.step, p.epoch + 1, p.batch_in_epoch)

    # ---- the loop ---------------------------------------------------------------------------------

    def run(self) -> TrainResult:
        self.best_record: dict[str, Any] | None = None
        self.started = time.monotonic() - self.progress.elapsed
        self.window = _Window()
        self.model.train()
        reason = "train.epochs"
        for index in self._batches():
            stop = self._stop_reason()  # before every update: a resumed run may have stopped already
            if stop is not None:
                reason = stop
                break
            self._step(index)
            self._after_step()
        self.bar.close()
        if reason == "train.epochs" and self.early.stopped:  # the last epoch's validation stopped it
            reason = "train.patience"
        if reason in ("train.max_time", "train.max_steps"):
            log.info("stopping: %s reached", reason)
        elif reason == "train.patience":
            log.info("stopping early: no better val BLEU in %d validations (train.patience)", self.t.patience)
        if self.progress.validated_at != self.progress.step:
            self._validate()
        if self.metrics is not None:
            self.metrics.close()
        if self.dist.is_main:
            record_default_model(self.files.root)
        p = self.progress
        log.info("done: %d steps in %.1f s, best val BLEU %.2f -> %s", p.step, p.elapsed, p.best_bleu, self.files.best)
        return TrainResult(self.files.root, p, self.best_record)

    def _batches(self):  # noqa: ANN202 (an iterator of index lists)
        """The remaining batches of every epoch, in order; at the end of each epoch, its validation."""
        p, t = self.progress, self.t
        while p.epoch < t.epochs:
            batches = self.sampler.batches(p.epoch)
            self.bar = tqdm(
                total=len(batches), initial=p.batch_in_epoch, desc=f"epoch {p.epoch + 1}/{t.epochs}",
                disable=self.quiet or not self.dist.is_main, leave=False, dynamic_ncols=True, file=sys.stderr,
            )
            yield from batches[p.batch_in_epoch :]
            self.bar.close()
            p.epoch += 1
            p.batch_in_epoch = 0
            if not t.valid_every and p.validated_at != p.step:
                self._validate()
        self.bar = tqdm(disable=True)

    def _stop_reason(self) -> str | None:
        """The one place the stop conditions are checked (all ranks agree on each)."""
        p, t = self.progress, self.t
        out_of_time = t.max_time is not None and p.elapsed >= t.max_time * 60
        if t.max_time is not None and distributed.any_rank(out_of_time, self.dist):  # clocks differ: all stop together
            return "train.max_time"
        if t.max_steps is not None and p.step >= t.max_steps:
            return "train.max_steps"
        if self.early.stopped:
            return "train.patience"
        return None

    def _step(self, index: list[int]) -> None:
        """One update on the examples `index`, with the bookkeeping around it."""
        p, t = self.progress, self.t
        batch = collate([self.examples[i] for i in index]).to(self.device)
        for group in self.optimizer.param_groups:
            group["lr"] = self.schedule.lr_at(p.step + 1)
        finite, loss_sum, n_tokens = train_step(self.forward_model, self.model, self.optimizer, batch, t, self.device, self.precision, self.dist)
        if finite:
            p.bad_steps = 0
            p.tgt_tokens += n_tokens
            self.window.add(loss_sum.item(), n_tokens)
        else:
            p.bad_steps += 1
            log.warning("step %d: non-finite loss or gradient, update skipped (%d in a row)", p.step + 1, p.bad_steps)
            if p.bad_steps >= t.max_bad_steps:
                last_good = f"the last good checkpoint is {self.files.last}" if self.files.last.exists() else "no checkpoint was saved"
                raise DataError(
                    f"training diverged: {p.bad_steps} non-finite losses in a row (train.max_bad_steps); {last_good} (try a lower train.lr)"
                )
        p.step += 1
        p.batch_in_epoch += 1
        p.elapsed = time.monotonic() - self.started
        self.bar.update(1)
        if p.step % 10 == 0 or p.step % t.log_every == 0:
            self._report()

    def _report(self) -> None:
        """The progress bar's figures every 10 updates; a metrics record every train.log_every."""
        p, t = self.progress, self.t
        loss, rate = self.window.figures()
        postfix = {"loss": f"{loss:.3f}", "tok_s": f"{rate:,.0f}"}
        if t.max_time is not None:
            postfix["max_time_in"] = tqdm.format_interval(max(t.max_time * 60 - p.elapsed, 0))
        self.bar.set_postfix(postfix)
        if p.step % t.log_every == 0 and self.metrics is not None:
            self.metrics.log({
                "step": p.step, "epoch": p.epoch + 1, "train_loss": loss, "lr": self.optimizer.param_groups[0]["lr"],
                "tokens_per_s": rate, "tgt_tokens": p.tgt_tokens, "elapsed": p.elapsed,
            })
            self.window = _Window()

    def _after_step(self) -> None:
        """Validation every train.valid_every; last.pt every train.save_every and when a signal came."""
        p, t = self.progress, self.t
        if t.valid_every and p.step % t.valid_every == 0:
            self._validate()
        # all ranks stop at the same step, even if the signal reached only some of them
        interrupted = distributed.any_rank(self.stop_request is not None and self.stop_request.requested, self.dist)
        if interrupted or (t.save_every and p.step % t.save_every == 0):
            if p.validated_at != p.step and self.dist.is_main:  # _validate has just saved it otherwise
                self.checkpoint_state().write(self.files.last)
            if interrupted:
                self.bar.close()
                distributed.barrier(self.dist)  # the checkpoint is on disk before any rank exits
                name = (self.stop_request and self.stop_request.signal_name) or "a signal"
                raise TrainingInterrupted(name, p.step, self.files.last)

    # ---- validate ---------------------------------------------------------------------------------

    def _validate(self) -> None:
        """Validation BLEU; rank 0 decodes, writes best.pt / last.pt / ckpt-STEP.pt, and shares the score."""
        p = self.progress
        p.validated_at = p.step
        if not self.dist.is_main:  # rank 0 validates and writes; the others wait for it
            distributed.barrier(self.dist)
            bleu = self._share_bleu(0.0)
            self.schedule.on_validation(bleu)
            self.early.update(bleu)
            return
        greedy = replace(self.cfg.decode, beam_size=1)  # validation decodes greedily, whatever decode.beam_size says
        scores = evaluate(
            self.model, self.valid_pairs, self.src_enc, self.tgt_enc, self.device, self.precision, greedy, progress=not self.quiet
        )
        # At the end of an epoch `p.epoch` already counts it: the record names the epoch just trained.
        epoch = p.epoch + 1 if p.batch_in_epoch else p.epoch
        record = {
            "step": p.step, "epoch": epoch, "val_loss": scores.loss, "val_ppl": scores.ppl,
            "val_bleu": scores.bleu, "val_chrf": scores.chrf, "tgt_tokens": p.tgt_tokens,
        }
        improved = scores.bleu > p.best_bleu
        if improved:
            p.best_bleu = scores.bleu
        if self.schedule.on_validation(scores.bleu):
            log.info("step %d: val BLEU on a plateau (train.plateau_patience): learning rate now %.3g", p.step, self.schedule.lr_at(p.step + 1))
        self.early.update(scores.bleu)
        log.info(
            "step %d: val loss %.4f ppl %.2f BLEU %.2f chrF %.2f%s",
            p.step, scores.loss, scores.ppl, scores.bleu, scores.chrf, " (best)" if improved else "",
        )
        record["elapsed"] = p.elapsed
        assert self.metrics is not None
        self.metrics.log(record)
        self._keep_if_among_best(record)
        state = self.checkpoint_state()
        if improved:
            replace(state, scores=record).write(self.files.best)
        state.write(self.files.last)
        distributed.barrier(self.dist)
        self._share_bleu(scores.bleu)
        if self.best_record is None or record["val_bleu"] > self.best_record["val_bleu"]:
            self.best_record = record

    def _share_bleu(self, bleu: float) -> float:
        """Rank 0's validation BLEU on every rank, so that all take the same schedule and early-stopping steps."""
        if not self.dist.enabled:
            return bleu
        value = torch.tensor([bleu if self.dist.is_main else 0.0], dtype=torch.float64, device=self.dist.device)
        return float(distributed.all_reduce_sum(value, self.dist).item())

    def _keep_if_among_best(self, record: dict[str, Any]) -> None:
        """train.keep_best > 1: save ckpt-STEP.pt when this validation is among the k best; drop the one it displaces."""
        k, kept = self.t.keep_best, self.kept
        if k < 2 or (len(kept) >= k and record["val_bleu"] <= kept[-1]["val_bleu"]):
            return
        replace(self.model_state(), scores=record).write(self.files.kept(self.progress.step))
        kept.append({"step": self.progress.step, "val_bleu": record["val_bleu"]})
        kept.sort(key=lambda r: -r["val_bleu"])  # stable: on a tie the earlier step stays ahead
        for dropped in kept[k:]:
            self.files.kept(dropped["step"]).unlink(missing_ok=True)
        del kept[k:]

    # ---- checkpoints ------------------------------------------------------------------------------

    def model_state(self) -> Checkpoint:
        """What decoding needs: weights, config, vocabularies and tokenizers."""
        return Checkpoint(
            self.cfg, self.src_vocab, self.tgt_vocab, self.src_tokenizer, self.tgt_tokenizer, self.model.state_dict(), self.progress.step
        )

    def checkpoint_state(self) -> Checkpoint:
        """What resuming needs besides: optimizer, progress, random generators, schedule, early stopping, the k best."""
        return replace(self.model_state(), training={
            "optimizer": self.optimizer.state_dict(),
            "progress": asdict(self.progress),
            "rng": _rng_state(),
            "schedule": self.schedule.state_dict(),
            "early_stopping": self.early.state_dict(),
            "kept_best": [dict(k) for k in self.kept],
        })


def _rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"python": random.getstate(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# ---- logging ------------------------------------------------------------------------------------


class _TqdmHandler(logging.Handler):
    """Log lines on stderr through tqdm, so that progress bars stay intact."""

    def emit(self, record: logging.LogRecord) -> None:
        tqdm.write(self.format(record), file=sys.stderr)


class _Buffer(logging.Handler):
    """Holds log records until the run's train.log exists (see `attach_log_file`)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


FILE_FORMAT = "%(asctime)s %(levelname)s %(message)s"


def setup_logging(log_file: Path | None, quiet: bool = False, buffer: bool = False) -> None:
    """Log lines to stderr (through tqdm) and to `log_file`; `buffer`: keep them for `attach_log_file` instead."""
    log.setLevel(logging.INFO)
    for handler in list(log.handlers):
        log.removeHandler(handler)
        handler.close()
    console = _TqdmHandler(logging.WARNING if quiet else logging.INFO)
    console.setFormatter(logging.Formatter("%(message)s"))
    log.addHandler(console)
    if log_file is not None:
        attach_log_file(log_file)
    elif buffer:
        log.addHandler(_Buffer())
    log.propagate = False


def attach_log_file(log_file: Path | None) -> None:
    """From now on log into `log_file` too, starting with the lines buffered so far (None: drop them)."""
    buffered = [h for h in log.handlers if isinstance(h, _Buffer)]
    for handler in buffered:
        log.removeHandler(handler)
    if log_file is None:
        return
    file_handler = logging.FileHandler(log_file, encoding="utf-8")
    file_handler.setFormatter(logging.Formatter(FILE_FORMAT))
    log.addHandler(file_handler)
    for handler in buffered:
        for record in handler.records:
            file_handler.handle(record)
