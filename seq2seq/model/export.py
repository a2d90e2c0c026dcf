"""`seq2seq export`: a checkpoint -> an encoder graph and a one-step decoder graph in ONNX, and one JSON file.

The graphs are traced from the reference model (`Seq2Seq.encode`, `Seq2Seq.decode_step`) with torch's TorchScript
exporter (`dynamo=False`): it writes nn.GRU as ONNX GRU with `linear_before_reset=1`, as nn.GRU computes it (the
dynamo exporter leaves it out and gets other numbers, onnxscript #2852), and the packed encoder as GRU with
`sequence_lens`. Batch and source length are dynamic axes; the decoder is one step, so the number of steps is
the runtime's loop, unbounded by the trace. Right after tracing, both graphs are run on a padded batch longer
than the trace and compared with torch (`check_graphs`): an exporter that got the numbers wrong fails here.

`--quantize int8`: onnxruntime's dynamic quantization of the graphs' matrix products (MatMul, Gemm: int8
weights, activations quantized per batch on the fly); the GRUs stay in fp32.

The layout of the directory is `model/export_format.py`'s; the runtime that reads it is `seq2seq.runtime`.
Needs the `export` extra (onnx, onnxruntime) besides torch.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import os
import shutil
import sys
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from torch import nn

from seq2seq import __version__
from seq2seq.config import config_to_dict
from seq2seq.errors import CheckpointError, ConfigError, install_hint
from seq2seq.files import atomic_write_bytes, atomic_write_text, dump_json
from seq2seq.model.checkpoint import Checkpoint
from seq2seq.model.export_format import (
    DECODER_FILE, DECODER_INPUTS, DECODER_OUTPUTS, ENCODER_FILE, ENCODER_INPUTS, ENCODER_OUTPUTS, EXPORT_FILES, FORMAT,
    FORMAT_VERSION, MANIFEST, OPSET, SPM_FILES, graph_metadata, is_export, sha256_bytes,
)
from seq2seq.model.network import EncoderOutput, Seq2Seq, count_parameters, make_src_pad_mask

QUANTIZE_CHOICES = ("none", "int8")
CHECK_TOLERANCE = 1e-4  # fp32 graphs against torch, largest absolute difference


class _EncoderGraph(nn.Module):
    """What the encoder graph computes: Seq2Seq.encode without the mask (the runtime makes it from the lengths)."""

    def __init__(self, model: Seq2Seq):
        super().__init__()
        self.model = model

    def forward(self, src: torch.Tensor, src_lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """src (B, S), src_lengths (B,) -> states (B, S, D), keys (B, S, A), hidden (L, B, H)."""
        enc = self.model.encode(src, src_lengths)
        return enc.states, enc.keys, enc.hidden


class _DecoderGraph(nn.Module):
    """What the decoder graph computes: one Seq2Seq.decode_step, log-softmaxed as the searches do."""

    def __init__(self, model: Seq2Seq):
        super().__init__()
        self.model = model

    def forward(
        self, prev: torch.Tensor, states: torch.Tensor, keys: torch.Tensor, src_pad_mask: torch.Tensor, hidden: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """prev (B,), states (B, S, D), keys (B, S, A), src_pad_mask (B, S), hidden (L, B, H) ->
        log_probs (B, V), hidden (L, B, H), attention (B, S)."""
        enc = EncoderOutput(states, keys, src_pad_mask, hidden)
        logits, hidden, weights = self.model.decode_step(prev, enc, hidden)
        return torch.log_softmax(logits.float(), dim=-1), hidden, weights.float()


def _trace_inputs(model: Seq2Seq) -> tuple[torch.Tensor, torch.Tensor]:
    """A padded batch of two sources (lengths 5 and 3, from the non-special ids) to trace with."""
    vocab = model.encoder.embed.num_embeddings
    src = torch.tensor([[4, 5, 6, 7, 3], [5, 4, 3, 0, 0]]) % vocab  # (2, 5)
    return src, torch.tensor([5, 3])


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Silence the C++ side's stderr (shape-inference notes on prim::PackPadded, which the check below covers)."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _to_onnx(module: nn.Module, args: tuple, names: tuple[tuple[str, ...], tuple[str, ...]], axes: dict) -> bytes:
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad(), _quiet_stderr():
        warnings.simplefilter("ignore")  # TracerWarnings on shape asserts, the exporter's own deprecation notice
        torch.onnx.export(
            module, args, buffer, dynamo=False, opset_version=OPSET, input_names=list(names[0]),
            output_names=list(names[1]), dynamic_axes=axes, do_constant_folding=True,
        )
    return buffer.getvalue()


def trace_graphs(model: Seq2Seq) -> tuple[bytes, bytes]:
    """The encoder and decoder graphs of `model` (eval mode, fp32, CPU), as ONNX bytes."""
    model = model.float().eval().cpu()
    src, src_lengths = _trace_inputs(model)
    batch, source = {0: "batch"}, {0: "batch", 1: "source"}
    encoder = _to_onnx(
        _EncoderGraph(model).eval(), (src, src_lengths), (ENCODER_INPUTS, ENCODER_OUTPUTS),
        {"src": source, "src_lengths": batch, "states": source, "keys": source, "hidden": {1: "batch"}},
    )
    with torch.no_grad():
        enc = model.encode(src, src_lengths)
    prev = torch.tensor([2, 2])
    decoder = _to_onnx(
        _DecoderGraph(model).eval(), (prev, enc.states, enc.keys, enc.src_pad_mask, enc.hidden), (DECODER_INPUTS, DECODER_OUTPUTS),
        {"prev": batch, "states": source, "keys": source, "src_pad_mask": source, "hidden": {1: "batch"},
         "log_probs": batch, "hidden_out": {1: "batch"}, "attention": source},
    )
    return encoder, decoder


def _onnx():  # noqa: ANN202 (the onnx module, imported lazily)
    try:
        import onnx
        import onnxruntime  # noqa: F401 (quantization and the check)
    except ImportError as e:
        raise ConfigError(f"seq2seq export needs the export extra ({e.name} is not installed): {install_hint('export')}") from None
    return onnx


def with_metadata(graph: bytes, metadata: dict[str, str], doc: str) -> bytes:
    """`graph` with `metadata` as its metadata_props and `doc` as its doc_string, checked by onnx's checker."""
    onnx = _onnx()
    proto = onnx.load_from_string(graph)
    del proto.metadata_props[:]
    for key, value in metadata.items():
        proto.metadata_props.add(key=key, value=value)
    proto.doc_string = doc
    proto.producer_name, proto.producer_version = "seq2seq", __version__
    onnx.checker.check_model(proto)
    return proto.SerializeToString()


