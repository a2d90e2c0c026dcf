"""The two ONNX graphs of an export as onnxruntime sessions, checked against the export's JSON.

Spinning: onnxruntime's idle worker threads spin, which slows torch ops running beside them (onnxruntime
#13808), so spinning is turned off when torch is loaded in this process; alone, the runtime keeps the default.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np

from seq2seq.errors import CheckpointError, ConfigError, install_hint
from seq2seq.model.export_format import (
    DECODER_INPUTS, DECODER_OUTPUTS, ENCODER_INPUTS, ENCODER_OUTPUTS, GRAPH_METADATA, MANIFEST, graph_metadata,
)
from seq2seq.runtime.search import Encoded


def _ort():  # noqa: ANN202 (the onnxruntime module)
    try:
        import onnxruntime
    except ImportError:
        raise ConfigError(f"decoding an export needs onnxruntime: {install_hint('runtime')}") from None
    return onnxruntime


def session(path: Path, threads: int = 0) -> Any:
    """An onnxruntime CPU session of the graph at `path`; `threads` 0: onnxruntime's choice (one per core)."""
    ort = _ort()
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.log_severity_level = 3  # errors only: its warnings about unused initializers are not the user's
    if "torch" in sys.modules:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as e:  # noqa: BLE001 (onnxruntime raises its own types: InvalidProtobuf, Fail, ...)
        raise CheckpointError(f"{path}: not a loadable ONNX graph ({str(e).strip().splitlines()[0][:200]})") from None


def _check(sess: Any, path: Path, inputs: tuple[str, ...], outputs: tuple[str, ...], expected: dict[str, str]) -> None:
    got_in, got_out = tuple(i.name for i in sess.get_inputs()), tuple(o.name for o in sess.get_outputs())
    if got_in != inputs or got_out != outputs:
        raise CheckpointError(f"{path}: graph takes {got_in} -> {got_out}, expected {inputs} -> {outputs}")
    meta = sess.get_modelmeta().custom_metadata_map
    wrong = [key for key in GRAPH_METADATA if meta.get(key) != expected[key]]
    if wrong:
        raise CheckpointError(
            f"{path.parent / MANIFEST} does not match the graphs ({', '.join(wrong)} differ: "
            f"vocabularies of {expected['src_vocab_size']} and {expected['tgt_vocab_size']} tokens in the JSON, "
            f"{meta.get('src_vocab_size')} and {meta.get('tgt_vocab_size')} in {path.name}): export again"
        )


class OnnxGraphs:
    """encode and step of `runtime.search.Graphs` on the export's two sessions."""

    def __init__(self, directory: Path, manifest: dict[str, Any], threads: int = 0):
        expected = graph_metadata(manifest["src_vocab"], manifest["tgt_vocab"])
        enc_path = directory / manifest["graphs"]["encoder"]["file"]
        dec_path = directory / manifest["graphs"]["decoder"]["file"]
        self.encoder = session(enc_path, threads)
        _check(self.encoder, enc_path, ENCODER_INPUTS, ENCODER_OUTPUTS, expected)
        self.decoder = session(dec_path, threads)
        _check(self.decoder, dec_path, DECODER_INPUTS, DECODER_OUTPUTS, expected)
        self.vocab_size = len(manifest["tgt_vocab"])

    def encode(self, src: np.ndarray, src_lengths: np.ndarray) -> Encoded:
        """src (B, S), src_lengths (B,) int64 -> Encoded; the pad mask from the lengths, True on padding."""
        states, keys, hidden = self.encoder.run(None, {"src": src, "src_lengths": src_lengths})
        mask = np.arange(src.shape[1])[None, :] >= src_lengths[:, None]  # (B, S)
        assert mask.shape == src.shape
        return Encoded(states, keys, mask, hidden)

    def step(self, prev: np.ndarray, enc: Encoded, hidden: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """prev (B,) -> log_probs (B, V), hidden (L, B, H), attention (B, S)."""
        feed = {"prev": prev, "states": enc.states, "keys": enc.keys, "src_pad_mask": enc.src_pad_mask, "hidden": hidden}
        log_probs, hidden, attention = self.decoder.run(None, feed)
        return log_probs, hidden, attention
