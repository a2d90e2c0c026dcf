"""Config: typed, checked, overridable; errors name the dotted key."""

from __future__ import annotations

import dataclasses

import pytest

from seq2seq.config import Config, ConfigError, config_from_dict, config_to_dict, dump_config, load_config, read_yaml


def _write(tmp_path, text):
    path = tmp_path / "c.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_live_in_the_dataclasses_and_round_trip(tmp_path):
    cfg = load_config(None)
    assert cfg == Config()
    path = _write(tmp_path, dump_config(cfg))
    assert config_from_dict(read_yaml(path)) == cfg
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.train.lr = 1.0  # type: ignore[misc]


def test_yaml_and_overrides(tmp_path):
    path = _write(tmp_path, "train:\n  lr: 0.01\nmodel:\n  attention: luong\n")
    cfg = load_config(path, ["train.lr=3e-4", "model.tie_embeddings=true", "train.max_tokens=null"])
    assert cfg.train.lr == 3e-4 and cfg.model.attention == "luong" and cfg.model.tie_embeddings is True
    assert cfg.train.max_tokens is None
    assert load_config(path, ["train.epochs=2"]).train.epochs == 2


@pytest.mark.parametrize(
    "text, overrides, message",
    [
        ("model:\n  hiden_size: 3\n", [], "model.hiden_size: unknown key (did you mean 'hidden_size'?)"),
        ("modle:\n  hidden_size: 3\n", [], "modle: unknown section (did you mean 'model'?)"),
        ("train:\n  lr: [1, 2]\n", [], "train.lr: expected a number, got list"),
        ("train:\n  epochs: 1.5\n", [], "train.epochs: expected an integer"),
        ("model:\n  hidden_size: -4\n", [], "model.hidden_size: must be >= 1"),
        ("model:\n  attention: dot\n", [], "model.attention: 'dot' is not one of bahdanau, luong"),
        ("model:\n  bidirectional: 'yes'\n", [], "model.bidirectional: expected true or false"),
        ("train:\n  lr: 0\n", [], "train.lr: must be > 0.0"),
        ("", ["train.lr"], "expected section.key=value"),
        ("", ["train.lrr=1"], "train.lrr: unknown key (did you mean 'lr'?)"),
        ("", ["lr=1"], "the key must be section.key"),
        ("- a\n- b\n", [], "top level: expected a mapping"),
        ("train: 3\n", [], "train: expected a mapping"),
    ],
)
def test_bad_configs_name_the_dotted_key(tmp_path, text, overrides, message):
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as e:
        load_config(path, overrides)
    assert message in str(e.value)


def test_malformed_yaml_names_file_and_line(tmp_path):
    path = _write(tmp_path, "train:\n  lr: 1\n  epochs: [1, 2\n")
    with pytest.raises(ConfigError, match=r"c\.yaml:\d+: malformed YAML"):
        load_config(path)


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")


def test_config_dict_is_plain():
    d = config_to_dict(Config())
    assert set(d) == {"data", "model", "train", "decode"}
    assert all(isinstance(v, (str, int, float, bool, type(None))) for section in d.values() for v in section.values())


@pytest.mark.parametrize(
    "override, suggestion",
    [
        ("train.learning_rate=1e-3", "train.learning_rate: unknown key (did you mean 'lr'?)"),
        ("model.hidden=64", "model.hidden: unknown key (did you mean 'hidden_size'?)"),
        ("data.batch_size=32", "data.batch_size: unknown key (did you mean 'train.batch_size'?)"),
        ("train.beam=5", "train.beam: unknown key (did you mean 'decode.beam_size'?)"),
    ],
)
def test_unknown_keys_are_matched_by_meaning_where_a_common_alias_exists(override, suggestion) -> None:
    with pytest.raises(ConfigError) as e:
        load_config(None, [override])
    assert str(e.value) == f"--set {suggestion}"


def test_sides_name_languages_for_parallel_files_and_levels_for_tsv() -> None:
    """info, the serve banner and the prompt said "src -> tgt" for a TSV lexicon (issue 32): its files carry no
    language suffix, so they name the levels instead."""
    assert config_from_dict({"data": {"src_lang": "en", "tgt_lang": "de"}}).data.sides == "en -> de"
    tsv = config_from_dict({"data": {"format": "tsv", "src_level": "char", "tgt_level": "space"}})
    assert tsv.data.sides == "char -> space"
