"""What a model is, from the model alone: a checkpoint's or an export's architecture, size, vocabularies, training,
best score and config; an ensemble's models, each."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from seq2seq.data.tokenizer import Tokenizer
from seq2seq.model.checkpoint import Checkpoint
from seq2seq.config import Config, config_from_dict, config_to_dict
from seq2seq.files import finite_or_null
from seq2seq.metric import label as metric_label
from seq2seq.device import choose_decoding_precision, resolve_device
from seq2seq.model.network import count_parameters




def architecture(cfg: Config) -> str:
    """One line, e.g. `GRU encoder 1x bi 128 -> luong attention -> GRU decoder 1x 128; embeddings 64`."""
    m = cfg.model
    enc = f"GRU encoder {m.enc_layers}x {'bi ' if m.bidirectional else ''}{m.hidden_size}"
    dec = f"GRU decoder {m.dec_layers}x {m.hidden_size}"
    tied = ", tied output" if m.tie_embeddings else ""
    return f"{enc} -> {m.attention} attention -> {dec}; embeddings {m.emb_size}{tied}; dropout {m.dropout}"


def describe(path: Path) -> dict[str, Any]:
    """A JSON-ready summary of the checkpoint at `path`: a NaN or infinite number in it (the val loss of a
    diverged run) is None, so that `info --json` stays JSON."""
    ckpt = Checkpoint.read(path)
    cfg = ckpt.config
    progress = ckpt.training.get("progress") if isinstance(ckpt.training.get("progress"), dict) else {}
    scores = ckpt.scores
    metric = getattr(cfg.train, "metric", "bleu")  # what best.pt follows (train.metric)
    # last.pt holds no scores: its progress has the run's best (best_score; best_bleu before train.metric)
    run_best = progress.get("best_score", progress.get("best_bleu"))
    best_bleu = scores.get("val_bleu") if scores else (run_best if metric == "bleu" else None)
    best = scores.get(f"val_{metric}") if scores else run_best
    parameters = count_parameters(ckpt.build_model())
    return finite_or_null({
        "path": str(path),
        "kind": "checkpoint",
        "architecture": architecture(cfg),
        "parameters": parameters,
        "src_vocab_size": len(ckpt.src_vocab),
        "tgt_vocab_size": len(ckpt.tgt_vocab),
        "shared_vocab": ckpt.src_vocab == ckpt.tgt_vocab,
        "languages": cfg.data.sides,
        "tokenizer": _tokenizer_summary(ckpt.src_tokenizer),
        "tgt_tokenizer": _tokenizer_summary(ckpt.tgt_tokenizer),
        "step": ckpt.step,
        "epochs_done": progress.get("epoch"),
        "training_seconds": progress.get("elapsed"),
        "precision": _precision_here(cfg, parameters),
        "best_val_bleu": best_bleu if best_bleu is not None and best_bleu >= 0 else None,
        "metric": metric,
        "best_val": best if best is not None and (metric != "bleu" or best >= 0) else None,
        "scores": scores,
        "config": config_to_dict(cfg),
    })


def describe_export(directory: Path) -> dict[str, Any]:
    """The summary `describe` makes of a checkpoint, for an export (`seq2seq export`): from its export.json; what an
    export does not keep (epochs, training time; scores when it was made from a last.pt) is None."""
    from seq2seq.model.export_format import read_manifest

    manifest = read_manifest(directory)
    cfg = config_from_dict(manifest["config"])
    about = manifest.get("model", {})
    scores = about.get("scores") if isinstance(about.get("scores"), dict) else None  # best.pt's validation record (older exports: none)

    def tokenizer(entry: dict[str, Any]) -> dict[str, Any]:
        out = {"level": entry["level"], "lowercase": entry["lowercase"]}
        if entry.get("sp_model") is not None:
            out["sp_model"] = f"{(directory / entry['sp_model']).stat().st_size} bytes"
        return out

    return finite_or_null({
        "path": str(directory),
        "kind": "export",
        "quantize": manifest["quantize"],
        "architecture": architecture(cfg),
        "parameters": about.get("parameters"),
        "src_vocab_size": len(manifest["src_vocab"]),
        "tgt_vocab_size": len(manifest["tgt_vocab"]),
        "shared_vocab": manifest["src_vocab"] == manifest["tgt_vocab"],
        "languages": cfg.data.sides,
        "tokenizer": tokenizer(manifest["tokenizer"]["src"]),
        "tgt_tokenizer": tokenizer(manifest["tokenizer"]["tgt"]),
        "step": about.get("step"),
        "epochs_done": None,
        "training_seconds": None,
        "precision": {"configured": cfg.train.precision, "here": "fp32", "reason": "an export decodes in fp32, on onnxruntime"},
        "best_val_bleu": scores.get("val_bleu") if scores else None,
        "metric": cfg.train.metric,
        "best_val": scores.get(f"val_{cfg.train.metric}") if scores else None,
        "scores": scores,
        "config": config_to_dict(cfg),
    })


def format_models(summaries: list[dict[str, Any]]) -> str:
    """`format_info` of one model; of an ensemble, a line saying so, then each model's."""
    if len(summaries) == 1:
        return format_info(summaries[0])
    head = f"ensemble of {len(summaries)} models: decoded together, by the mean of their probabilities (same vocabularies and tokenizers)"
    return "\n\n".join([head] + [f"model {i}\n{format_info(s)}" for i, s in enumerate(summaries, start=1)])