def quantize_int8(graph: bytes) -> bytes:
    """onnxruntime's dynamic quantization of the graph's MatMul and Gemm weights (int8; activations per batch)."""
    _onnx()
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with tempfile.TemporaryDirectory(prefix="seq2seq-quantize-") as tmp:
        source, target = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        source.write_bytes(graph)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            quantize_dynamic(source, target, op_types_to_quantize=["MatMul", "Gemm"], weight_type=QuantType.QInt8)
        return target.read_bytes()


def _session(graph: bytes):  # noqa: ANN202 (an onnxruntime InferenceSession)
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")  # torch lives in this process
    return ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])


def check_graphs(model: Seq2Seq, encoder: bytes, decoder: bytes, tolerance: float = CHECK_TOLERANCE) -> float:
    """Run both graphs on a padded batch longer than the trace (and three decoding steps) and compare with torch.

    Returns the largest absolute difference; raises CheckpointError above `tolerance` (the exporter got it wrong).
    """
    vocab = model.encoder.embed.num_embeddings
    src = (torch.arange(4, 4 + 3 * 9).view(3, 9) % max(vocab - 4, 1) + 4) % vocab  # (3, 9)
    src_lengths = torch.tensor([9, 4, 1])
    src[:, -1:] = 3
    src = src.masked_fill(make_src_pad_mask(src_lengths, 9), 0)
    enc_s, dec_s = _session(encoder), _session(decoder)
    states, keys, hidden = enc_s.run(None, {"src": src.numpy(), "src_lengths": src_lengths.numpy()})
    mask = make_src_pad_mask(src_lengths, 9)
    with torch.no_grad():
        enc = model.encode(src, src_lengths)
        worst = max(float(np.abs(a - b.numpy()).max()) for a, b in zip((states, keys, hidden), (enc.states, enc.keys, enc.hidden)))
        prev, t_hidden = torch.full((3,), 2), enc.hidden
        for _ in range(3):
            logits, t_hidden, weights = model.decode_step(prev, enc, t_hidden)
            log_probs, hidden, attention = dec_s.run(
                None, {"prev": prev.numpy(), "states": states, "keys": keys, "src_pad_mask": mask.numpy(), "hidden": hidden}
            )
            pairs = ((log_probs, torch.log_softmax(logits.float(), -1)), (hidden, t_hidden), (attention, weights))
            worst = max(worst, *(float(np.abs(a - b.numpy()).max()) for a, b in pairs))
            prev = logits.argmax(-1)
    if not worst <= tolerance:
        raise CheckpointError(f"the exported graphs differ from torch by {worst:.3g} (more than {tolerance}): not written")
    return worst


@dataclass(frozen=True)
class ExportResult:
    output: Path
    files: list[str]
    quantize: str
    max_difference: float  # of the fp32 graphs against torch (`check_graphs`)


def check_output(output: Path, overwrite: bool) -> None:
    """Refuse an output that is a file, or a non-empty directory that holds no export, unless `overwrite`."""
    if output.exists() and not output.is_dir():
        raise ConfigError(f"--output {output}: is a file, expected a directory")
    if not output.exists():
        ancestor = next(a for a in output.absolute().parents if a.exists())  # the directories below it are made
        if not ancestor.is_dir():
            raise ConfigError(f"--output {output}: {ancestor} is a file, expected a directory")
        return
    if any(output.iterdir()) and not is_export(output) and not overwrite:
        raise ConfigError(f"--output {output}: the directory holds files that are not an export; choose another or add --overwrite")


