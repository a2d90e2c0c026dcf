"""Scores: sacreBLEU's BLEU, chrF and TER, exact match, CER and WER on pairs worked by hand, and the loss that no
search changes."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from seq2seq.config import Config, ModelConfig, replace as replace_config
from seq2seq.data.encoding import encode_pairs
from seq2seq.data.tokenizer import Tokenizer
from seq2seq.data.vocab import Vocab
from seq2seq.decode.evaluate import DecodingSetup, Scores, bleu_chrf_ter, error_rates, evaluate
from seq2seq.decode.torch_backend import corpus_loss, open_checkpoint
from seq2seq.decode.translator import Translator
from seq2seq.files import dump_json
from seq2seq.model.checkpoint import Checkpoint
from seq2seq.model.network import Seq2Seq
from tests.conftest import invoke, strict_json, toy_pairs, write_corpus


def test_bleu_chrf_and_ter_of_pairs_worked_by_hand() -> None:
    bleu, chrf, ter, signatures = bleu_chrf_ter(["a b c d e"], ["a b c d f"])
    # BLEU: n-gram precisions 4/5, 3/4, 2/3, 1/2 and equal lengths (no brevity penalty): their geometric mean
    assert bleu == pytest.approx(100 * (4 / 5 * 3 / 4 * 2 / 3 * 1 / 2) ** (1 / 4))
    # chrF: the characters without spaces, abcde / abcdf: precision = recall = 4/5, 3/4, 2/3, 1/2, 0 for
    # n = 1 .. 5 (no 6-grams in five characters), so F = their mean
    assert chrf == pytest.approx(100 * (4 / 5 + 3 / 4 + 2 / 3 + 1 / 2 + 0) / 5)
    assert ter == pytest.approx(100 * 1 / 5)  # one substitution in five reference words
    assert bleu_chrf_ter(["a b c d e"], ["a b c d e"])[:3] == pytest.approx((100.0, 100.0, 0.0))
    assert bleu_chrf_ter(["v w x y z"], ["a b c d e"])[:3] == pytest.approx((0.0, 0.0, 100.0))
    assert "nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp" in signatures["bleu"]


def test_exact_match_cer_and_wer_of_pairs_worked_by_hand() -> None:
    hyps = ["B R AW1 N", "K AE1 T", "D AO1 G"]
    refs = ["B R AW1 N", "K AE1 T S", "D  AA1 G "]  # the reference's extra spaces are not errors
    rates = error_rates(hyps, refs)
    assert rates.exact_match == pytest.approx(100 / 3)  # the first only
    # words: 0 + 1 (deleted S) + 1 (AO1 for AA1) edits over 4 + 4 + 3 reference tokens
    assert rates.wer == pytest.approx(100 * 2 / 11)
    # characters: 0 + 2 (" S") + 1 (O for A) edits over 9 + 9 + 7 reference characters (normalized)
    assert rates.cer == pytest.approx(100 * 3 / 25)
    # corpus-level, not a mean of sentence rates: one long right reference outweighs a short wrong one
    long_right = error_rates(["a b c d e f g h i j", "x"], ["a b c d e f g h i j", "y"])
    assert long_right.wer == pytest.approx(100 * 1 / 11) and long_right.cer == pytest.approx(100 * 1 / 20)
    assert error_rates(["a b"], ["a b"]) == error_rates([" a  b"], ["a b "])
    assert (error_rates(["a b"], ["a b"]).cer, error_rates(["a b"], ["a b"]).wer) == (0.0, 0.0)
    assert error_rates(["x y z"], ["a"]).wer == pytest.approx(300.0)  # insertions: a rate may pass 100
    assert error_rates([""], [""]) == error_rates(["a"], ["a"])  # empty references: no error without output ...
    assert error_rates(["a"], [""]).cer == 100.0  # ... and 100 with one
    with pytest.raises(ValueError):
        error_rates(["a"], [])


def test_the_loss_ignores_the_search_and_beam_hypotheses_are_each_sentence_alone(bpe_run: Path) -> None:
    # fp32: under bf16 autocast, kernels chosen for another batch shape round differently, and a near-tie of
    # a barely trained model can then flip (auto picks bf16 on a CPU with native bf16)
    t = Translator.load(bpe_run, precision="fp32")
    pairs = toy_pairs("val", 30)
    greedy = evaluate(t, pairs, beam_size=1)
    beam = evaluate(replace(t, cfg=replace_config(t.cfg, "decode", length_penalty=1.0)), pairs, beam_size=3)
    assert greedy.loss == beam.loss and greedy.n_tokens == beam.n_tokens
    assert greedy.ppl == pytest.approx(2.718281828459045 ** greedy.loss)
    t = replace(t, cfg=replace_config(t.cfg, "decode", length_penalty=1.0))
    assert beam.hypotheses == [t.translate([s], beam_size=3)[0] for s, _ in pairs]


# ---- `eval` reports the model that decoded: with --quantize int8 the loss is the int8 model's, and the report

PAIRS = toy_pairs("val", 24)


def toy_checkpoint(seed: int = 0) -> Checkpoint:
    """A checkpoint of a small random model whose word vocabularies cover PAIRS."""
    tokenizer = Tokenizer()
    src = Vocab.build(Counter(t for s, _ in PAIRS for t in tokenizer.tokenize(s)))
    tgt = Vocab.build(Counter(t for _, s in PAIRS for t in tokenizer.tokenize(s)))
    cfg = Config(model=ModelConfig(emb_size=16, hidden_size=24, dropout=0.0))
    torch.manual_seed(seed)
    model = Seq2Seq(cfg.model, len(src), len(tgt))
    return Checkpoint(cfg, src, tgt, tokenizer, tokenizer, model.state_dict(), 5)


@pytest.fixture(scope="module")
def ckpt() -> Checkpoint:
    return toy_checkpoint()


def from_checkpoint(ckpt: Checkpoint, device: str, precision: str | None, quantize: str | None = None) -> Translator:
    return Translator.of([open_checkpoint(ckpt, device, precision, quantize)])


def loss_of(t: Translator, precision: str, batch_size: int) -> float:
    """Teacher-forced loss per token of `t`'s torch model on PAIRS, outside `evaluate`.

    The batch size matters with int8: dynamic quantization scales the activations per batch.
    """
    total, n = corpus_loss(t.backend.model, encode_pairs(PAIRS, t.src, t.tgt), t.backend.device, precision, batch_size)
    return total / n






def test_the_int8_loss_is_the_int8_models_and_the_scores_say_so(ckpt: Checkpoint) -> None:
    fp32 = from_checkpoint(ckpt, "cpu", "fp32", "none")
    int8 = from_checkpoint(ckpt, "cpu", None, "int8")
    assert loss_of(int8, "fp32", 5) != loss_of(fp32, "fp32", 5)  # int8 rounding moves the loss: the check below means something
    scores = evaluate(int8, PAIRS, beam_size=2, batch_size=5)
    assert scores.loss == pytest.approx(loss_of(int8, "fp32", 5), rel=1e-9)
    assert scores.ppl == pytest.approx(math.exp(scores.loss))
    assert scores.setup == DecodingSetup(beam_size=2, batch_size=5, quantize="int8", precision="fp32", device="cpu")
    plain = evaluate(fp32, PAIRS)
    assert plain.setup == DecodingSetup(beam_size=1, batch_size=128, quantize="none", precision="fp32", device="cpu")
    assert plain.loss == pytest.approx(loss_of(fp32, "fp32", 128), rel=1e-9)


@pytest.mark.skipif(torch.cuda.is_available(), reason="eval decodes on CUDA when present, and int8 runs on the CPU only")
def test_eval_json_and_table_report_the_quantized_models_loss_and_the_setup(tmp_path, monkeypatch, capsys, ckpt) -> None:
    path = tmp_path / "model.pt"
    ckpt.write(path)
    prefix = write_corpus(tmp_path, "dev", PAIRS)
    files = ["--src", f"{prefix}.en", "--ref", f"{prefix}.de"]
    int8_loss = loss_of(from_checkpoint(ckpt, "cpu", None, "int8"), "fp32", 7)
    fp32_loss = loss_of(from_checkpoint(ckpt, "cpu", "fp32", "none"), "fp32", 7)
    assert abs(int8_loss - fp32_loss) > 1e-6

    code, out, err = invoke(capsys, monkeypatch, "eval", "--model", str(path), *files, "--quantize", "int8", "--beam", "2", "--batch-size", "7", "--json", "-q")
    assert code == 0, err
    report = strict_json(out)
    assert {k: report[k] for k in ("beam_size", "batch_size", "quantize", "precision", "device")} == {
        "beam_size": 2, "batch_size": 7, "quantize": "int8", "precision": "fp32", "device": "cpu",
    }
    assert report["loss"] == pytest.approx(int8_loss, rel=1e-9) and report["n_sentences"] == len(PAIRS)

    code, out, err = invoke(capsys, monkeypatch, "eval", "--model", str(path), *files, "--quantize", "int8", "--beam", "2", "--batch-size", "7", "-q")
    assert code == 0, err
    assert "decoding     beam 2, batch 7, quantize int8, precision fp32, cpu\n" in out
    assert f"loss / ppl   {int8_loss:.4f} / " in out

    code, out, err = invoke(capsys, monkeypatch, "eval", "--model", str(path), *files, "--json", "-q")
    assert code == 0, err
    plain = strict_json(out)
    assert plain["quantize"] == "none" and plain["beam_size"] == 1 and plain["batch_size"] == 128
    assert plain["precision"] in ("fp32", "bf16") and plain["loss"] != report["loss"]


def test_a_non_finite_loss_is_null_in_the_json_report() -> None:
    setup = DecodingSetup(beam_size=1, batch_size=8, quantize="none", precision="fp32", device="cpu")
    scores = Scores(10.0, 20.0, 30.0, 50.0, 5.0, 10.0, math.inf, math.inf, 3, 9, setup, {"bleu": "sig"})
    report = strict_json(dump_json({**scores.as_dict(), "model": "m.pt"}))
    assert report["loss"] is None and report["ppl"] is None and report["bleu"] == 10.0 and report["quantize"] == "none"


# ---- several references per item: an output is right when it matches any of them

def test_several_references_exact_match_cer_and_wer_worked_by_hand() -> None:
    hyps = ["K AE1 T", "D AA1 G"]
    refs = [("K AE1 T S", "K AE1 T"), ("D AO1 G", "D AO1 G Z")]
    rates = error_rates(hyps, refs)
    assert rates.exact_match == pytest.approx(50.0)  # the first equals its second reference
    # CER: item 1 takes "K AE1 T" (0 edits / 7), item 2 "D AO1 G" (1 / 7, not 3 / 9): 1 edit over 7 + 7 characters
    assert rates.cer == pytest.approx(100 * 1 / 14)
    # WER: item 1 "K AE1 T" (0 / 3), item 2 "D AO1 G" (1 / 3, not 2 / 4): 1 edit over 3 + 3 tokens
    assert rates.wer == pytest.approx(100 * 1 / 6)
    # the closest reference is the fewest edits per reference character, not the fewest edits: abcdefgh (4 / 8), not
    # abx (2 / 3); its own length is what the corpus rate divides by
    assert error_rates(["abcd"], [("abx", "abcdefgh")]).cer == pytest.approx(100 * 4 / 8)
    # a tie (2 / 6 and 1 / 3) takes the first reference: (2 + 0) / (6 + 1), not (1 + 0) / (3 + 1)
    assert error_rates(["abcd", "z"], [("abcdxy", "abc"), "z"]).cer == pytest.approx(100 * 2 / 7)
    # a string is one reference, as ever: one reference in a tuple scores the same
    assert error_rates(hyps, ["K AE1 T S", "D AO1 G"]) == error_rates(hyps, [("K AE1 T S",), ("D AO1 G",)])


def test_several_references_bleu_and_ter_worked_by_hand() -> None:
    # each n-gram of the output is in one reference or the other: all n-gram precisions are 1, the lengths equal
    bleu, chrf, ter, signatures = bleu_chrf_ter(["a b c d e"], [("a b c d x", "y b c d e")])
    assert bleu == pytest.approx(100.0) and ter == pytest.approx(100 * 1 / 5)  # TER: the fewest edits, 1
    assert bleu_chrf_ter(["a b c d e"], ["a b c d x"])[0] == pytest.approx(100 * (4 / 5 * 3 / 4 * 2 / 3 * 1 / 2) ** (1 / 4))
    assert "nrefs:2|" in signatures["bleu"]
    # items with 3 and 2 references: TER = fewest edits / mean length of the item's own references, summed:
    # (1 + 0) / (5 + (2 + 6) / 2). Padding the second item by repeating its first reference would make its mean
    # (2 + 6 + 2) / 3 and TER 1 / (5 + 10 / 3)
    hyps = ["a b c d e", "p q"]
    refs = [("a b c d f", "a b c d g", "a b c d h"), ("p q", "p q r s t u")]
    bleu, chrf, ter, signatures = bleu_chrf_ter(hyps, refs)
    assert ter == pytest.approx(100 * 1 / 9)
    assert "nrefs:var|" in signatures["bleu"]
    assert chrf == pytest.approx(bleu_chrf_ter(hyps, [refs[0], ("p q", "p q r s t u", "p q")])[1])  # chrF: the best match


@pytest.fixture(scope="module")
def fp32_ckpt() -> Checkpoint:
    """toy_checkpoint, decoded in fp32 wherever it runs (so that `eval` and `translate` give the same outputs)."""
    ckpt = toy_checkpoint()
    return replace(ckpt, config=replace_config(ckpt.config, "train", precision="fp32"))


def test_eval_scores_items_with_several_references_from_a_tsv_file_or_several_ref_files(tmp_path, monkeypatch, capsys, fp32_ckpt) -> None:
    path = tmp_path / "model.pt"
    fp32_ckpt.write(path)
    pairs = PAIRS[:8]
    outputs = Translator.load(path).translate([s for s, _ in pairs])
    assert all(outputs) and all(o != t for o, (_, t) in zip(outputs, pairs))  # a random model: never the reference
    # each source twice: with its reference, then with the model's own output
    lines = [line for (s, t), o in zip(pairs, outputs) for line in (f"{s}\t{t}", f"{s}\t{o}")]
    (tmp_path / "two.tsv").write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    refs = [write_corpus(tmp_path, name, [(s, t) for s, t in zip([s for s, _ in pairs], texts)]) for name, texts in
            (("ref", [t for _, t in pairs]), ("own", outputs))]

    code, out, err = invoke(capsys, monkeypatch, "eval", "--model", str(path), "--data", str(tmp_path / "two.tsv"), "--json", "-q")
    assert code == 0, err
    tsv = strict_json(out)
    assert (tsv["exact_match"], tsv["cer"], tsv["wer"], tsv["bleu"]) == pytest.approx((100, 0, 0, 100))  # each output is a reference
    assert tsv["references"] == 2 and tsv["n_sentences"] == len(pairs)
    # the loss is over every line, both of each source's (their tokens and <eos>)
    tokenizer = fp32_ckpt.tgt_tokenizer
    assert tsv["n_tokens"] == sum(len(tokenizer.tokenize(t)) + len(tokenizer.tokenize(o)) + 2 for (_, t), o in zip(pairs, outputs))

    ref_files = ["--src", f"{refs[0]}.en", "--ref", f"{refs[0]}.de", "--ref", f"{refs[1]}.de"]
    code, out, err = invoke(capsys, monkeypatch, "eval", "--model", str(path), *ref_files, "--json", "-q")
    assert code == 0, err
    assert strict_json(out) == tsv  # the same items and pairs, in the same order: the same numbers

    code, out, err = invoke(capsys, monkeypatch, "eval", "--model", str(path), "--src", f"{refs[0]}.en", "--ref", f"{refs[0]}.de", "--json", "-q")
    assert code == 0, err
    one = strict_json(out)
    assert one["references"] == 1 and one["exact_match"] == 0.0 and one["n_tokens"] < tsv["n_tokens"]

    code, out, err = invoke(capsys, monkeypatch, "eval", "--model", str(path), "--data", str(tmp_path / "two.tsv"), "-q")
    assert code == 0, err
    assert f"sentences    {len(pairs)}  (target tokens {tsv['n_tokens']})\nreferences   2 at most per sentence\n" in out


def test_a_ref_file_with_another_line_count_is_one_line_exit_2(tmp_path, monkeypatch, capsys, ckpt) -> None:
    path = tmp_path / "model.pt"
    ckpt.write(path)
    prefix = write_corpus(tmp_path, "dev", PAIRS[:3])
    (tmp_path / "short.de").write_text("x\ny\n", encoding="utf-8")
    # the short file first: each --ref is read, not only the last one
    args = ["eval", "--model", str(path), "--src", f"{prefix}.en", "--ref", str(tmp_path / "short.de"), "--ref", f"{prefix}.de"]
    code, out, err = invoke(capsys, monkeypatch, *args)
    assert code == 2 and out == ""
    assert err == f"error: misaligned corpus: {prefix}.en has 3 lines but {tmp_path / 'short.de'} has 2\n"


def test_scored_outputs_are_the_lines_encoder_text_makes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Output ids become a line in one place, data/encoding.Encoder.text: a line break decoded inside an output (a
    sentencepiece byte-fallback piece <0x0A> can make one) is a space, so `eval --output` keeps one line per output."""
    import seq2seq.decode.translator as translator_module
    from seq2seq.data.encoding import Encoder
    from seq2seq.data.vocab import SPECIALS
    from seq2seq.decode.search import Hypothesis
    from seq2seq.decode.torch_backend import loaded_model
    from tests.conftest import tiny_model

    vocab = Vocab([*SPECIALS, "a", "b", "\n"])
    char = Tokenizer("char")
    src, tgt = Encoder(char, vocab), Encoder(char, vocab)
    ids = [vocab.stoi["a"], vocab.stoi["\n"], vocab.stoi["b"]]
    monkeypatch.setattr(translator_module, "decode", lambda model, sources, *args, **kwargs: [[Hypothesis(ids, 0.0, None)] for _ in sources])
    t = Translator.of([loaded_model(tiny_model(), Config(), src, tgt, torch.device("cpu"), "fp32")])
    scores = evaluate(t, [("ab", "a b")])
    assert scores.hypotheses == [tgt.text(ids)] == ["a b"]
    assert scores.exact_match == 100.0


