"""Fine-tuning (train.init_from, `train --init-from`): a new run from a trained model's weights, vocabularies and
tokenizers, with a fresh optimizer and step count, the source never written to; its resume; its errors. And what
every run logs about its data: the data report before training, the degeneration warning at validation."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from seq2seq.config import config_from_dict
from seq2seq.data.vocab import Vocab
from seq2seq.model.checkpoint import Checkpoint
from seq2seq.training.trainer import train
from tests.conftest import invoke, toy_pairs, train_here, write_corpus

MODEL = {"emb_size": 8, "hidden_size": 16, "dropout": 0.0, "attention": "luong"}
TRAIN = {"batch_size": 32, "num_threads": 1, "device": "cpu", "precision": "fp32", "log_every": 1}


def raw_config(work: Path, train_name: str, pairs: list[tuple[str, str]], valid: list[tuple[str, str]], **train_keys: object) -> dict:
    data = {"train": write_corpus(work / "data", train_name, pairs), "valid": write_corpus(work / "data", f"{train_name}_val", valid),
            "src_lang": "en", "tgt_lang": "de"}
    return {"data": data, "train": {**TRAIN, **train_keys}}


def train_quietly(raw: dict, run_dir: Path, **kwargs: object):
    threads = torch.get_num_threads()
    try:
        return train(config_from_dict(raw), run_dir, quiet=True, **kwargs)
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def source_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny word-level model trained 3 steps on 200 toy pairs; read it, never change it."""
    work = tmp_path_factory.mktemp("source")
    raw = raw_config(work, "old", toy_pairs("train", 200), toy_pairs("val", 30), max_steps=3, valid_every=3)
    # in `work`: a module's fixture runs before each test's own working directory is made (runs/latest goes there)
    train_here(config_from_dict({**raw, "model": MODEL}), work / "run", work)
    return work / "run"


