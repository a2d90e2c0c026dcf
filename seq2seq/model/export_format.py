"""The layout of an export directory (`seq2seq export`), written by `model/export.py`, read by `runtime/`.

No torch here: the runtime that reads an export must run where torch is not installed.

    export.json          one JSON object: format, format_version, opset, quantize, the graphs (file and sha256),
                         the config (decode defaults, data languages, the model's architecture), the vocabularies,
                         the tokenizer of each side (level, lowercase, sentencepiece file and sha256), a model
                         description (parameters, step, the checkpoint it came from)
    encoder.onnx         src (B, S) int64, src_lengths (B,) int64 -> states (B, S, D), keys (B, S, A), hidden (L, B, H)
    decoder.onnx         one decoding step: prev (B,) int64, states, keys, src_pad_mask (B, S) bool, hidden ->
                         log_probs (B, V), hidden_out (L, B, H), attention (B, S)
    src.spm.model, tgt.spm.model   the sentencepiece models, for the subword levels only

Each graph also carries metadata_props (`GRAPH_METADATA`) naming the vocabulary sizes and a digest of the
vocabularies it was exported with, so a JSON that does not belong to the graphs is refused. The JSON is written
last and holds a sha256 of every other file: a graph changed after export, or a directory torn between two
exports, is refused instead of decoding with other numbers.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Sequence

from seq2seq.errors import CheckpointError

FORMAT = "seq2seq-export"
FORMAT_VERSION = 1
OPSET = 17  # ONNX opset of both graphs (GRU with linear_before_reset, as nn.GRU computes it)
MANIFEST = "export.json"
ENCODER_FILE = "encoder.onnx"
DECODER_FILE = "decoder.onnx"
SPM_FILES = {"src": "src.spm.model", "tgt": "tgt.spm.model"}
EXPORT_FILES = (MANIFEST, ENCODER_FILE, DECODER_FILE, *SPM_FILES.values())

ENCODER_INPUTS = ("src", "src_lengths")
ENCODER_OUTPUTS = ("states", "keys", "hidden")
DECODER_INPUTS = ("prev", "states", "keys", "src_pad_mask", "hidden")
DECODER_OUTPUTS = ("log_probs", "hidden_out", "attention")
GRAPH_METADATA = ("seq2seq_format", "src_vocab_size", "tgt_vocab_size", "vocab_sha256")
REQUIRED_KEYS = ("format", "format_version", "opset", "quantize", "graphs", "config", "src_vocab", "tgt_vocab", "tokenizer")


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def vocab_digest(src_vocab: Sequence[str], tgt_vocab: Sequence[str]) -> str:
    """A digest of both token lists, stored in each graph's metadata and checked against the JSON's lists."""
    return sha256_bytes(json.dumps([list(src_vocab), list(tgt_vocab)], ensure_ascii=False).encode("utf-8"))


def graph_metadata(src_vocab: Sequence[str], tgt_vocab: Sequence[str]) -> dict[str, str]:
    """The metadata_props every graph of an export carries (ONNX metadata values are strings)."""
    return {
        "seq2seq_format": f"{FORMAT}/{FORMAT_VERSION}",
        "src_vocab_size": str(len(src_vocab)),
        "tgt_vocab_size": str(len(tgt_vocab)),
        "vocab_sha256": vocab_digest(src_vocab, tgt_vocab),
    }


def is_export(path: str | Path | None) -> bool:
    """Whether `path` is a directory holding an export's JSON (a `--model` that the runtime decodes)."""
    return path is not None and Path(path).is_dir() and (Path(path) / MANIFEST).is_file()


def read_manifest(directory: str | Path) -> dict[str, Any]:
    """The checked export.json of `directory`: format and version known, required keys present, every file it
    names present with the sha256 it recorded. Every problem is one CheckpointError naming the directory."""
    directory = Path(directory)
    path = directory / MANIFEST
    if not directory.is_dir():
        raise CheckpointError(f"{directory}: no such export directory")
    if not path.is_file():
        raise CheckpointError(f"{directory}: not an export (no {MANIFEST}); make one with `seq2seq export`")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path}: not an export's JSON ({e})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a seq2seq export")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{path}: export format version {manifest.get('format_version')!r}, this seq2seq reads version {FORMAT_VERSION}")
    missing = [k for k in REQUIRED_KEYS if k not in manifest]
    if missing:
        raise CheckpointError(f"{path}: export lacks {', '.join(missing)}")
    for name, sha in listed_files(manifest, path):
        file = directory / name
        if not file.is_file():
            raise CheckpointError(f"{directory}: export lacks {name}")
        if sha256_file(file) != sha:
            raise CheckpointError(
                f"{file}: does not match the sha256 in {MANIFEST} (changed after export, or torn between two exports): export again"
            )
    return manifest


def listed_files(manifest: dict[str, Any], where: Path) -> list[tuple[str, str]]:
    """(file name, sha256) of every file the export's JSON names: the graphs and the sentencepiece models."""
    try:
        files = [(g["file"], g["sha256"]) for g in (manifest["graphs"]["encoder"], manifest["graphs"]["decoder"])]
        files += [(t["sp_model"], t["sp_sha256"]) for t in manifest["tokenizer"].values() if t.get("sp_model") is not None]
    except (KeyError, TypeError, AttributeError) as e:
        raise CheckpointError(f"{where}: malformed export ({type(e).__name__}: {e})") from None
    for name, sha in files:
        if not isinstance(name, str) or not isinstance(sha, str) or name not in EXPORT_FILES or name == MANIFEST:
            raise CheckpointError(f"{where}: malformed export (file {name!r})")
    return files
