"""Validation and the best checkpoints: score the validation set, read train.metric from the scores, and keep the k
best validations as ckpt-STEP.pt (best.pt itself is written by the loop, which knows the run's best).

The metric is higher-is-better (bleu, chrf, exact_match) or an error rate (cer, wer), lower-is-better: the metric
table (seq2seq/metric.py) is the one place that says which.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Sequence

import torch

from seq2seq.config import Config, DecodeConfig
from seq2seq.data.encoding import Encoder
from seq2seq.data.references import EvalSet
from seq2seq.data.report import degeneration_warning
from seq2seq.decode.evaluate import Scores, evaluate
from seq2seq.decode.torch_backend import loaded_model
from seq2seq.decode.translator import Translator
from seq2seq.errors import ConfigError
from seq2seq.model.checkpoint import Checkpoint
from seq2seq.device import resolve_decoding_precision
from seq2seq.model.network import Seq2Seq, count_parameters
from seq2seq.runfiles import RunFiles
from seq2seq.training.ema import ema_keys
from seq2seq.training.schedule import Best
from seq2seq.metric import said
from seq2seq.metric import label as metric_label  # noqa: F401 (imported from here by the loop)

if TYPE_CHECKING:
    from seq2seq.training.build import Data, Machine
    from seq2seq.training.ema import EMA
    from seq2seq.training.resume import Progress

log = logging.getLogger("seq2seq")

EXTRA_SCORES = ("exact_match", "cer", "wer")  # recorded when decode/evaluate computes them


def validation_scores(
    model: Seq2Seq, valid: EvalSet, src: Encoder, tgt: Encoder, device: torch.device, precision: str,
    decode_cfg: DecodeConfig, progress: bool,
) -> Scores:
    """Greedy decoding of the validation set, whatever decode.beam_size says (a beam would cost k times as much).

    `valid` is scored as `eval` scores it, through a Translator of the model being trained (not a copy): the
    sources encoded as `translate` reads them, and TSV lines that share a source one item with several references
    (data/references), so train.metric, best.pt and `eval --split val` agree."""
    was_training = model.training
    model.eval()
    try:
        cfg = dataclasses.replace(Config(), decode=decode_cfg)
        translator = Translator.of([loaded_model(model, cfg, src, tgt, device, precision)])
        return evaluate(translator, valid, beam_size=1, progress=progress)
    finally:
        model.train(was_training)


def metric_value(scores: Scores, metric: str) -> float:
    """The score of `metric` (train.metric) in `scores`."""
    value = getattr(scores, metric, None)
    if value is None:
        raise ConfigError(f"train.metric: {metric} is not computed by this version's evaluation")
    return float(value)


def degeneration(scores: Scores, valid: EvalSet) -> str | None:
    """The warning when the validation outputs degenerate (most of them one sentence, or far shorter than the
    references: data/report.degeneration_warning), from the hypotheses the scoring decoded, one per item, against
    each item's first reference; None when they do not."""
    return degeneration_warning(scores.hypotheses, [item.refs[0] for item in valid.items])


def validation_record(scores: Scores, step: int, epoch: int, tgt_tokens: int, elapsed: float) -> dict[str, Any]:
    """The metrics.jsonl record of one validation (`epoch`: the one just trained, 1-based)."""
    record: dict[str, Any] = {
        "step": step, "epoch": epoch, "val_loss": scores.loss, "val_ppl": scores.ppl,
        "val_bleu": scores.bleu, "val_chrf": scores.chrf,
    }
    for name in EXTRA_SCORES:
        if getattr(scores, name, None) is not None:
            record[f"val_{name}"] = getattr(scores, name)
    record["tgt_tokens"], record["elapsed"] = tgt_tokens, elapsed
    return record


def best_record(records: list[dict[str, Any]], metric: str, up_to: int) -> dict[str, Any] | None:
    """The first validation record up to step `up_to` with the best `val_<metric>` (None: no validation yet): the
    validations replayed through a Best, as the run followed them."""
    best, record_of_best = Best(metric), None
    for record in records:
        value = record.get(f"val_{metric}")
        if isinstance(value, (int, float)) and record["step"] <= up_to and best.update(value):
            record_of_best = record
    return record_of_best


