"""The training loop: teacher forcing on shifted targets, masked loss, clipping, validation, checkpoints, resume."""

from __future__ import annotations

import logging
import random
import sys
import time
import types
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import torch
from tqdm import tqdm

from seq2seq import distributed, shards
from seq2seq.checkpoint import atomic_write_text, load_checkpoint, record_default_model, save_checkpoint
from seq2seq.config import Config, TrainConfig, config_to_dict, dump_config
from seq2seq.data import Batch, BucketSampler, Encoder, collate, encode_pairs, example_lengths, load_corpus
from seq2seq.device import autocast, choose_precision, keep_freed_memory, resolve_device, resolve_precision
from seq2seq.errors import CheckpointError, ConfigError, DataError
from seq2seq.evaluate import evaluate
from seq2seq.interrupt import StopRequest, TrainingInterrupted
from seq2seq.loss import masked_nll
from seq2seq.metrics import MetricsLogger
from seq2seq.model import Seq2Seq, count_parameters
from seq2seq.resume import restore
from seq2seq.schedule import EarlyStopping, LRSchedule
from seq2seq.rundir import (
    RunFiles, ensure_dir, load_or_build_tokenizers, load_or_build_vocabs, prepare_run_dir, remove_stale_run_files,
)
from seq2seq.tokenizer import Tokenizer
from seq2seq.vocab import Vocab

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


