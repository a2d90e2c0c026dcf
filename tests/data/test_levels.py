"""Per-side tokenization end to end: a `word<TAB>s y m b o l s` corpus trains characters -> symbols with no
preprocessing, and the checkpoint alone makes translate, eval and info read each side at its level."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from seq2seq.config import config_from_dict
from seq2seq.decode.evaluate import error_rates
from seq2seq.model.checkpoint import Checkpoint
from tests.conftest import invoke, strict_json, train_here

SYMBOLS = {"a": "AH1", "b": "B", "c": "K", "d": "D", "e": "IY0", "f": "F", "g": "G", "h": "HH"}


def g2p_pairs(n: int, seed: int) -> list[tuple[str, str]]:
    """Made-up words and their symbols, one per letter: `bead` -> `B IY0 AH1 D`."""
    rng = random.Random(seed)
    words = ["".join(rng.choice(list(SYMBOLS)) for _ in range(rng.randint(2, 6))) for _ in range(n)]
    return [(w, " ".join(SYMBOLS[c] for c in w)) for w in words]


@pytest.fixture(scope="module")
def g2p_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("g2p")
    for name, pairs in (("train", g2p_pairs(300, 1)), ("valid", g2p_pairs(20, 2))):
        (work / f"{name}.tsv").write_text("".join(f"{w}\t{s}\n" for w, s in pairs), encoding="utf-8")
    cfg = config_from_dict({
        "data": {"train": str(work / "train.tsv"), "valid": str(work / "valid.tsv"), "format": "tsv", "src_level": "char", "tgt_level": "space"},
        "model": {"emb_size": 16, "hidden_size": 24, "attention": "luong", "dropout": 0.0},
        "train": {"batch_size": 20, "max_steps": 40, "epochs": 3, "lr": 0.02, "seed": 3, "run_dir": str(work / "run"), "num_threads": 1},
        "decode": {"batch_size": 64, "max_len_b": 4},
    })
    train_here(cfg, work / "run", work)
    return work


def test_characters_train_into_symbols_and_the_checkpoint_keeps_both_levels(g2p_run: Path) -> None:
    ckpt = Checkpoint.read(g2p_run / "run" / "best.pt")
    assert (ckpt.src_tokenizer.level, ckpt.tgt_tokenizer.level) == ("char", "space")
    assert ckpt.config.data.levels == ("char", "space")
    assert set(ckpt.src_vocab.itos[4:]) <= set(SYMBOLS)  # characters
    assert set(ckpt.tgt_vocab.itos[4:]) <= set(SYMBOLS.values())  # whole symbols: AH1 is one token, not A H 1


def test_translate_eval_and_info_follow_the_checkpoint(g2p_run: Path, capsys, monkeypatch, tmp_path: Path) -> None:
    model = str(g2p_run / "run" / "best.pt")
    code, out, err = invoke(capsys, monkeypatch, "translate", "--model", model, "--json", "-q", "bead")
    assert code == 0, err
    result = json.loads(out)
    assert all(token in SYMBOLS.values() for token in result["tokens"]) and result["output"] == " ".join(result["tokens"])
    assert "warning" not in result and "unknown" not in err

    hyps = tmp_path / "hyps.txt"
    code, out, err = invoke(capsys, monkeypatch, "eval", "--model", model, "--json", "-q", "-o", str(hyps))
    assert code == 0, err
    report = strict_json(out)
    refs = [line.split("\t")[1] for line in (g2p_run / "valid.tsv").read_text(encoding="utf-8").splitlines()]
    rates = error_rates(hyps.read_text(encoding="utf-8").splitlines(), refs)
    assert (report["exact_match"], report["cer"], report["wer"]) == pytest.approx((rates.exact_match, rates.cer, rates.wer))
    assert report["word_error"] == pytest.approx(100 - rates.exact_match)  # G2P's word error, said by name (issue 32)
    code, out, err = invoke(capsys, monkeypatch, "eval", "--model", model, "-q")
    assert code == 0, err
    assert f"exact match  {rates.exact_match:.2f}   " in out and f"word error   {100 - rates.exact_match:.2f}   " in out
    assert f"CER          {rates.cer:.2f}   " in out and f"token error  {rates.wer:.2f}   " in out and "WER" not in out

    code, out, err = invoke(capsys, monkeypatch, "info", "--model", model, "--json")
    assert code == 0, err
    info = json.loads(out)
    assert info["tokenizer"]["level"] == "char" and info["tgt_tokenizer"]["level"] == "space"
    code, out, err = invoke(capsys, monkeypatch, "info", "--model", model)
    assert "tokenizer     source level=char, lowercase=False; target level=space, lowercase=False" in out


def test_a_mostly_unknown_input_is_warned_about(g2p_run: Path, capsys, monkeypatch) -> None:
    model = str(g2p_run / "run" / "best.pt")
    code, out, err = invoke(capsys, monkeypatch, "translate", "--model", model, "--json", "-q", "bead", "xyzq", "BEAD")
    assert code == 0, err
    results = [json.loads(line) for line in out.splitlines()]
    assert "warning" not in results[0]
    assert results[1]["warning"].startswith("4 of 4 tokens of this input are unknown")  # x y z q: no such letters
    assert results[2]["warning"].startswith("4 of 4 tokens")  # the model knows lowercase letters only
    assert "most tokens of 2 input line(s) are unknown to the model's source vocabulary (line 2, 3)" in err
    code, out, err = invoke(capsys, monkeypatch, "translate", "--model", model, "-q", "xyzq")
    assert code == 0 and out.count("\n") == 1 and "line 1" in err  # plain output stays one line per input


@pytest.mark.parametrize("key", ["data.level", "data.src_level", "data.tgt_level"])
def test_an_unknown_level_is_one_line_and_exit_2(key: str, tmp_path: Path, capsys, monkeypatch) -> None:
    (tmp_path / "c.yaml").write_text("data: {}\n", encoding="utf-8")
    code, out, err = invoke(capsys, monkeypatch, "build-vocab", "-c", str(tmp_path / "c.yaml"), "--set", f"{key}=phoneme")
    assert code == 2 and out == ""
    assert err.strip() == f"error: --set {key}: 'phoneme' is not one of word, char, space, bpe, unigram"


def test_build_vocab_prints_the_data_report_and_a_format_hint(tmp_path: Path, capsys, monkeypatch) -> None:
    (tmp_path / "good.tsv").write_text("ab\tAH1 B\n\tB\nba\tB AH1\n", encoding="utf-8")
    (tmp_path / "dev.tsv").write_text("ab\tAH1 B\ncd\tK D\n", encoding="utf-8")
    sets = [f"data.train={tmp_path / 'good.tsv'}", f"data.valid={tmp_path / 'dev.tsv'}", f"train.run_dir={tmp_path / 'run'}"]
    (tmp_path / "c.yaml").write_text("data: {}\n", encoding="utf-8")
    args = ["-c", str(tmp_path / "c.yaml")] + [a for s in sets + ["data.src_level=char", "data.tgt_level=space"] for a in ("--set", s)]
    code, out, err = invoke(capsys, monkeypatch, "build-vocab", *args)
    assert code == 2 and err.strip().endswith("looks like a TSV file, and data.format is parallel: set data.format: tsv (or --set data.format=tsv)")
    assert err.count("\n") == 1
    code, out, err = invoke(capsys, monkeypatch, "build-vocab", *args, "--set", "data.format=tsv")
    assert code == 0, err
    assert "  train: 3 pairs read, dropped 1 with an empty side, 2 kept\n" in out
    assert "  valid: unknown tokens under the vocabularies: source 50.0% (2 of 4 tokens), target 50.0% (2 of 4 tokens)\n" in out
    assert "  valid: 1 of 2 pairs (50.0%) also in the training data (leakage), e.g. 'ab' -> 'AH1 B'\n" in out
