"""Ensembles (decode/ensemble): the log of the members' mean probability, a model with itself decodes as the model
(greedy, beam 5, n-best), two models score as the mean of their distributions, and models that read or write text
differently cannot be put together (one line naming the difference)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from seq2seq.config import Config, DecodeConfig
from seq2seq.data.encoding import Encoder
from seq2seq.data.tokenizer import Tokenizer
from seq2seq.data.vocab import BOS, EOS, SPECIALS, Vocab
from seq2seq.decode.ensemble import Ensemble, mean_log_probs
from seq2seq.decode.search import decode, max_output_lengths
from seq2seq.decode.torch_backend import TorchBackend, loaded_model
from seq2seq.decode.translator import Translator
from seq2seq.errors import ConfigError
from tests.decode.test_search import peaked_model, sources

CPU = torch.device("cpu")
GREEDY = DecodeConfig(max_len_a=1.5, max_len_b=3)
BEAM = DecodeConfig(beam_size=5, length_penalty=0.6, min_len=1, max_len_a=1.5, max_len_b=3)


def test_the_mean_of_probabilities_is_logsumexp_minus_log_n() -> None:
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(3, 4, 7)).astype(np.float32)
    log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    log_probs[:, 0, 2] = -np.inf  # a token every member rules out stays ruled out
    mean = mean_log_probs(log_probs)
    assert mean.dtype == np.float32 and mean.shape == (4, 7)
    assert np.allclose(np.exp(mean), np.exp(log_probs).mean(axis=0), atol=1e-6)
    assert mean[0, 2] == -np.inf and np.allclose(np.exp(mean[1:]).sum(-1), 1.0, atol=1e-5)


@pytest.mark.parametrize("decode_cfg, nbest", [(GREEDY, 1), (BEAM, 1), (BEAM, 3)], ids=["greedy", "beam5", "beam5-nbest3"])
def test_an_ensemble_of_a_model_with_itself_decodes_as_the_model(decode_cfg: DecodeConfig, nbest: int) -> None:
    model = peaked_model("bahdanau")
    batch = sources(20, 5)
    alone = decode(TorchBackend(model, CPU, "fp32"), batch, decode_cfg, nbest=nbest, return_attention=True)
    twice = decode(Ensemble([TorchBackend(model, CPU, "fp32")] * 2), batch, decode_cfg, nbest=nbest, return_attention=True)
    assert [[h.ids for h in n] for n in twice] == [[h.ids for h in n] for n in alone]
    assert len({len(n[0].ids) for n in alone}) > 2  # outputs of several lengths: the comparison means something
    for a, b in zip(alone, twice):
        assert [h.score for h in b] == pytest.approx([h.score for h in a], abs=1e-5)
        assert all(np.allclose(x.attention, y.attention, atol=1e-6) for x, y in zip(a, b))


def test_two_models_score_the_log_of_their_mean_probability() -> None:
    """A greedy output of the ensemble scores the sum over its steps of log((p1 + p2) / 2), each member's p its
    teacher-forced probability of the token; and the ensemble is neither member."""
    models = [peaked_model("luong", seed=1), peaked_model("bahdanau", seed=2)]
    batch = sources(12, 6)
    ensemble = decode(Ensemble([TorchBackend(m, CPU, "fp32") for m in models]), batch, GREEDY)
    each = [decode(TorchBackend(m, CPU, "fp32"), batch, GREEDY) for m in models]
    assert all([n[0].ids for n in ensemble] != [n[0].ids for n in e] for e in each)
    for seq, (hyp,) in zip(batch, ensemble):
        stopped = len(hyp.ids) == max_output_lengths(np.array([len(seq)]), 1.5, 3)[0]  # at its maximum length: no <eos>
        tokens = hyp.ids if stopped else [*hyp.ids, EOS]
        tgt = torch.tensor([[BOS, *tokens[:-1]]])  # each step's input
        with torch.no_grad():
            probs = [torch.softmax(m(torch.tensor([seq]), torch.tensor([len(seq)]), tgt).float(), -1)[0] for m in models]
        forced = sum(float(torch.log((probs[0][i, t] + probs[1][i, t]) / 2)) for i, t in enumerate(tokens))
        assert hyp.score == pytest.approx(forced, abs=1e-3)


def _loaded(vocab: list[str], tokenizer: Tokenizer, path: str):  # noqa: ANN202
    v = Vocab(list(SPECIALS) + vocab)
    model = peaked_model("luong").float()
    return loaded_model(model, Config(), Encoder(tokenizer, v), Encoder(tokenizer, v), CPU, "fp32", Path(path))


def test_models_of_other_vocabularies_or_tokenizers_make_no_ensemble() -> None:
    words = [f"w{i}" for i in range(19)]
    a = _loaded(words, Tokenizer("word"), "a.pt")
    assert Translator.of([a, a]).kind == "ensemble of 2 checkpoints"
    with pytest.raises(ConfigError, match=r"--model b.pt: its source vocabulary differs from a.pt's \(23 against 23 tokens; id 5 is 'x' against 'w1'\)"):
        Translator.of([a, _loaded(["w0", "x", *words[2:]], Tokenizer("word"), "b.pt")])
    with pytest.raises(ConfigError, match=r"--model c.pt: its source tokenizer differs from a.pt's \(level char, lowercase False against level word"):
        Translator.of([a, _loaded(words, Tokenizer("char"), "c.pt")])