def test_eval_reads_sources_as_translate_does_truncated_to_max_src_len(ckpt: Checkpoint) -> None:
    """Issue 33: eval decoded sources untruncated while translate truncated them at decode.max_src_len, so on a long
    input the two commands disagreed. Now both read them through Translator.sources."""
    short = from_checkpoint(replace(ckpt, config=replace_config(ckpt.config, "decode", max_src_len=2)), "cpu", "fp32")
    pairs = [(s + " " + s, t) for s, t in PAIRS[:8]]  # longer than 2 tokens each
    assert all(source.truncated for source in short.sources([s for s, _ in pairs], warn_truncated=False))
    assert evaluate(short, pairs).hypotheses == short.translate([s for s, _ in pairs])
    untruncated = from_checkpoint(ckpt, "cpu", "fp32")
    assert evaluate(untruncated, pairs).hypotheses != evaluate(short, pairs).hypotheses


AMX_CPU = {"cpu_name": "Intel Xeon (Sapphire Rapids)", "capability": "AVX512", "avx512_bf16": True, "amx_bf16": True}


def test_auto_decodes_a_small_checkpoint_in_fp32_on_a_native_bf16_cpu(ckpt: Checkpoint, monkeypatch) -> None:
    """device.choose_decoding_precision where translate, eval and serve open a checkpoint: the toy model is far below
    SMALL_DECODE_PARAMETERS, so `auto` decodes it in fp32 even where bf16 is native; an explicit bf16 stays bf16."""
    from seq2seq import device

    monkeypatch.setattr(device, "cpu_capabilities", lambda: AMX_CPU)
    auto = replace_config(ckpt.config, "train", precision="auto")
    assert device.choose_precision("auto", torch.device("cpu")).precision == "bf16"  # what training picks here
    assert open_checkpoint(replace(ckpt, config=auto), "cpu", None).precision == "fp32"
    assert open_checkpoint(replace(ckpt, config=auto), "cpu", "auto").precision == "fp32"
    assert open_checkpoint(replace(ckpt, config=auto), "cpu", "bf16").precision == "bf16"