def export_checkpoint(ckpt: Checkpoint, output: Path, quantize: str = "none", overwrite: bool = False) -> ExportResult:
    """Write the export of `ckpt` into `output` (see `check_output`); `quantize` none or int8."""
    if quantize not in QUANTIZE_CHOICES:
        raise ConfigError(f"--quantize: {quantize!r} is not one of {', '.join(QUANTIZE_CHOICES)}")
    output = Path(output)
    check_output(output, overwrite)
    _onnx()
    model = ckpt.build_model()
    encoder, decoder = trace_graphs(model)
    worst = check_graphs(model, encoder, decoder)
    src_vocab, tgt_vocab = ckpt.src_vocab.to_list(), ckpt.tgt_vocab.to_list()
    meta = graph_metadata(src_vocab, tgt_vocab)
    files = {
        ENCODER_FILE: with_metadata(encoder, meta, "seq2seq encoder: " + ", ".join(ENCODER_INPUTS) + " -> " + ", ".join(ENCODER_OUTPUTS)),
        DECODER_FILE: with_metadata(decoder, meta, "seq2seq decoder step: " + ", ".join(DECODER_INPUTS) + " -> " + ", ".join(DECODER_OUTPUTS)),
    }
    if quantize == "int8":
        files = {name: quantize_int8(graph) for name, graph in files.items()}
    tokenizers = {}
    for side, tok in (("src", ckpt.src_tokenizer), ("tgt", ckpt.tgt_tokenizer)):
        entry: dict[str, Any] = {"level": tok.level, "lowercase": tok.lowercase, "sp_model": None}
        if tok.sp_model is not None:
            files[SPM_FILES[side]] = tok.sp_model
            entry.update(sp_model=SPM_FILES[side], sp_sha256=sha256_bytes(tok.sp_model))
        tokenizers[side] = entry
    manifest = _manifest(ckpt, model, files, tokenizers, quantize)
    _write_directory(output, files, dump_json(manifest) + "\n")
    return ExportResult(output, sorted([MANIFEST, *files]), quantize, worst)


def _manifest(ckpt: Checkpoint, model: Seq2Seq, files: dict[str, bytes], tokenizers: dict, quantize: str) -> dict[str, Any]:
    cfg = dataclasses.replace(ckpt.config, decode=dataclasses.replace(ckpt.config.decode, quantize="none"))
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "opset": OPSET,
        "quantize": quantize,
        "graphs": {
            "encoder": {"file": ENCODER_FILE, "sha256": sha256_bytes(files[ENCODER_FILE]), "inputs": list(ENCODER_INPUTS), "outputs": list(ENCODER_OUTPUTS)},
            "decoder": {"file": DECODER_FILE, "sha256": sha256_bytes(files[DECODER_FILE]), "inputs": list(DECODER_INPUTS), "outputs": list(DECODER_OUTPUTS)},
            "dynamic_axes": ["batch", "source"],
        },
        "config": config_to_dict(cfg),
        "src_vocab": ckpt.src_vocab.to_list(),
        "tgt_vocab": ckpt.tgt_vocab.to_list(),
        "tokenizer": tokenizers,
        "model": {
            "parameters": count_parameters(model),
            "hidden_size": ckpt.config.model.hidden_size,
            "dec_layers": ckpt.config.model.dec_layers,
            "encoder_size": model.encoder.output_size,
            "step": ckpt.step,
            "scores": ckpt.scores,  # the validation record of best.pt (None for last.pt): info and the serve page say it
            "checkpoint": str(ckpt.path) if ckpt.path is not None else None,
            "seq2seq_version": __version__,
            "torch_version": torch.__version__,
        },
    }


def _write_directory(output: Path, files: dict[str, bytes], manifest: str) -> None:
    """A new directory appears whole (written beside it, then renamed); in an existing one each file is replaced
    atomically, the JSON last, and the files of an earlier export that this one lacks are removed."""
    if not output.exists():
        output.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=output.parent, prefix=f".{output.name}.", suffix=".tmp"))
        try:
            for name, data in files.items():
                atomic_write_bytes(tmp / name, data)  # fsynced, as checkpoints are
            atomic_write_text(tmp / MANIFEST, manifest)
            os.chmod(tmp, 0o777 & ~_umask())
            os.rename(tmp, output)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return
    for name, data in files.items():
        atomic_write_bytes(output / name, data)
    atomic_write_text(output / MANIFEST, manifest)
    for stale in set(EXPORT_FILES) - set(files) - {MANIFEST}:
        (output / stale).unlink(missing_ok=True)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def manifest_summary(output: Path) -> str:
    """One line about the export in `output`, for the command's report."""
    manifest = json.loads((output / MANIFEST).read_text(encoding="utf-8"))
    size = sum((output / name).stat().st_size for name in EXPORT_FILES if (output / name).exists())
    weights = "int8 weights" if manifest["quantize"] == "int8" else "fp32 weights"
    return f"{output}: ONNX opset {manifest['opset']}, {weights}, {size / 1e6:.1f} MB"
