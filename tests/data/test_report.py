"""The data report (pairs read and dropped, unknown tokens, length-ratio outliers, leakage) and the warnings of a
degenerate model and of a mostly unknown input."""

from __future__ import annotations

import subprocess
import sys

from seq2seq.data.report import Side, data_report, degeneration_warning, unknown_share, unknown_warning
from seq2seq.data.tokenizer import Tokenizer
from seq2seq.data.vocab import BOS, EOS, PAD, UNK, build_vocabs

TRAIN = [
    ("the cat sat", "die Katze sass"),
    ("a dog ran", "ein Hund lief"),
    ("", "leer"),  # empty source
    ("one two three four five six seven eight nine ten", "eins zwei drei vier fuenf sechs sieben acht neun zehn"),  # too long
    ("the dog sat", "der Hund sass"),
    ("a cat ran", "eine Katze lief"),
    ("hello friend", "hallo da mein Freund und noch viel mehr woerter"),  # length-ratio outlier: 9 / 2
    ("good night", "gute Nacht"),
]
VALID = [("the cat ran", "die Katze lief"), ("the dog sat", "der Hund sass"), ("a bird", "ein Vogel"), ("x", "")]
TEST = [("good night", "gute Nacht"), ("the cat sat", "die Katze sass")]


def sides(train=TRAIN, src_level: str = "word", tgt_level: str = "word") -> tuple[Side, Side]:
    src_tok, tgt_tok = Tokenizer(src_level), Tokenizer(tgt_level)
    kept = [p for p in train if p[0] and p[1]]
    src_vocab, tgt_vocab = build_vocabs(kept, src_tok, 1, None, False, tgt_tokenizer=tgt_tok)
    return Side(src_tok, src_vocab), Side(tgt_tok, tgt_vocab)


def test_the_report_counts_drops_unknown_tokens_outliers_and_leakage() -> None:
    src, tgt = sides()
    lines = data_report({"train": TRAIN, "valid": VALID, "test": TEST}, src, tgt, max_len=9, fmt="parallel")
    text = "\n".join(lines)
    assert "train: 8 pairs read, dropped 1 with an empty side and 1 longer than data.max_len=9 tokens, 6 kept" in lines
    assert "valid: 4 pairs read, dropped 1 with an empty side, 3 kept" in lines
    assert "test: 2 pairs read, 2 kept" in lines
    # valid sources: the cat ran / the dog sat / a bird: "bird" is unknown (1 of 8); targets: "Vogel" (1 of 8)
    assert "valid: unknown tokens under the vocabularies: source 12.5% (1 of 8 tokens), target 12.5% (1 of 8 tokens)" in lines
    assert "train: 1 pairs with a target/source length ratio over 3x off the median" in text
    assert "'hello friend' -> 'hallo da mein" in text
    assert "valid: 1 of 3 pairs (33.3%) also in the training data (leakage), e.g. 'the dog sat' -> 'der Hund sass'" in lines
    assert "test: 2 of 2 pairs (100.0%) also in the training data (leakage), e.g. 'good night' -> 'gute Nacht'" in lines


def test_a_clean_corpus_reports_no_problem() -> None:
    train = [("a b c d", "w x y z"), ("b c d a", "x y z w"), ("c d", "y z")]
    src, tgt = sides(train)
    lines = data_report({"train": train, "valid": [("d c b a", "z y x w")], "test": None}, src, tgt, max_len=100, fmt="parallel")
    assert lines == [
        "train: 3 pairs read, 3 kept",
        "valid: 1 pairs read, 1 kept",
        "valid: unknown tokens under the vocabularies: source 0.0% (0 of 4 tokens), target 0.0% (0 of 4 tokens)",
        "train: no target/source length-ratio outliers (median ratio 1.00)",
        "valid: no pair also in the training data",
    ]


def test_the_report_reads_each_side_at_its_level() -> None:
    train = [("brownlee", "B R AW1 N L IY0"), ("cat", "K AE1 T")]
    src, tgt = sides(train, "char", "space")
    lines = data_report({"train": train, "valid": [("cab", "K AE1 B")]}, src, tgt, max_len=100, fmt="parallel")
    # characters c a b: all known; symbols K AE1 B: B is known, all known
    assert "valid: unknown tokens under the vocabularies: source 0.0% (0 of 3 tokens), target 0.0% (0 of 3 tokens)" in lines
    lines = data_report({"train": train, "valid": [("cab", "K AE1 B")]}, src, tgt, max_len=5, fmt="parallel")
    assert lines[0] == "train: 2 pairs read, dropped 1 longer than data.max_len=5 tokens, 1 kept"  # 8 characters


def test_unknown_share_and_the_translate_warning() -> None:
    assert unknown_share([]) == 0.0 and unknown_share([EOS]) == 0.0
    assert unknown_share([5, UNK, 7, UNK, EOS]) == 0.5  # <eos> is no token of the input
    assert unknown_share([PAD, BOS, UNK, EOS]) == 1.0
    assert unknown_warning([5, UNK, 7, UNK, EOS]) is None  # half: not most
    warning = unknown_warning([UNK, UNK, 7, EOS])
    assert warning is not None and warning.startswith("2 of 3 tokens of this input are unknown")


def test_degeneration_warning_names_the_numbers() -> None:
    refs = [f"sentence number {i} here" for i in range(10)]
    assert degeneration_warning(refs, refs) is None
    same = ["a man ."] * 7 + refs[7:]
    warning = degeneration_warning(same, refs)
    assert warning is not None and "7 of 10 outputs (70.0%) are the same: 'a man .'" in warning
    short = [f"s{i}" for i in range(10)]
    warning = degeneration_warning(short, refs)
    assert warning is not None and "outputs are 2.0 characters long on average, the references 22.0" in warning
    # references that are themselves mostly one sentence: the same outputs are right, not degenerate
    assert degeneration_warning(["yes"] * 8 + ["no"] * 2, ["yes"] * 8 + ["no"] * 2) is None
    assert degeneration_warning(["a", "a"], ["b c d", "e f g"]) == (
        "degenerate outputs: outputs are 1.0 characters long on average, the references 5.0"
    )  # too few outputs to judge sameness, but not length
    assert degeneration_warning([], []) is None


def test_the_report_needs_no_torch() -> None:
    code = "import sys, seq2seq.data.report; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)



def test_the_report_counts_tsv_sources_with_several_references() -> None:
    train = [("cat", "K AE1 T"), ("dog", "D AO1 G"), ("bee", "B IY1")]
    valid = [("dog", "D AO1 G"), ("cat", "K AE1 T"), ("dog", "D AA1 G"), ("dog", "D AO G"), ("bee", "B IY1"), ("bee", "B IY0"), ("owl", "")]
    src, tgt = sides(train, "char", "space")
    lines = data_report({"train": train, "valid": valid, "test": [("cat", "K AE1 T")]}, src, tgt, max_len=None, fmt="tsv")
    assert "valid: 2 of 3 sources with several references (up to 3); each source is scored once, against all of its references" in lines
    assert "test: 0 of 1 sources with several references; each source is scored once, against all of its references" in lines
    parallel = data_report({"train": train, "valid": valid}, src, tgt, max_len=None, fmt="parallel")
    assert not any("several references" in line for line in parallel)  # parallel lines are items of their own
