"""Data that explains itself: a short report on the corpora before training, and the warnings of a model that
degenerates or reads an input it does not know.

The most common complaint in the NMT toolkits' trackers is "the model outputs the same sentence for every input"
(OpenNMT-py #690, #1017, #1690, #1743, #2143; Joey NMT #58, #120); the causes are mostly in the data: pairs lost to
filters, a validation set the vocabulary does not cover, misaligned pairs, test sentences seen in training. The
report names them before any time is spent, `degeneration_warning` names the symptom at each validation, and
`unknown_share` lets `translate` say when an input is mostly unknown to the vocabulary.

Torch-free, like the tokenizers and vocabularies it reads.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter
from dataclasses import dataclass
from typing import Mapping, Sequence

from seq2seq.config import DataConfig
from seq2seq.data.corpus import NonEmpty, Pair, has_both_sides, read_pairs, within_max_len
from seq2seq.data.references import eval_set
from seq2seq.data.tokenizer import Tokenizer, normalize_whitespace
from seq2seq.data.vocab import BOS, EOS, PAD, UNK, Vocab

RATIO_FACTOR = 3.0  # a pair is a length-ratio outlier when its target/source ratio is this far from the median's
RATIO_MIN_TOKENS = 4  # ... and its longer side has at least this many tokens (short pairs swing too much to judge)
MOSTLY_UNKNOWN = 0.5  # translate warns when more than this share of an input's tokens are unknown
SAME_OUTPUT_SHARE = 0.5  # degenerate: more than this share of the outputs are one and the same sentence ...
MIN_OUTPUTS = 5  # ... among at least this many outputs
SHORT_OUTPUT_SHARE = 0.5  # degenerate: the outputs' mean length is below this share of the references'


@dataclass(frozen=True)
class Side:
    """How one side becomes ids: its tokenizer and vocabulary."""

    tokenizer: Tokenizer
    vocab: Vocab


def _quote(text: str, limit: int = 60) -> str:
    return repr(text if len(text) <= limit else text[: limit - 1] + "…")


def _percent(part: int, whole: int) -> str:
    return f"{100.0 * part / whole:.1f}%" if whole else "0.0%"


def _example(pair: Pair) -> str:
    return f"{_quote(pair[0])} -> {_quote(pair[1])}"


def unknown_share(ids: Sequence[int]) -> float:
    """The share of <unk> among a text's token ids (<pad>, <bos>, <eos> not counted); 0 for no tokens."""
    tokens = [i for i in ids if i not in (PAD, BOS, EOS)]
    return sum(i == UNK for i in tokens) / len(tokens) if tokens else 0.0


def unknown_warning(ids: Sequence[int]) -> str | None:
    """A warning when most of an input's tokens are unknown to the source vocabulary (it will translate as noise)."""
    tokens = [i for i in ids if i not in (PAD, BOS, EOS)]
    share = unknown_share(tokens)
    if share <= MOSTLY_UNKNOWN:
        return None
    unknown = sum(i == UNK for i in tokens)
    return f"{unknown} of {len(tokens)} tokens of this input are unknown to the model's source vocabulary (is it tokenized as in training?)"


def degeneration_warning(hypotheses: Sequence[str], references: Sequence[str]) -> str | None:
    """A warning naming the numbers when validation outputs degenerate, else None.

    Degenerate: most outputs are one and the same sentence (while the references are not), or the outputs are on
    average far shorter than the references (characters, whitespace normalized).
    """
    hyps = [normalize_whitespace(h) for h in hypotheses]
    refs = [normalize_whitespace(r) for r in references]
    problems = []
    if len(hyps) >= MIN_OUTPUTS:
        (common, n_common), = Counter(hyps).most_common(1)
        n_ref_common = Counter(refs).most_common(1)[0][1] if refs else 0
        if n_common > SAME_OUTPUT_SHARE * len(hyps) and n_common > 2 * n_ref_common:
            problems.append(f"{n_common} of {len(hyps)} outputs ({_percent(n_common, len(hyps))}) are the same: {_quote(common)}")
    if hyps and refs:
        hyp_mean = statistics.fmean(len(h) for h in hyps)
        ref_mean = statistics.fmean(len(r) for r in refs)
        if hyp_mean < SHORT_OUTPUT_SHARE * ref_mean:
            problems.append(f"outputs are {hyp_mean:.1f} characters long on average, the references {ref_mean:.1f}")
    if not problems:
        return None
    return "degenerate outputs: " + "; ".join(problems)


# ---- the data report -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Filtered:
    """A corpus through the training filters."""

    n_read: int
    n_empty: int  # pairs with an empty side
    n_long: int  # pairs longer than max_len tokens on a side (training only)
    kept: list[tuple[Pair, int, int]]  # (pair, source tokens, target tokens)


def _filter(pairs: Sequence[Pair], src: Side, tgt: Side, max_len: int | None, dropped_empty: int = 0) -> Filtered:
    """`dropped_empty`: pairs with an empty side dropped before `pairs` (by load_corpus), counted read and empty."""
    kept, n_empty, n_long = [], dropped_empty, 0
    for pair in pairs:
        if not has_both_sides(pair):
            n_empty += 1
            continue
        n_src, n_tgt = len(src.tokenizer.tokenize(pair[0])), len(tgt.tokenizer.tokenize(pair[1]))
        if not within_max_len(n_src, n_tgt, max_len):
            n_long += 1
            continue
        kept.append((pair, n_src, n_tgt))
    return Filtered(len(pairs) + dropped_empty, n_empty, n_long, kept)


