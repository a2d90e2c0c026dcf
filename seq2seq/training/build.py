"""What a run is built from, one small function each, each returning what it built: the machine (processes, device,
precision), the corpora, the data (vocabularies, tokenizers, examples, batches), the model and the schedule.
`trainer.train` calls them in order and then loops."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Sequence

import torch

from seq2seq.config import Config, TrainConfig, dump_config
from seq2seq.data import shards
from seq2seq.data.batch import BucketSampler, example_lengths
from seq2seq.data.encoding import Encoder, encode_pairs
from seq2seq.data.corpus import NonEmpty, Pair, load_nonempty, read_pairs
from seq2seq.data.references import EvalSet, load_eval_corpus
from seq2seq.data.report import Side, corpus_report, data_report, unknown_line
from seq2seq.data.tokenizer import Tokenizer
from seq2seq.data.vocab import Vocab
from seq2seq.errors import DataError
from seq2seq.device import keep_freed_memory, resolve_device, resolve_precision
from seq2seq.files import atomic_write_text
from seq2seq.model.network import Seq2Seq
from seq2seq.model.checkpoint import Checkpoint
from seq2seq.training import distributed, finetune
from seq2seq.runfiles import RunFiles
from seq2seq.training.rundir import load_or_build_tokenizers, load_or_build_vocabs
from seq2seq.training.schedule import LRSchedule

log = logging.getLogger("seq2seq")


@dataclass(frozen=True)
class Machine:
    """Where this process trains: its place among the processes, its device and its precision."""

    dist: distributed.DistContext
    device: torch.device
    precision: str


def setup_machine(t: TrainConfig) -> Machine:
    """Join the process group under torchrun; threads, the allocator and the precision as configured."""
    dist = distributed.init(resolve_device(t.device))  # a single process unless torchrun started us
    if t.num_threads:
        torch.set_num_threads(t.num_threads)
    if dist.device.type == "cpu":
        keep_freed_memory()
    return Machine(dist, dist.device, resolve_precision(t.precision, dist.device))


@dataclass(frozen=True)
class Corpora:
    """The inputs, read before anything is written: a wrong path leaves no run directory behind."""

    shard_set: shards.Shards | None  # made by `seq2seq preprocess`; None: the training text is read
    train_pairs: list[Pair] | None  # None when the shards hold the training data
    train_empty: int  # training pairs dropped for an empty side as they were read (the data report counts them)
    valid_pairs: EvalSet  # its pairs, and its items as validation scores them (TSV: grouped by source)


def read_corpora(cfg: Config, files: RunFiles) -> Corpora:
    shard_set = shards.open_shards(files.root, cfg)
    if shard_set is not None:
        return Corpora(shard_set, None, 0, load_eval_corpus(cfg.data, "valid"))
    train = load_nonempty(cfg.data, "train")
    return Corpora(None, train.pairs, train.n_empty, load_eval_corpus(cfg.data, "valid"))


@dataclass(frozen=True)
class Data:
    """Vocabularies, tokenizers and their encoders; the training examples and their batches; the validation pairs."""

    src_vocab: Vocab
    tgt_vocab: Vocab
    src_tokenizer: Tokenizer
    tgt_tokenizer: Tokenizer
    src_enc: Encoder
    tgt_enc: Encoder
    examples: Sequence[Any]  # (source ids, target ids) pairs, in memory or memory-mapped from shards
    sampler: BucketSampler
    valid_pairs: EvalSet


def build_data(
    cfg: Config, files: RunFiles, corpora: Corpora, dist: distributed.DistContext, progress: bool, init: Checkpoint | None = None
) -> Data:
    """Vocabularies and tokenizers (built once, by rank 0, and handed to every rank), examples and batches. `init`: the
    model a fine-tuning run starts from (train.init_from), whose vocabularies and tokenizers the run takes."""
    shard_set, train_pairs = corpora.shard_set, corpora.train_pairs

    def vocabs() -> tuple[Vocab, Vocab]:
        if init is not None:
            finetune.write_inherited(files, cfg, init)  # into the run directory, where a resume reads them too
        if shard_set is not None:
            shard_set.restore_vocabs(files.src_vocab, files.tgt_vocab)
        return load_or_build_vocabs(cfg, files, train_pairs, not progress)

    src_vocab, tgt_vocab = distributed.on_main(vocabs, dist)
    if dist.is_main:
        atomic_write_text(files.config, dump_config(cfg))

    def tokenizers() -> tuple[dict[str, Any], dict[str, Any]]:
        src_tok, tgt_tok = load_or_build_tokenizers(cfg, files)
        return src_tok.to_dict(), tgt_tok.to_dict()

    src_dict, tgt_dict = distributed.on_main(tokenizers, dist)  # rank 0's sentencepiece models reach every rank
    src_tokenizer, tgt_tokenizer = Tokenizer.from_dict(src_dict), Tokenizer.from_dict(tgt_dict)
    src_enc, tgt_enc = Encoder(src_tokenizer, src_vocab), Encoder(tgt_tokenizer, tgt_vocab)
    examples: Sequence[Any]
    if shard_set is not None:
        shard_set.check_vocabs(src_vocab, tgt_vocab)
        examples = shard_set.dataset()
        lengths = examples.lengths()  # type: ignore[attr-defined]
        log.info("training data: %s (%d examples)", shard_set.files.root, len(examples))
    else:
        assert train_pairs is not None
        examples = encode_pairs(train_pairs, src_enc, tgt_enc, max_len=cfg.data.max_len)
        lengths = example_lengths(examples)
    t = cfg.train
    sampler = BucketSampler(
        *lengths, batch_size=t.batch_size, max_tokens=t.max_tokens, seed=t.seed, rank=dist.rank, world_size=dist.world_size
    )
    return Data(src_vocab, tgt_vocab, src_tokenizer, tgt_tokenizer, src_enc, tgt_enc, examples, sampler, corpora.valid_pairs)


def data_report_lines(cfg: Config, corpora: Corpora, data: Data, fine_tuning: bool = False) -> list[str]:
    """The data report (data/report.py) under the run's vocabularies: pairs read and dropped, unknown tokens of the
    validation (and test) data, length-ratio outliers, leakage. `fine_tuning`: the vocabularies are a trained
    model's, so the unknown tokens of the training data too. With shards the training text is not read again: the
    report covers the validation and test data only. A corpus the report cannot read is one line, not an error
    (training reads what it needs itself)."""
    d = cfg.data
    src, tgt = Side(data.src_tokenizer, data.src_vocab), Side(data.tgt_tokenizer, data.tgt_vocab)
    try:
        if corpora.train_pairs is None:
            splits = {name: read_pairs(spec, d.format, d.src_lang, d.tgt_lang) for name, spec in (("valid", d.valid), ("test", d.test)) if spec}
            return data_report(splits, src, tgt, d.max_len, fmt=d.format)
        lines = corpus_report(d, src, tgt, train=NonEmpty(corpora.train_pairs, corpora.train_empty))
    except DataError as e:
        return [f"not made: {e}"]
    if fine_tuning:
        lines.insert(1, unknown_line("train", corpora.train_pairs, src, tgt))
    return lines


def build_model(cfg: Config, data: Data, machine: Machine, init: Checkpoint | None = None) -> Seq2Seq:
    """The network on its device (it picks its Bahdanau training loop itself: `Seq2Seq.uses_fast_bahdanau`), with the
    weights of `init` when fine-tuning."""
    model = Seq2Seq(cfg.model, len(data.src_vocab), len(data.tgt_vocab))
    if init is not None:
        finetune.load_weights(model, init)
    return model.to(machine.device)


def make_optimizer(model: torch.nn.Module, t: TrainConfig) -> torch.optim.Optimizer:
    """AdamW when train.weight_decay is set, else Adam, at train.lr."""
    if t.weight_decay > 0:
        return torch.optim.AdamW(model.parameters(), lr=t.lr, weight_decay=t.weight_decay)
    return torch.optim.Adam(model.parameters(), lr=t.lr)


def build_schedule(t: TrainConfig, batches_per_epoch: int) -> LRSchedule:
    """The learning-rate schedule, its horizon planned from train.epochs and train.max_steps, and under
    train.max_time later from the measured pace, at most those (a resume keeps the horizon it saved: see LRSchedule
    and schedule.py's docstring)."""
    planned = t.epochs * batches_per_epoch
    return LRSchedule.from_config(t, min(planned, t.max_steps or planned))