def _tokenizer_summary(tokenizer: Tokenizer) -> dict[str, Any]:
    """A side's tokenizer settings; the sentencepiece model itself (bytes) is no summary: its size instead."""
    return {k: (f"{v.numel()} bytes" if k == "sp_model" else v) for k, v in tokenizer.to_dict().items()}


def _precision_here(cfg: Config, parameters: int) -> dict[str, str]:
    """The precision the checkpoint's train.precision stands for when it decodes on this machine (what translate and
    eval use; device.choose_decoding_precision), and why."""
    choice = choose_decoding_precision(cfg.train.precision, resolve_device("auto"), parameters)
    return {"configured": cfg.train.precision, "here": choice.precision, "reason": choice.reason}


def _number(value: float | None, digits: int) -> str:
    """A score for the text summary; None (not a finite number: `describe`) as `none`."""
    return "none" if value is None else f"{value:.{digits}f}"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "unknown"
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m {secs:02d}s" if hours else f"{minutes}m {secs:02d}s"


def format_info(info: dict[str, Any]) -> str:
    """The summary as aligned lines for a person, the config last as YAML."""
    scores = info["scores"] or {}
    metric = info.get("metric", "bleu")
    best = info["best_val"]
    best_text = "none yet" if best is None else f"{best:.2f}"
    if scores and "val_chrf" in scores:
        others = [(k, name) for k, name in (("val_bleu", "BLEU"), ("val_chrf", "chrF")) if k != f"val_{metric}"]
        shown = [f"{name} {_number(scores.get(k), 2)}" for k, name in others] + [f"val loss {_number(scores.get('val_loss'), 4)}"]
        best_text += f" ({', '.join(shown)}, at step {scores['step']})"
    src_tok, tgt_tok = (", ".join(f"{k}={v}" for k, v in info[key].items()) for key in ("tokenizer", "tgt_tokenizer"))
    tokenizer = src_tok if src_tok == tgt_tok else f"source {src_tok}; target {tgt_tok}"
    vocab = f"{info['src_vocab_size']} source, {info['tgt_vocab_size']} target" + (" (shared)" if info["shared_vocab"] else "")
    rows = [
        (info.get("kind", "checkpoint"), info["path"] + (f" (quantize {info['quantize']})" if info.get("quantize") == "int8" else "")),
        ("languages", info["languages"]),
        ("architecture", info["architecture"]),
        ("parameters", "unknown" if info["parameters"] is None else f"{info['parameters']:,}"),
        ("vocabulary", vocab),
        ("tokenizer", tokenizer),
        ("trained", f"{info['step']} steps, {plural(info['epochs_done'], 'full epoch')}, {_duration(info['training_seconds'])}"),
        (f"best val {metric_label(metric)}", best_text),
        ("precision", f"{info['precision']['here']} here ({info['precision']['reason']})"),
    ]
    lines = [f"{name:<13} {value}" for name, value in rows]
    lines.append("config:")
    lines.extend("  " + line for line in yaml.safe_dump(info["config"], sort_keys=False, allow_unicode=True).rstrip("\n").split("\n"))
    return "\n".join(lines)


def plural(n: int | None, noun: str) -> str:
    """`1 full epoch`, `2 full epochs`, `? full epochs` (unknown)."""
    return f"{'?' if n is None else n} {noun}{'' if n == 1 else 's'}"