class KeptBest:
    """train.keep_best > 1: the k best validations as ckpt-STEP.pt (weights only), best first; on a tie the
    earlier step stays ahead. The list travels in the checkpoint ("kept_best": [{"step", "score"}])."""

    def __init__(self, files: RunFiles, k: int, best: Best, kept: Sequence[dict[str, Any]] = ()):
        self.files, self.k, self.best = files, k, best  # `best` says which of two scores is the better
        # checkpoints written before train.metric kept {"step", "val_bleu"}
        self.kept = [{"step": int(r["step"]), "score": float(r.get("score", r.get("val_bleu", 0.0)))} for r in kept]

    def offer(self, step: int, score: float, state: Checkpoint) -> None:
        """Save `state` as ckpt-STEP.pt when `score` is among the k best; drop the one it displaces."""
        if self.k < 2 or (len(self.kept) >= self.k and not self.best.better(score, self.kept[-1]["score"])):
            return
        state.write(self.files.kept(step))
        self.kept.append({"step": step, "score": score})
        self.kept.sort(key=lambda r: self.best.rank(r["score"]))  # stable: on a tie the earlier step stays ahead
        for dropped in self.kept[self.k :]:
            self.files.kept(dropped["step"]).unlink(missing_ok=True)
        del self.kept[self.k :]

    def state(self) -> list[dict[str, Any]]:
        return [dict(r) for r in self.kept]


@dataclass
class Scored:
    """One validation, on rank 0: its metrics record, and the better of the raw and the EMA weights."""

    record: dict[str, Any]  # metrics.jsonl's: the raw weights' val_* keys; with the EMA, its val_ema_* keys too
    score: float  # train.metric of the better weights
    best: Checkpoint  # the better weights, their own record as scores (with "ema": True when they are the EMA's)
    warning: str | None  # the raw outputs degenerate
    ema: bool = False  # the EMA scored better than the raw weights


def score_validation(
    model: Seq2Seq, ema: EMA | None, d: Data, m: Machine, cfg: Config, p: Progress, bars: bool, state: Checkpoint
) -> Scored:
    """Score the raw weights and, with train.ema_decay, the EMA's; the EMA is the better only when it scores better.
    `state`: the model's checkpoint (weights, config, vocabularies), which the better weights go into."""
    t = cfg.train
    precision = resolve_decoding_precision(t.precision, m.device, count_parameters(model))  # as eval decodes best.pt

    def score(model: Seq2Seq) -> tuple[Any, dict[str, Any], float]:
        scores = validation_scores(model, d.valid_pairs, d.src_enc, d.tgt_enc, m.device, precision, cfg.decode, bars)
        epoch = p.epoch + 1 if p.batch_in_epoch else p.epoch  # at an epoch's end `p.epoch` counts it already
        return scores, validation_record(scores, p.step, epoch, p.tgt_tokens, p.elapsed), metric_value(scores, t.metric)

    scores, record, value = score(model)
    warning = degeneration(scores, d.valid_pairs)
    if ema is None:
        return Scored(record, value, replace(state, scores=record), warning)
    _, ema_record, ema_value = score(ema.model)
    record = {**record, **ema_keys(ema_record)}
    if p.best.better(ema_value, value):  # strictly better: on a tie the raw weights stay
        best = replace(state, weights=ema.weights(), scores={**ema_record, "ema": True})
        return Scored(record, ema_value, best, warning, ema=True)
    return Scored(record, value, replace(state, scores=record), warning)


def log_validation(metric: str, step: int, scored: Scored, improved: bool) -> None:
    """One line per validation: the raw weights' figures, the EMA's score beside them, and whether it is the best."""
    r = scored.record
    extra = "" if metric in ("bleu", "chrf") else " " + said(metric, r[f"val_{metric}"])
    if f"val_ema_{metric}" in r:
        extra += "; EMA " + said(metric, r[f"val_ema_{metric}"])
    best = "" if not improved else " (best, EMA)" if scored.ema else " (best)"
    log.info(
        "step %d: val loss %.4f ppl %.2f BLEU %.2f chrF %.2f%s%s",
        step, r["val_loss"], r["val_ppl"], r["val_bleu"], r["val_chrf"], extra, best,
    )
    if scored.warning is not None:  # "the model outputs the same sentence for every input", said with its numbers
        log.warning("step %d: %s", step, scored.warning)