def snapshot(directory: Path) -> dict[str, tuple[bytes, int]]:
    """Every file under `directory`: its bytes and modification time."""
    return {str(p.relative_to(directory)): (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(directory.rglob("*")) if p.is_file()}


def new_data(work: Path, **train_keys: object) -> dict:
    """Other training data than the source's (toy pairs 200-299), no model keys: they are inherited."""
    return raw_config(work, "new", toy_pairs("train", 300)[200:], toy_pairs("val", 30), **train_keys)


def test_finetuning_from_a_run_directory_starts_from_its_model_afresh(source_run: Path, tmp_path: Path) -> None:
    before = snapshot(source_run)
    source = Checkpoint.read(source_run / "best.pt")
    # lr so small that two updates leave the weights as loaded: they must then be the source's
    result = train_quietly(new_data(tmp_path, max_steps=2, valid_every=2, lr=1e-12, init_from=str(source_run)), tmp_path / "ft")
    assert result.progress.step == 2  # a fresh step count, not 3 + 2
    last = Checkpoint.read(tmp_path / "ft" / "last.pt")
    assert last.config.model == source.config.model  # the model keys left out are the source's
    assert last.config.train.init_from == str(source_run) and last.config.data.train.endswith("new")
    assert last.src_vocab == source.src_vocab and last.tgt_vocab == source.tgt_vocab  # not rebuilt from the new data
    assert (tmp_path / "ft" / "src_vocab.json").read_bytes() == (source_run / "src_vocab.json").read_bytes()
    for name, tensor in source.weights.items():
        torch.testing.assert_close(last.weights[name], tensor, rtol=0, atol=1e-6)
    adam_steps = {float(s["step"]) for s in last.training["optimizer"]["state"].values()}
    assert adam_steps == {2.0}  # a fresh optimizer: two updates, not the source's three plus two
    assert last.training["progress"]["best_score"] is not None and last.training["kept_best"] == []
    log = (tmp_path / "ft" / "train.log").read_text(encoding="utf-8")
    assert f"fine-tuning {source_run / 'best.pt'} (trained 3 steps" in log
    assert "data report: train: unknown tokens under the vocabularies: source " in log
    assert "data report: valid: unknown tokens under the vocabularies: source " in log
    assert snapshot(source_run) == before  # the source run is never written to


def test_finetuning_from_a_pt_file_inherits_the_sentencepiece_model(bpe_run: Path, tmp_path: Path) -> None:
    """A BPE model's sentencepiece model travels into the new run (not retrained on the new data), from a .pt."""
    before = snapshot(bpe_run)
    model = tmp_path / "model.pt"
    shutil.copyfile(bpe_run / "best.pt", model)
    import seq2seq

    threads = torch.get_num_threads()
    try:  # through the Python API's init_from, as `train --init-from` does
        seq2seq.train(new_data(tmp_path, max_steps=1), tmp_path / "ft", init_from=model, quiet=True)
    finally:
        torch.set_num_threads(threads)
    source, last = Checkpoint.read(model), Checkpoint.read(tmp_path / "ft" / "last.pt")
    assert last.config.data.level == "bpe" and last.config.data.vocab_size == source.config.data.vocab_size
    assert last.src_tokenizer.sp_model == source.src_tokenizer.sp_model is not None
    assert (tmp_path / "ft" / "sentencepiece" / "joint.model").read_bytes() == source.src_tokenizer.sp_model
    assert last.src_vocab == source.src_vocab
    assert snapshot(bpe_run) == before


def test_resume_of_a_finetuning_run_continues_it_without_reading_the_source(source_run: Path, tmp_path: Path) -> None:
    copy = tmp_path / "source"
    shutil.copytree(source_run, copy)
    raw = new_data(tmp_path, max_steps=2, valid_every=2, init_from=str(copy))
    train_quietly(raw, tmp_path / "ft")
    shutil.rmtree(copy)  # a resume reads the run's own last.pt and config, never train.init_from
    raw["train"]["max_steps"] = 4
    result = train_quietly(raw, tmp_path / "ft", resume=True)
    assert result.progress.step == 4
    raw["train"]["max_steps"], raw["train"]["init_from"] = 5, None  # without init_from too: the run's config knows
    assert train_quietly(raw, tmp_path / "ft", resume=True).progress.step == 5
    assert Checkpoint.read(tmp_path / "ft" / "last.pt").config.train.init_from == str(copy)


def write_yaml(path: Path, raw: dict) -> Path:
    import yaml

    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    "extra, key",
    [(["--set", "model.hidden_size=32"], "model.hidden_size"), (["--set", "data.level=char"], "data.level"),
     (["--set", "model.enc_layers=2"], "model.enc_layers")],
)
def test_a_key_contradicting_the_model_is_one_line_naming_it(
    source_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, extra: list[str], key: str
) -> None:
    config = write_yaml(tmp_path / "ft.yaml", new_data(tmp_path, max_steps=1, run_dir=str(tmp_path / "ft")))
    code, _, err = invoke(capsys, monkeypatch, "train", "--config", str(config), "--init-from", str(source_run), *extra)
    assert code == 2 and err.startswith(f"error: {key}: ") and "contradicts the model in train.init_from" in err
    assert err.count("\n") == 1 and not (tmp_path / "ft").exists()


