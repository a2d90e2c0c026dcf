"""An export's two ONNX graphs as a search Backend (decode/backend), on onnxruntime and numpy, and an export opened
for decoding: export.json + the graphs -> a Loaded model. No torch here: an export translates without it.

The graphs are checked against the export's JSON when they load. Spinning: onnxruntime's idle worker threads spin,
which slows torch ops running beside them (onnxruntime #13808), so spinning is turned off when torch is loaded in
this process; alone, the runtime keeps the default.
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import Any, NamedTuple, Sequence

import numpy as np

from seq2seq.config import config_from_dict
from seq2seq.data.encoding import Encoder, Example
from seq2seq.data.tokenizer import Tokenizer
from seq2seq.data.vocab import Vocab
from seq2seq.decode.backend import Loaded, Step, best_of, recorded_best
from seq2seq.errors import CheckpointError, ConfigError, DataError, install_hint
from seq2seq.model.export_format import (
    DECODER_INPUTS, DECODER_OUTPUTS, ENCODER_INPUTS, ENCODER_OUTPUTS, GRAPH_METADATA, MANIFEST, graph_metadata, read_manifest,
)


class Encoded(NamedTuple):
    """The encoder's rows as the decoder graph reads them."""

    states: np.ndarray  # (B, S, D)
    keys: np.ndarray  # (B, S, A)
    src_pad_mask: np.ndarray  # (B, S) True on padding

    def select(self, index: np.ndarray) -> "Encoded":
        return Encoded(self.states[index], self.keys[index], self.src_pad_mask[index])


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
    """The export's encoder and decoder sessions as a Backend. memory: Encoded; state: the hidden state (L, R, H)."""

    def __init__(self, directory: Path, manifest: dict[str, Any], threads: int = 0):
        expected = graph_metadata(manifest["src_vocab"], manifest["tgt_vocab"])
        enc_path = directory / manifest["graphs"]["encoder"]["file"]
        dec_path = directory / manifest["graphs"]["decoder"]["file"]
        self.encoder = session(enc_path, threads)
        _check(self.encoder, enc_path, ENCODER_INPUTS, ENCODER_OUTPUTS, expected)
        self.decoder = session(dec_path, threads)
        _check(self.decoder, dec_path, DECODER_INPUTS, DECODER_OUTPUTS, expected)
        self.vocab_size = len(manifest["tgt_vocab"])

    def decoding(self) -> contextlib.nullcontext[None]:
        return contextlib.nullcontext()  # onnxruntime keeps no state between calls

    def encode(self, src: np.ndarray, src_lengths: np.ndarray) -> tuple[Encoded, np.ndarray]:
        """src (B, S), src_lengths (B,) int64 -> (Encoded, hidden (L, B, H)); the pad mask from the lengths, True on padding."""
        states, keys, hidden = self.encoder.run(None, {"src": src, "src_lengths": src_lengths})
        mask = np.arange(src.shape[1])[None, :] >= src_lengths[:, None]  # (B, S)
        assert mask.shape == src.shape
        return Encoded(states, keys, mask), hidden

    def log_probs(self, prev: np.ndarray, memory: Encoded, state: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        feed = {"prev": prev, "states": memory.states, "keys": memory.keys, "src_pad_mask": memory.src_pad_mask, "hidden": state}
        log_probs, hidden, attention = self.decoder.run(None, feed)  # (R, V), (L, R, H), (R, S)
        return log_probs, attention, hidden

    def step(
        self, prev: np.ndarray, memory: Encoded, state: np.ndarray, c: int, ban_eos: bool, base: np.ndarray | None, width: int
    ) -> Step:
        log_probs, attention, hidden = self.log_probs(prev, memory, state)
        return Step(*best_of(log_probs, c, ban_eos, base, width), attention, hidden)

    def take(self, memory: Encoded, rows: np.ndarray) -> Encoded:
        return memory.select(rows)

    def take_state(self, state: np.ndarray, rows: np.ndarray) -> np.ndarray:
        return state[:, rows]

    def loss(self, examples: Sequence[Example], batch_size: int) -> None:
        return None  # the decoder graph runs one step: there is no teacher-forced pass to score


def _tokenizer(directory: Path, entry: Any) -> Tokenizer:
    sp = entry.get("sp_model")
    return Tokenizer(level=str(entry["level"]), lowercase=bool(entry["lowercase"]), sp_model=None if sp is None else (directory / sp).read_bytes())


def open_export(directory: str | Path, precision: str | None = None, quantize: str | None = None, threads: int = 0) -> Loaded:
    """Read and check the export in `directory`. It decodes in fp32 on the CPU: `precision` None, auto or fp32;
    `quantize` None or the export's own (it was chosen at export time); `threads` 0: onnxruntime's choice."""
    directory = Path(directory)
    manifest = read_manifest(directory)
    if precision not in (None, "auto", "fp32"):
        raise ConfigError(f"--precision {precision}: {directory} is an export, which decodes in fp32 (leave --precision out)")
    if quantize is not None and quantize != manifest["quantize"]:
        raise ConfigError(
            f"--quantize {quantize}: {directory} is an export with quantize {manifest['quantize']} "
            f"(choose it at export time: seq2seq export --quantize {quantize})"
        )
    try:
        cfg = config_from_dict(manifest["config"])
        src = Encoder(_tokenizer(directory, manifest["tokenizer"]["src"]), Vocab(manifest["src_vocab"]))
        tgt = Encoder(_tokenizer(directory, manifest["tokenizer"]["tgt"]), Vocab(manifest["tgt_vocab"]))
    except (ConfigError, DataError, KeyError, TypeError, ValueError, AttributeError) as e:
        raise CheckpointError(f"{directory / MANIFEST}: inconsistent export: {e}") from None
    graphs = OnnxGraphs(directory, manifest, threads)
    about = manifest.get("model", {})
    step = about.get("step")
    return Loaded(graphs, cfg, src, tgt, directory, "export", "cpu", "fp32", str(manifest["quantize"]),
                  step if isinstance(step, int) else None, recorded_best(about.get("scores"), cfg.train.metric))