def setup_logging(log_file: Path | None, quiet: bool = False) -> None:
    """Log lines to stderr (through tqdm, so bars stay intact) and to the run's train.log."""
    log.setLevel(logging.INFO)
    for handler in list(log.handlers):
        log.removeHandler(handler)
        handler.close()

    class TqdmHandler(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            tqdm.write(self.format(record), file=__import__("sys").stderr)

    console = TqdmHandler(logging.WARNING if quiet else logging.INFO)
    console.setFormatter(logging.Formatter("%(message)s"))
    log.addHandler(console)
    if log_file is not None:
        file_handler = logging.FileHandler(log_file, encoding="utf-8")
        file_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        log.addHandler(file_handler)
    log.propagate = False


@dataclass
class TrainResult:
    run_dir: Path
    progress: Progress
    best_scores: dict[str, Any] | None


def train(
    cfg: Config, run_dir: Path, resume: bool = False, overwrite: bool = False, quiet: bool = False,
    stop_request: StopRequest | None = None,
) -> TrainResult:
    """Train a model as configured, writing everything into `run_dir`.

    When `stop_request.requested` turns true (a signal), the current step ends, last.pt is written and
    TrainingInterrupted is raised.
    """
    files = RunFiles(run_dir)
    dist_ctx = distributed.init(resolve_device(cfg.train.device))  # single process unless torchrun started us
    distributed.on_main(lambda: (prepare_run_dir(files, cfg, resume, overwrite), ensure_dir(files.root), remove_stale_run_files(files)), dist_ctx)
    setup_logging(files.log if dist_ctx.is_main else None, quiet or not dist_ctx.is_main)
    if not dist_ctx.is_main:
        log.setLevel(logging.ERROR)
    t = cfg.train
    if t.num_threads:
        torch.set_num_threads(t.num_threads)
    device = dist_ctx.device
    if device.type == "cpu":
        keep_freed_memory()
    precision = resolve_precision(t.precision, device)
    random.seed(t.seed)
    torch.manual_seed(t.seed)

    d = cfg.data
    shard_set = shards.open_shards(files.root, cfg)  # made by `seq2seq preprocess`; None: read the text
    train_pairs = load_corpus(d.train, d.format, d.src_lang, d.tgt_lang, "train") if shard_set is None else None
    valid_pairs = load_corpus(d.valid, d.format, d.src_lang, d.tgt_lang, "valid")

    def vocabs() -> tuple[Vocab, Vocab]:
        if shard_set is not None:
            shard_set.restore_vocabs(files.src_vocab, files.tgt_vocab)
        return load_or_build_vocabs(cfg, files, train_pairs, quiet)

    src_vocab, tgt_vocab = distributed.on_main(vocabs, dist_ctx)  # built once, by rank 0
    if dist_ctx.is_main:
        atomic_write_text(files.config, dump_config(cfg))

    def tokenizers() -> tuple[dict[str, Any], dict[str, Any]]:
        src_tok, tgt_tok = load_or_build_tokenizers(cfg, files)
        return src_tok.to_dict(), tgt_tok.to_dict()

    src_dict, tgt_dict = distributed.on_main(tokenizers, dist_ctx)  # rank 0's sentencepiece models reach every rank
    src_tokenizer, tgt_tokenizer = Tokenizer.from_dict(src_dict), Tokenizer.from_dict(tgt_dict)
    src_enc, tgt_enc = Encoder(src_tokenizer, src_vocab), Encoder(tgt_tokenizer, tgt_vocab)
    if shard_set is not None:
        shard_set.check_vocabs(src_vocab, tgt_vocab)
        examples = shard_set.dataset()
        lengths = examples.lengths()
        log.info("training data: %s (%d examples)", shard_set.files.root, len(examples))
    else:
        examples = encode_pairs(train_pairs, src_enc, tgt_enc, max_len=d.max_len)
        lengths = example_lengths(examples)
    if not examples:
        raise DataError(f"data.max_len: every training pair is longer than {d.max_len} tokens")
    sampler = BucketSampler(
        *lengths, batch_size=t.batch_size, max_tokens=t.max_tokens, seed=t.seed, rank=dist_ctx.rank, world_size=dist_ctx.world_size
    )

    model = Seq2Seq(cfg.model, len(src_vocab), len(tgt_vocab)).to(device)
    optimizer = (
        torch.optim.AdamW(model.parameters(), lr=t.lr, weight_decay=t.weight_decay)
        if t.weight_decay > 0
        else torch.optim.Adam(model.parameters(), lr=t.lr)
    )
    planned_steps = t.epochs * len(sampler.batches(0))
    schedule = LRSchedule.from_config(t, min(planned_steps, t.max_steps or planned_steps))
    early = EarlyStopping(t.patience)
    kept: list[dict[str, Any]] = []  # the k best validations: {"step", "val_bleu"}, best first
    progress = Progress()
    if resume:
        state = load_checkpoint(files.last)
        saved = restore(
            state, files.last, model, optimizer, src_vocab, tgt_vocab, _set_rng_state,
            extras={"schedule": schedule, "early_stopping": early},
        )
        progress = Progress(**{k: v for k, v in saved.items() if k in Progress.__dataclass_fields__})
        kept = [dict(k) for k in state.get("kept_best", [])]
        log.info("resumed %s at step %d (epoch %d, batch %d)", files.last, progress.step, progress.epoch + 1, progress.batch_in_epoch)
    metrics = (
        MetricsLogger(files.metrics, files.tensorboard if t.tensorboard else None, progress.step if resume else None)
        if dist_ctx.is_main
        else None
    )
    progress.batch_in_epoch = distributed.rescale_position(progress.batch_in_epoch, progress.world_size, dist_ctx.world_size)
    progress.world_size = dist_ctx.world_size
    distributed.seed_rank(t.seed, progress.step, dist_ctx)
    forward_model = distributed.wrap(model, dist_ctx)  # DDP under torchrun; validation and checkpoints use `model`
    log.info(
        "training %s: %d parameters, %d pairs, device %s, %s; run directory %s",
        cfg.model.attention, count_parameters(model), len(examples), device, precision, files.root,
    )
    log.info("precision %s: %s", precision, choose_precision(t.precision, device).reason)
    if dist_ctx.enabled:
        log.info("distributed: %d processes, each update takes one batch from each", dist_ctx.world_size)

    def model_state() -> dict[str, Any]:
        """What decoding needs: weights, config, vocabularies and tokenizers."""
        return {
            "config": config_to_dict(cfg),
            "src_vocab": src_vocab.to_list(),
            "tgt_vocab": tgt_vocab.to_list(),
            "tokenizer": src_tokenizer.to_dict(),
            "tgt_tokenizer": tgt_tokenizer.to_dict(),
            "model": model.state_dict(),
            "step": progress.step,
        }

    def checkpoint_state() -> dict[str, Any]:
        return {
            **model_state(),
            "optimizer": optimizer.state_dict(),
            "progress": asdict(progress),
            "rng": _rng_state(),
            "schedule": schedule.state_dict(),
            "early_stopping": early.state_dict(),
            "kept_best": [dict(k) for k in kept],
        }

    def keep_if_among_best(record: dict[str, Any]) -> None:
        """train.keep_best > 1: save ckpt-STEP.pt when this validation is among the k best; drop the one it displaces."""
        if t.keep_best < 2 or (len(kept) >= t.keep_best and record["val_bleu"] <= kept[-1]["val_bleu"]):
            return
        save_checkpoint(files.kept(progress.step), {**model_state(), "scores": record})
        kept.append({"step": progress.step, "val_bleu": record["val_bleu"]})
        kept.sort(key=lambda k: -k["val_bleu"])  # stable: on a tie the earlier step stays ahead
        for dropped in kept[t.keep_best :]:
            files.kept(dropped["step"]).unlink(missing_ok=True)
        del kept[t.keep_best :]

    def share_bleu(bleu: float) -> float:
        """Rank 0's validation BLEU on every rank, so that all take the same schedule and early-stopping steps."""
        if not dist_ctx.enabled:
            return bleu
        value = torch.tensor([bleu if dist_ctx.is_main else 0.0], dtype=torch.float64, device=dist_ctx.device)
        return float(distributed.all_reduce_sum(value, dist_ctx).item())

    def validate() -> dict[str, Any] | None:
        nonlocal last_validated
        if not dist_ctx.is_main:  # rank 0 validates and writes; the others wait for it
            last_validated = progress.validated_at = progress.step
            distributed.barrier(dist_ctx)
            bleu = share_bleu(0.0)
            schedule.on_validation(bleu)
            early.update(bleu)
            return None
        scores = evaluate(
            model, valid_pairs, src_enc, tgt_enc, device, precision, cfg.decode.batch_size, cfg.decode.max_len_a, cfg.decode.max_len_b,
            min_len=cfg.decode.min_len, progress=not quiet,
        )
        # At the end of an epoch `progress.epoch` already counts it: the record names the epoch just trained.
        epoch = progress.epoch + 1 if progress.batch_in_epoch else progress.epoch
        record = {
            "step": progress.step, "epoch": epoch, "val_loss": scores.loss, "val_ppl": scores.ppl,
            "val_bleu": scores.bleu, "val_chrf": scores.chrf,
        }
        improved = scores.bleu > progress.best_bleu
        if improved:
            progress.best_bleu = scores.bleu
        if schedule.on_validation(scores.bleu):
            new_lr = schedule.lr_at(progress.step + 1)
            log.info("step %d: val BLEU on a plateau (train.plateau_patience): learning rate now %.3g", progress.step, new_lr)
        early.update(scores.bleu)
        log.info(
            "step %d: val loss %.4f ppl %.2f BLEU %.2f chrF %.2f%s",
            progress.step, scores.loss, scores.ppl, scores.bleu, scores.chrf, " (best)" if improved else "",
        )
        record["elapsed"] = progress.elapsed
        metrics.log(record)
        keep_if_among_best(record)
        progress.validated_at = progress.step
        state = checkpoint_state()
        if improved:
            save_checkpoint(files.best, {**state, "scores": record})
        save_checkpoint(files.last, state)
        last_validated = progress.step
        distributed.barrier(dist_ctx)
        share_bleu(scores.bleu)
        return record

    best_record: dict[str, Any] | None = None
    last_validated = progress.validated_at
    started = time.monotonic() - progress.elapsed
    tokens_seen, window_start, window_loss, window_tokens = 0, time.monotonic(), 0.0, 0
    stop = False
    model.train()
    while progress.epoch < t.epochs and not stop and not early.stopped:
        batches = sampler.batches(progress.epoch)
        bar = tqdm(
            total=len(batches), initial=progress.batch_in_epoch, desc=f"epoch {progress.epoch + 1}/{t.epochs}",
            disable=quiet or not dist_ctx.is_main, leave=False, dynamic_ncols=True, file=__import__("sys").stderr,
        )
        for index in batches[progress.batch_in_epoch :]:
            if (t.max_steps is not None and progress.step >= t.max_steps) or (
                t.max_time is not None and progress.elapsed >= t.max_time * 60
            ):  # resumed from the checkpoint of a run that had stopped
                stop = True
                break
            batch = collate([examples[i] for i in index]).to(device)
            for group in optimizer.param_groups:
                group["lr"] = schedule.lr_at(progress.step + 1)
            finite, loss_sum, n_tokens = train_step(forward_model, model, optimizer, batch, t, device, precision, dist_ctx)
            if not finite:
                progress.bad_steps += 1
                log.warning("step %d: non-finite loss or gradient, update skipped (%d in a row)", progress.step + 1, progress.bad_steps)
                if progress.bad_steps >= t.max_bad_steps:
                    last_good = f"the last good checkpoint is {files.last}" if files.last.exists() else "no checkpoint was saved"
                    raise DataError(
                        f"training diverged: {progress.bad_steps} non-finite losses in a row (train.max_bad_steps); {last_good} (try a lower train.lr)"
                    )
            else:
                progress.bad_steps = 0
                window_loss += loss_sum.item()
                window_tokens += n_tokens
            progress.step += 1
            progress.batch_in_epoch += 1
            tokens_seen += n_tokens
            progress.elapsed = time.monotonic() - started
            bar.update(1)
            if progress.step % 10 == 0 or progress.step % t.log_every == 0:
                now = time.monotonic()
                rate = window_tokens / max(now - window_start, 1e-9)
                postfix = {"loss": f"{window_loss / max(window_tokens, 1):.3f}", "tok_s": f"{rate:,.0f}"}
                if t.max_time is not None:
                    postfix["max_time_in"] = tqdm.format_interval(max(t.max_time * 60 - progress.elapsed, 0))
                bar.set_postfix(postfix)
                if progress.step % t.log_every == 0 and metrics is not None:
                    metrics.log({
                        "step": progress.step, "epoch": progress.epoch + 1,
                        "train_loss": window_loss / max(window_tokens, 1), "lr": optimizer.param_groups[0]["lr"],
                        "tokens_per_s": rate, "elapsed": progress.elapsed,
                    })
                    log.debug("step %d loss %.4f", progress.step, window_loss / max(window_tokens, 1))
                    window_start, window_loss, window_tokens = now, 0.0, 0
            out_of_time = t.max_time is not None and progress.elapsed >= t.max_time * 60
            if t.max_time is not None:
                out_of_time = distributed.any_rank(out_of_time, dist_ctx)  # clocks differ: all ranks stop together
            out_of_steps = t.max_steps is not None and progress.step >= t.max_steps
            if t.valid_every and progress.step % t.valid_every == 0:
                best_record = _merge_best(best_record, validate())
            # all ranks stop at the same step, even if the signal reached only some of them
            interrupted = distributed.any_rank(stop_request is not None and stop_request.requested, dist_ctx)
            if interrupted or (t.save_every and progress.step % t.save_every == 0):
                if last_validated != progress.step and dist_ctx.is_main:  # validate() has just saved it otherwise
                    save_checkpoint(files.last, checkpoint_state())
                if interrupted:
                    bar.close()
                    distributed.barrier(dist_ctx)  # the checkpoint is on disk before any rank exits
                    raise TrainingInterrupted((stop_request and stop_request.signal_name) or "a signal", progress.step, files.last)
            if out_of_time or out_of_steps:
                log.info("stopping: %s reached", "train.max_time" if out_of_time else "train.max_steps")
                stop = True
                break
            if early.stopped:
                stop = True
                break
        bar.close()
        if not stop:
            progress.epoch += 1
            progress.batch_in_epoch = 0
        if not t.valid_every and last_validated != progress.step:
            best_record = _merge_best(best_record, validate())
        if early.stopped:
            log.info("stopping early: no better val BLEU in %d validations (train.patience)", t.patience)
    if last_validated != progress.step:
        best_record = _merge_best(best_record, validate())
    if metrics is not None:
        metrics.close()
    if dist_ctx.is_main:
        record_default_model(files.root)
    log.info("done: %d steps in %.1f s, best val BLEU %.2f -> %s", progress.step, progress.elapsed, progress.best_bleu, files.best)
    return TrainResult(files.root, progress, best_record)


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
        logits = forward_model(batch.src, batch.src_lengths, batch.tgt_in, t.teacher_forcing_ratio)
    loss_sum, n_tokens = masked_nll(logits, batch.tgt_out, t.label_smoothing)
    loss, loss_sum, n_tokens = distributed.global_loss(loss_sum, n_tokens, dist_ctx)
    optimizer.zero_grad(set_to_none=True)
    finite = bool(torch.isfinite(loss_sum))
    if finite:
        loss.backward()
        if t.clip_grad > 0:
            finite = bool(torch.isfinite(torch.nn.utils.clip_grad_norm_(model.parameters(), t.clip_grad)))
        if finite:
            optimizer.step()
    return finite, loss_sum, n_tokens


def _merge_best(best: dict[str, Any] | None, record: dict[str, Any] | None) -> dict[str, Any] | None:
    if record is None:  # not rank 0: it did not validate
        return best
    return record if best is None or record["val_bleu"] > best["val_bleu"] else best


class _CallableModule(types.ModuleType):
    """Lets `seq2seq.train(config)` work: after `import seq2seq.train` (by anyone) the package attribute
    `train` is this module, not a function, so calling the module calls `seq2seq.api.train`."""

    def __call__(
        self,
        config: Config | dict[str, Any] | str | Path,
        run_dir: str | Path | None = None,
        *,
        overrides: Sequence[str] = (),
        resume: bool = False,
        overwrite: bool = False,
        quiet: bool = False,
    ) -> TrainResult:
        from seq2seq.api import train as api_train

        return api_train(config, run_dir, overrides=overrides, resume=resume, overwrite=overwrite, quiet=quiet)


sys.modules[__name__].__class__ = _CallableModule