def test_init_from_no_model_or_a_broken_one_is_one_line_exit_2(
    source_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    config = write_yaml(tmp_path / "ft.yaml", new_data(tmp_path, max_steps=1, run_dir=str(tmp_path / "ft")))
    broken = tmp_path / "broken.pt"
    broken.write_bytes((source_run / "best.pt").read_bytes()[:1000])
    empty_run = tmp_path / "empty_run"
    empty_run.mkdir()
    for model, words in ((tmp_path / "nothing", "no such model"), (broken, "not a loadable checkpoint"), (empty_run, "no best.pt")):
        code, _, err = invoke(capsys, monkeypatch, "train", "--config", str(config), "--init-from", str(model))
        assert code == 2 and err.startswith("error: train.init_from: ") and words in err and err.count("\n") == 1, err
    assert not (tmp_path / "ft").exists()
    # the run directory of the source itself: fine-tuning would write into it
    code, _, err = invoke(capsys, monkeypatch, "train", "--config", str(config), "--init-from", str(source_run),
                          "--set", f"train.run_dir={source_run}", "--overwrite")
    assert code == 2 and "is in this run's directory" in err


def test_every_run_logs_the_data_report(tmp_path: Path) -> None:
    pairs = toy_pairs("train", 120) + [("", "leer"), ("a " * 30, "b")]
    valid = toy_pairs("train", 5) + toy_pairs("val", 20)  # 5 validation pairs leaked from the training data
    raw = raw_config(tmp_path, "t", pairs, valid, max_steps=1)
    raw["data"]["max_len"] = 20
    train_quietly({**raw, "model": MODEL}, tmp_path / "run")
    lines = [line.split(" INFO ", 1)[1] for line in (tmp_path / "run" / "train.log").read_text().splitlines() if "data report:" in line]
    # the empty pair is counted though load_corpus dropped it before the report
    assert "data report: train: 122 pairs read, dropped 1 with an empty side and 1 longer than data.max_len=20 tokens, 120 kept" in lines
    assert "data report: valid: 25 pairs read, 25 kept" in lines
    assert any(line.startswith("data report: valid: unknown tokens under the vocabularies: source ") for line in lines)
    assert any(line.startswith("data report: valid: 5 of 25 pairs (20.0%) also in the training data (leakage)") for line in lines)
    assert any("length-ratio" in line for line in lines)


def test_validation_warns_when_the_model_outputs_the_same_sentence(tmp_path: Path) -> None:
    """Every training target is one sentence: the model learns to say it whatever the input, and each validation
    names the numbers (the validation references differ)."""
    pairs = [(src, "das ist alles .") for src, _ in toy_pairs("train", 200)]
    raw = raw_config(tmp_path, "same", pairs, toy_pairs("val", 30), max_steps=28, valid_every=14, lr=0.02, seed=1)
    train_quietly({**raw, "model": MODEL}, tmp_path / "run")
    log = (tmp_path / "run" / "train.log").read_text(encoding="utf-8")
    assert "WARNING step 28: degenerate outputs: 30 of 30 outputs (100.0%) are the same: 'das ist alles .'" in log


def data_config(**keys: object):
    return config_from_dict({"data": keys})


@pytest.mark.parametrize(
    "model, ours",
    [({"level": "char"}, {"src_level": "char"}), ({"level": "char"}, {"src_level": "char", "tgt_level": "char"}),
     ({"src_level": "char", "tgt_level": "space"}, {"level": "char", "tgt_level": "space"}),
     ({}, {"vocab_size": 16000}), ({}, {"sp_shared": False}), ({"src_level": "bpe"}, {"sp_shared": False})],
)
def test_fine_tuning_compares_the_effective_levels_and_only_the_keys_that_matter(model: dict, ours: dict) -> None:
    """The same level set by another key, or a sentencepiece key of a model without (a shared) sentencepiece model,
    is no contradiction; the new run takes the model's keys as they are."""
    from seq2seq.training.finetune import inherit_config

    source = data_config(**model)
    inherited = inherit_config(data_config(**ours), source, "m.pt")
    assert inherited.data == source.data


@pytest.mark.parametrize(
    "model, ours, key",
    [({"level": "char"}, {"src_level": "word"}, "data.src_level"), ({"level": "char"}, {"level": "space"}, "data.level"),
     ({"src_level": "char"}, {"level": "space", "src_level": "char"}, "data.level"),
     ({"level": "bpe", "vocab_size": 320}, {"vocab_size": 16000}, "data.vocab_size"),
     ({"level": "unigram"}, {"sp_shared": False}, "data.sp_shared")],
)
def test_fine_tuning_refuses_another_effective_level_naming_the_key_that_set_it(model: dict, ours: dict, key: str) -> None:
    from seq2seq.errors import ConfigError
    from seq2seq.training.finetune import inherit_config

    with pytest.raises(ConfigError, match=rf"^{key}: .* contradicts the model in train.init_from \(m.pt: "):
        inherit_config(data_config(**ours), data_config(**model), "m.pt")


def test_preprocess_then_fine_tuning_trains_on_shards_of_the_models_vocabularies(source_run: Path, tmp_path: Path) -> None:
    """`seq2seq preprocess` with train.init_from encodes the new data with the model's vocabularies and tokenizers,
    as `train` takes them, so the fine-tuning run trains on its shards (issue 28 §5.1)."""
    from seq2seq.runfiles import RunFiles
    from seq2seq.training.preprocess import preprocess

    raw = new_data(tmp_path, max_steps=1, valid_every=1, init_from=str(source_run))
    preprocess(config_from_dict(raw), tmp_path / "ft", workers=1, quiet=True)
    assert (tmp_path / "ft" / "src_vocab.json").read_bytes() == (source_run / "src_vocab.json").read_bytes()
    assert train_quietly(raw, tmp_path / "ft").progress.step == 1
    assert f"training data: {RunFiles(tmp_path / 'ft').shards}" in (tmp_path / "ft" / "train.log").read_text(encoding="utf-8")


def test_preprocess_encodes_with_the_sentencepiece_model_in_init_from(bpe_run: Path, tmp_path: Path) -> None:
    """A subword model's sentencepiece model exists: preprocess tokenizes with it, as training on the text would."""
    from seq2seq.data.encoding import Encoder, encode_pairs
    from seq2seq.data.corpus import load_corpus
    from seq2seq.data.shards import open_shards
    from seq2seq.training.preprocess import preprocess

    cfg = config_from_dict(new_data(tmp_path, init_from=str(bpe_run)))
    preprocess(cfg, tmp_path / "ft", workers=2, quiet=True, chunk_size=40)
    source = Checkpoint.read(bpe_run / "best.pt")
    inherited = config_from_dict(torch_free_yaml(tmp_path / "ft" / "config.yaml"))
    assert inherited.data.levels == ("bpe", "bpe") and inherited.data.train == cfg.data.train
    shards = open_shards(tmp_path / "ft", inherited)
    assert shards is not None
    dataset = shards.dataset()
    src, tgt = Encoder(source.src_tokenizer, source.src_vocab), Encoder(source.tgt_tokenizer, source.tgt_vocab)
    assert [dataset[i] for i in range(len(dataset))] == encode_pairs(load_corpus(cfg.data, "train"), src, tgt, cfg.data.max_len)


def torch_free_yaml(path: Path) -> dict:
    import yaml

    return yaml.safe_load(path.read_text(encoding="utf-8"))


@pytest.mark.parametrize("metric, named", [("cer", "val CER 12.50"), ("exact_match", "val exact match 40.00"), ("bleu", "val BLEU 3.25")])
def test_the_fine_tuning_log_line_names_the_models_metric(metric: str, named: str) -> None:
    """A G2P model chosen by CER is described by its CER, not by the BLEU it was never chosen for."""
    from types import SimpleNamespace

    from seq2seq.data.vocab import SPECIALS
    from seq2seq.training.finetune import describe

    source = SimpleNamespace(
        path=Path("m.pt"), step=7, config=config_from_dict({"train": {"metric": metric}}),
        scores={"val_bleu": 3.25, "val_chrf": 20.0, "val_cer": 12.5, "val_exact_match": 40.0},
        src_vocab=Vocab(list(SPECIALS)), tgt_vocab=Vocab(list(SPECIALS)),
    )
    line = describe(source)  # type: ignore[arg-type]
    assert line.startswith(f"fine-tuning m.pt (trained 7 steps, {named}): its weights")
    assert ("BLEU" in line) == (metric == "bleu")
