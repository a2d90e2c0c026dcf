"""The exported graphs compute what the torch model computes (padding included), and the one search decodes them
as it decodes the torch model: same tokens, scores within 1e-4, the same alone or in a batch; ensembles too."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from seq2seq.config import DecodeConfig
from seq2seq.data.vocab import SPECIALS
from seq2seq.decode.ensemble import Ensemble
from seq2seq.decode.onnx_backend import OnnxGraphs
from seq2seq.decode.search import decode
from seq2seq.decode.torch_backend import TorchBackend
from seq2seq.errors import CheckpointError
from seq2seq.model.export import check_graphs, trace_graphs, with_metadata
from seq2seq.model.export_format import graph_metadata
from tests.conftest import random_examples, tiny_model

# With dropout, as every real config has: the export must run in eval mode (its wrapper modules once traced in
# training mode and exported dropout that onnxruntime applied: graphs 0.6 off torch on a model with dropout 0.3).
MODELS = {
    "bahdanau-2x2": {"attention": "bahdanau", "enc_layers": 2, "dec_layers": 2, "dropout": 0.3},
    "luong": {"attention": "luong", "dropout": 0.3},
    "bahdanau-uni-tied": {"attention": "bahdanau", "bidirectional": False, "tie_embeddings": True, "dropout": 0.3},
}
GREEDY = DecodeConfig(batch_size=7, max_len_a=1.3, max_len_b=3)
BEAM = DecodeConfig(beam_size=5, batch_size=7, length_penalty=0.6, min_len=2, max_len_a=1.2, max_len_b=3)


def graphs_of(model: torch.nn.Module, directory: Path) -> OnnxGraphs:
    """The model's two graphs written into `directory` and loaded as the runtime loads them."""
    src_vocab = list(SPECIALS) + [f"s{i}" for i in range(model.encoder.embed.num_embeddings - 4)]
    tgt_vocab = list(SPECIALS) + [f"t{i}" for i in range(model.output.out_features - 4)]
    meta = graph_metadata(src_vocab, tgt_vocab)
    encoder, decoder = trace_graphs(model)
    (directory / "encoder.onnx").write_bytes(with_metadata(encoder, meta, ""))
    (directory / "decoder.onnx").write_bytes(with_metadata(decoder, meta, ""))
    manifest = {"src_vocab": src_vocab, "tgt_vocab": tgt_vocab, "graphs": {"encoder": {"file": "encoder.onnx"}, "decoder": {"file": "decoder.onnx"}}}
    return OnnxGraphs(directory, manifest, threads=1)


@pytest.mark.parametrize("name", MODELS)
def test_graphs_match_torch_on_a_padded_batch_longer_than_the_trace(name: str) -> None:
    model = tiny_model(**MODELS[name])
    encoder, decoder = trace_graphs(model)
    assert check_graphs(model, encoder, decoder) < 1e-5  # a batch of 3, lengths 9, 4 and 1; traced with 5 and 3


def test_the_graph_check_catches_graphs_of_other_numbers() -> None:
    encoder, decoder = trace_graphs(tiny_model(seed=1, attention="bahdanau"))
    with pytest.raises(CheckpointError, match="differ from torch"):
        check_graphs(tiny_model(seed=2, attention="bahdanau"), encoder, decoder)


def _check_same(ours: list, theirs: list) -> None:
    assert [[h.ids for h in x] for x in ours] == [[h.ids for h in x] for x in theirs]
    for x, y in zip(ours, theirs):
        for h, k in zip(x, y):
            assert abs(h.score - k.score) < 1e-4
            if k.attention is not None:
                assert h.attention.shape == tuple(k.attention.shape)
                assert np.abs(h.attention - k.attention).max() < 1e-5


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("decode_cfg, nbest", [(GREEDY, 1), (BEAM, 1), (BEAM, 3)], ids=["greedy", "beam5", "beam5-nbest3"])
def test_runtime_search_decodes_as_torch(name: str, decode_cfg: DecodeConfig, nbest: int, tmp_path: Path) -> None:
    model = tiny_model(**MODELS[name])
    sources = [s for s, _ in random_examples(30, seed=4, max_len=14)]  # longer than the trace (5 tokens)
    theirs = decode(TorchBackend(model, torch.device("cpu"), "fp32"), sources, decode_cfg, nbest=nbest, return_attention=True)
    ours = decode(graphs_of(model, tmp_path), sources, decode_cfg, nbest=nbest, return_attention=True)
    _check_same(ours, theirs)


@pytest.mark.parametrize("decode_cfg, nbest", [(GREEDY, 1), (BEAM, 1), (BEAM, 3)], ids=["greedy", "beam5", "beam5-nbest3"])
def test_an_export_ensemble_decodes_as_the_torch_ensemble(decode_cfg: DecodeConfig, nbest: int, tmp_path: Path) -> None:
    models = [tiny_model(**MODELS["bahdanau-2x2"]), tiny_model(seed=3, **MODELS["luong"])]
    sources = [s for s, _ in random_examples(30, seed=4, max_len=14)]
    graphs = [graphs_of(m, (tmp_path / str(i)).mkdir() or tmp_path / str(i)) for i, m in enumerate(models)]
    theirs = decode(Ensemble([TorchBackend(m, torch.device("cpu"), "fp32") for m in models]), sources, decode_cfg, nbest=nbest, return_attention=True)
    ours = decode(Ensemble(graphs), sources, decode_cfg, nbest=nbest, return_attention=True)
    _check_same(ours, theirs)
    mixed = decode(Ensemble([graphs[0], TorchBackend(models[1], torch.device("cpu"), "fp32")]), sources, decode_cfg, nbest=nbest)
    assert [[h.ids for h in x] for x in mixed] == [[h.ids for h in x] for x in theirs]


@pytest.mark.parametrize("decode_cfg", [GREEDY, BEAM], ids=["greedy", "beam5"])
def test_a_sentence_alone_decodes_as_in_a_batch_through_the_export(decode_cfg: DecodeConfig, tmp_path: Path) -> None:
    graphs = graphs_of(tiny_model(**MODELS["bahdanau-2x2"]), tmp_path)
    sources = [s for s, _ in random_examples(12, seed=9, max_len=12)]
    batched = decode(graphs, sources, decode_cfg, return_attention=True)
    for source, together in zip(sources, batched):
        alone = decode(graphs, [source], dataclasses.replace(decode_cfg, batch_size=1), return_attention=True)[0]
        assert [h.ids for h in alone] == [h.ids for h in together]
        assert abs(alone[0].score - together[0].score) < 1e-5
        assert np.abs(alone[0].attention - together[0].attention).max() < 1e-6