def _counts_line(name: str, f: Filtered, max_len: int | None) -> str:
    dropped = []
    if f.n_empty:
        dropped.append(f"{f.n_empty} with an empty side")
    if f.n_long:
        dropped.append(f"{f.n_long} longer than data.max_len={max_len} tokens")
    why = f", dropped {' and '.join(dropped)}" if dropped else ""
    return f"{name}: {f.n_read} pairs read{why}, {len(f.kept)} kept"


def _unknown_line(name: str, pairs: Sequence[Pair], src: Side, tgt: Side) -> str:
    parts = []
    for label, side, index in (("source", src, 0), ("target", tgt, 1)):
        ids = [i for pair in pairs if has_both_sides(pair) for i in side.vocab.encode(side.tokenizer.tokenize(pair[index]))]
        unknown = sum(i == UNK for i in ids)
        parts.append(f"{label} {_percent(unknown, len(ids))} ({unknown} of {len(ids)} tokens)")
    return f"{name}: unknown tokens under the vocabularies: {', '.join(parts)}"


def unknown_line(name: str, pairs: Sequence[Pair], src: Side, tgt: Side) -> str:
    """One report line: the unknown-token rate of `pairs` on each side under the vocabularies. For the training data
    of a fine-tuning run, whose vocabularies were built on other data (`data_report` gives it for evaluation data)."""
    return _unknown_line(name, pairs, src, tgt)


def _ratio_line(train: Filtered) -> str | None:
    ratios = [(math.log(n_tgt / n_src), max(n_src, n_tgt), pair) for pair, n_src, n_tgt in train.kept]
    if not ratios:
        return None
    median = statistics.median(r for r, _, _ in ratios)
    limit = math.log(RATIO_FACTOR)
    outliers = [(abs(r - median), pair) for r, longer, pair in ratios if abs(r - median) > limit and longer >= RATIO_MIN_TOKENS]
    if not outliers:
        return f"train: no target/source length-ratio outliers (median ratio {math.exp(median):.2f})"
    _, worst = max(outliers, key=lambda o: o[0])
    return (
        f"train: {len(outliers)} pairs with a target/source length ratio over {RATIO_FACTOR:g}x off the median "
        f"{math.exp(median):.2f} (misaligned?), e.g. {_example(worst)}"
    )


def _references_line(name: str, pairs: Sequence[Pair], fmt: str) -> str | None:
    """How many evaluation items have several references (data/references decides what an item is); None for a
    format where each line is an item of its own."""
    if fmt != "tsv":
        return None
    items = eval_set([pair for pair in pairs if has_both_sides(pair)], fmt)
    several = f" (up to {items.max_references})" if items.n_several else ""
    return (
        f"{name}: {items.n_several} of {len(items.items)} sources with several references{several}; "
        "each source is scored once, against all of its references"
    )


def _leakage_line(name: str, pairs: Sequence[Pair], seen: set[Pair]) -> str:
    leaked = [pair for pair in pairs if has_both_sides(pair) and pair in seen]
    if not leaked:
        return f"{name}: no pair also in the training data"
    n = sum(has_both_sides(p) for p in pairs)
    return f"{name}: {len(leaked)} of {n} pairs ({_percent(len(leaked), n)}) also in the training data (leakage), e.g. {_example(leaked[0])}"


def data_report(
    splits: Mapping[str, Sequence[Pair] | None], src: Side, tgt: Side, max_len: int | None, *, fmt: str, train_empty: int = 0
) -> list[str]:
    """The report's lines on `splits` ("train", "valid", maybe "test": pairs as read, empty sides included, or None
    where absent): pairs read and dropped and why, the evaluation sources with several references (`fmt`, data.format:
    TSV only), the unknown-token rate of the evaluation data under the vocabularies, length-ratio outliers in the
    training data, and evaluation pairs also in the training data.

    `max_len` (data.max_len) filters the training pairs only, as training does. `train_empty`: training pairs with
    an empty side already dropped from `splits["train"]` (by load_corpus), counted as read and dropped.
    """
    lines = []
    train = splits.get("train")
    filtered = _filter(train, src, tgt, max_len, train_empty) if train is not None else None
    if filtered is not None:
        lines.append(_counts_line("train", filtered, max_len))
    others = {name: pairs for name, pairs in splits.items() if name != "train" and pairs is not None}
    for name, pairs in others.items():
        lines.append(_counts_line(name, _filter(pairs, src, tgt, None), None))
        references = _references_line(name, pairs, fmt)
        if references is not None:
            lines.append(references)
        lines.append(_unknown_line(name, pairs, src, tgt))
    if filtered is not None:
        ratio = _ratio_line(filtered)
        if ratio is not None:
            lines.append(ratio)
        seen = {pair for pair in train if has_both_sides(pair)}  # type: ignore[union-attr]
        lines.extend(_leakage_line(name, pairs, seen) for name, pairs in others.items())
    return lines


def corpus_report(d: DataConfig, src: Side, tgt: Side, train: NonEmpty | None = None) -> list[str]:
    """`data_report` on the corpora `d` names, read as they are (empty sides included, so their drops are counted).

    `train`: the training pairs when the caller holds them already, as `load_nonempty` gives them: without their
    empty pairs, whose number the report adds back.
    """

    def read(spec: str) -> list[Pair] | None:
        return read_pairs(spec, d.format, d.src_lang, d.tgt_lang) if spec else None

    splits = {"train": train.pairs if train is not None else read(d.train), "valid": read(d.valid), "test": read(d.test)}
    return data_report(splits, src, tgt, d.max_len, fmt=d.format, train_empty=train.n_empty if train is not None else 0)
