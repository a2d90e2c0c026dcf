"""The model: packed bidirectional GRU encoder -> bridge -> GRU decoder with masked attention -> output layer.

Modules are stateless: everything a call needs (encoder states, projected attention keys, the source
pad mask, the decoder state) is an argument. Shapes: B batch, S source length, T target length,
E embedding size, H hidden size, D encoder output size (H or 2H), A attention size, O pre-output size,
L decoder layers, V vocabulary.

This is the reference model, written as a textbook writes it. The one optimisation a reader would not
write, a faster Bahdanau loop for teacher-forced passes, lives in `seq2seq.model.fast_bahdanau` (tested equal
to `Decoder._bahdanau_steps` here); which of the two a pass runs is decided in one place, `Seq2Seq.uses_fast_bahdanau`.
"""

from __future__ import annotations

from typing import Callable, NamedTuple, Optional

import torch
from torch import nn
from torch.func import functional_call
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from seq2seq.config import ModelConfig
from seq2seq.data.vocab import PAD
from seq2seq.model.fast_bahdanau import bahdanau_steps
from seq2seq.model.masking import make_src_pad_mask, masked_softmax



class Dropout(nn.Dropout):
    """nn.Dropout with a faster mask on the CPU (on CUDA: nn.Dropout itself).

    The CPU's bernoulli_ draws one random number per element (~12 ms for a 2,500 x 512 batch here); this draws
    64 random bits per four elements and keeps an element when its 15 bits are >= round(p * 2^15), so the
    rate is p rounded to 1/32768 and the scale 1 / (1 - that rate) keeps the expectation exact.
    Same generator as torch.manual_seed seeds, so runs stay reproducible and resumable.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0 or x.device.type != "cpu" or self.p >= 1.0:
            return super().forward(x)
        threshold = round(self.p * 32768)
        n = x.numel()
        bits = torch.empty((n + 3) // 4, dtype=torch.int64).random_().view(torch.int16)[:n].view(x.shape)
        mask = (bits.bitwise_and_(0x7FFF) >= threshold).to(x.dtype).mul_(32768 / (32768 - threshold))
        return x * mask


def run_gru(rnn: nn.GRU, x: torch.Tensor | PackedSequence, hx: torch.Tensor | None = None):
    """rnn(x, hx), in bf16 under CPU bf16 autocast: CPU autocast leaves nn.GRU in fp32 (CUDA autocast does
    not), so the weights and inputs are cast here, once per call; gradients still reach the fp32 weights."""
    if not (torch.is_autocast_enabled("cpu") and next(rnn.parameters()).device.type == "cpu"):
        return rnn(x, hx)
    dtype = torch.get_autocast_dtype("cpu")
    params = {name: w.to(dtype) for name, w in rnn.named_parameters()}
    x = x._replace(data=x.data.to(dtype)) if isinstance(x, PackedSequence) else x.to(dtype)
    return functional_call(rnn, params, (x, None if hx is None else hx.to(dtype)))


def dropout_rates(cfg: ModelConfig) -> tuple[float, float, float]:
    """(embedding, hidden, output) dropout rates; each unset one is `cfg.dropout`."""
    return tuple(cfg.dropout if rate is None else rate for rate in (cfg.emb_dropout, cfg.hidden_dropout, cfg.output_dropout))  # type: ignore[return-value]


class Encoder(nn.Module):
    """Packed bidirectional (or unidirectional) GRU over the source embeddings.

    Dropout: `dropout_rates(cfg)`'s embedding rate on the embeddings, its hidden rate between layers and on
    the outputs (pads stay exactly 0).
    """

    def __init__(self, vocab_size: int, cfg: ModelConfig):
        super().__init__()
        emb_dropout, hidden_dropout, _ = dropout_rates(cfg)
        self.embed = nn.Embedding(vocab_size, cfg.emb_size, padding_idx=PAD)
        self.dropout = Dropout(emb_dropout)
        self.hidden_dropout = Dropout(hidden_dropout)
        self.rnn = nn.GRU(
            cfg.emb_size, cfg.hidden_size, cfg.enc_layers, batch_first=True, bidirectional=cfg.bidirectional,
            dropout=hidden_dropout if cfg.enc_layers > 1 else 0.0,
        )
        self.num_directions = 2 if cfg.bidirectional else 1
        self.output_size = cfg.hidden_size * self.num_directions

    def forward(self, src: torch.Tensor, src_lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """src (B, S), src_lengths (B,) -> states (B, S, D) (zero at pads), final (B, D) top layer's last states."""
        emb = self.dropout(self.embed(src))  # (B, S, E)
        packed = pack_padded_sequence(emb, src_lengths.cpu(), batch_first=True, enforce_sorted=False)
        packed_out, h_n = run_gru(self.rnn, packed)  # h_n (layers * dirs, B, H)
        states, _ = pad_packed_sequence(packed_out, batch_first=True, total_length=src.size(1))  # (B, S, D)
        states = self.hidden_dropout(states)  # pads stay exactly 0
        top = h_n.view(self.rnn.num_layers, self.num_directions, src.size(0), self.rnn.hidden_size)[-1]  # (dirs, B, H)
        final = torch.cat(list(top), dim=-1)  # (B, D)
        return states, final


class BahdanauAttention(nn.Module):
    """Additive attention: score(q, k) = v . tanh(W_q q + W_k k)."""

    def __init__(self, query_size: int, key_size: int, hidden_size: int):
        super().__init__()
        self.key_proj = nn.Linear(key_size, hidden_size, bias=False)
        self.query_proj = nn.Linear(query_size, hidden_size, bias=False)
        self.energy = nn.Linear(hidden_size, 1, bias=False)

    def project_keys(self, states: torch.Tensor) -> torch.Tensor:
        """states (B, S, D) -> keys (B, S, A); computed once per batch, not once per step."""
        return self.key_proj(states)

    def scores(self, query: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        """query (B, Tq, Q), keys (B, S, A) -> scores (B, Tq, S)."""
        q = self.query_proj(query)  # (B, Tq, A)
        return self.energy(torch.tanh(q[:, :, None, :] + keys[:, None, :, :])).squeeze(-1)  # (B, Tq, S)


class LuongAttention(nn.Module):
    """Bilinear ("general") attention: score(q, k) = q . W k."""

    def __init__(self, query_size: int, key_size: int):
        super().__init__()
        self.key_proj = nn.Linear(key_size, query_size, bias=False)

    def project_keys(self, states: torch.Tensor) -> torch.Tensor:
        """states (B, S, D) -> keys (B, S, Q)."""
        return self.key_proj(states)

    def scores(self, query: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        """query (B, Tq, Q), keys (B, S, Q) -> scores (B, Tq, S)."""
        return torch.bmm(query, keys.transpose(1, 2))


def attend(
    attention: nn.Module, query: torch.Tensor, keys: torch.Tensor, states: torch.Tensor, src_pad_mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Masked attention. query (B, Tq, Q), keys (B, S, A), states (B, S, D), src_pad_mask (B, S) True on pads.

    Returns context (B, Tq, D) and weights (B, Tq, S); weights on pads are exactly 0 (`masked_softmax`).
    """
    weights = masked_softmax(attention.scores(query, keys), src_pad_mask)  # (B, Tq, S)
    context = torch.bmm(weights.to(states.dtype), states)  # (B, Tq, D)
    return context, weights


class EncoderOutput(NamedTuple):
    states: torch.Tensor  # (B, S, D)
    keys: torch.Tensor  # (B, S, A) attention keys, projected once
    src_pad_mask: torch.Tensor  # (B, S) True on padding
    hidden: torch.Tensor  # (L, B, H) initial decoder state

    def select(self, index: torch.Tensor) -> "EncoderOutput":
        """Keep rows `index` (1-D) of the batch; the decoder state's batch dimension is dim 1."""
        return EncoderOutput(self.states[index], self.keys[index], self.src_pad_mask[index], self.hidden[:, index])


class Decoder(nn.Module):
    """GRU decoder with attention, in one of two styles.

    `bahdanau`: at step t the previous top-layer state queries the encoder; [embedding; context] is the GRU
    input; the pre-output is tanh(W [gru_out; context; embedding]). Step by step by nature: this is the
    reference loop, written as a textbook writes it. `seq2seq.model.fast_bahdanau` computes the same thing
    faster on some machines (see `uses_fast_bahdanau`).
    `luong`: the GRU reads the embeddings alone (no input feeding), so with teacher forcing it runs as one
    call over the whole target; its outputs then query the encoder all at once; pre-output tanh(W [out; ctx]).
    """

    def __init__(self, vocab_size: int, cfg: ModelConfig, enc_size: int, output_size: int):
        super().__init__()
        self.style = cfg.attention
        emb_dropout, hidden_dropout, output_dropout = dropout_rates(cfg)
        self.embed = nn.Embedding(vocab_size, cfg.emb_size, padding_idx=PAD)
        self.dropout = Dropout(emb_dropout)
        self.hidden_dropout = Dropout(hidden_dropout)
        self.output_dropout = Dropout(output_dropout)
        rnn_input = cfg.emb_size + enc_size if self.style == "bahdanau" else cfg.emb_size
        self.rnn = nn.GRU(
            rnn_input, cfg.hidden_size, cfg.dec_layers, batch_first=True,
            dropout=hidden_dropout if cfg.dec_layers > 1 else 0.0,
        )
        if self.style == "bahdanau":
            self.attention: nn.Module = BahdanauAttention(cfg.hidden_size, enc_size, cfg.hidden_size)
            pre_input = cfg.hidden_size + enc_size + cfg.emb_size
        else:
            self.attention = LuongAttention(cfg.hidden_size, enc_size)
            pre_input = cfg.hidden_size + enc_size
        self.pre_output = nn.Linear(pre_input, output_size)
        self.bridge = nn.Linear(enc_size, cfg.dec_layers * cfg.hidden_size)
        self.num_layers = cfg.dec_layers
        self.hidden_size = cfg.hidden_size

    def init_hidden(self, enc_final: torch.Tensor) -> torch.Tensor:
        """enc_final (B, D) -> initial decoder state (L, B, H)."""
        h = torch.tanh(self.bridge(enc_final))  # (B, L * H)
        return h.view(-1, self.num_layers, self.hidden_size).transpose(0, 1).contiguous()  # (L, B, H)

    def forward(
        self, tgt_in: torch.Tensor, enc: EncoderOutput, hidden: torch.Tensor, loop: Optional["BahdanauLoop"] = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Teacher-forced pass. tgt_in (B, T), hidden (L, B, H) -> pre-output (B, T, O), hidden (L, B, H), attention (B, T, S).

        `loop`: another Bahdanau loop with the reference's signature and results (`seq2seq.model.fast_bahdanau.
        bahdanau_steps`: same values and gradients) instead of the reference `_bahdanau_steps`; Luong has one path.
        """
        emb = self.dropout(self.embed(tgt_in))  # (B, T, E)
        if self.style == "luong":
            out, hidden = run_gru(self.rnn, emb, hidden)  # (B, T, H)
            out = self.hidden_dropout(out)
            context, weights = attend(self.attention, out, enc.keys, enc.states, enc.src_pad_mask)
            return self._pre_output(out, context, emb), hidden, weights
        out, context, hidden, weights = (loop or Decoder._bahdanau_steps)(self, emb, enc, hidden)
        return self._pre_output(self.hidden_dropout(out), context, emb), hidden, weights

    def step(
        self, prev: torch.Tensor, enc: EncoderOutput, hidden: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One step: `forward` over a target of one token, on the reference path.
        prev (B,) token ids -> pre-output (B, O), hidden (L, B, H), attention (B, S)."""
        pre, hidden, weights = self(prev[:, None], enc, hidden)  # (B, 1, O), (L, B, H), (B, 1, S)
        return pre[:, 0], hidden, weights[:, 0]

    def _bahdanau_steps(
        self, emb: torch.Tensor, enc: EncoderOutput, hidden: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """The reference Bahdanau loop over embeddings emb (B, T, E) from hidden (L, B, H).

        At each step the previous top-layer state queries the encoder (attention keys were projected once,
        in `Seq2Seq.encode`), and nn.GRU runs one step on [embedding; context]. Returns the GRU outputs
        (B, T, H), contexts (B, T, D), the last hidden (L, B, H) and attention (B, T, S).
        """
        outs, contexts, all_weights = [], [], []
        for t in range(emb.size(1)):
            query = hidden[-1][:, None]  # (B, 1, H)
            context, weights = attend(self.attention, query, enc.keys, enc.states, enc.src_pad_mask)  # (B, 1, D), (B, 1, S)
            rnn_input = torch.cat([emb[:, t : t + 1], context], dim=-1)  # (B, 1, E + D)
            out, hidden = run_gru(self.rnn, rnn_input, hidden)  # (B, 1, H), (L, B, H)
            outs.append(out)
            contexts.append(context)
            all_weights.append(weights)
        return torch.cat(outs, 1), torch.cat(contexts, 1), hidden, torch.cat(all_weights, 1)

    def _pre_output(self, out: torch.Tensor, context: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        """out (B, T, H), context (B, T, D), emb (B, T, E) -> pre-output (B, T, O)."""
        parts = [out, context, emb] if self.style == "bahdanau" else [out, context]
        return self.output_dropout(torch.tanh(self.pre_output(torch.cat(parts, dim=-1))))  # (B, T, O)


# A teacher-forced Bahdanau loop: (decoder, emb (B, T, E), enc, hidden (L, B, H)) ->
# (GRU outputs (B, T, H), contexts (B, T, D), last hidden (L, B, H), attention (B, T, S)); see Decoder._bahdanau_steps.
BahdanauLoop = Callable[[Decoder, torch.Tensor, EncoderOutput, torch.Tensor], tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]]


class Seq2Seq(nn.Module):
    """encode(src) -> EncoderOutput; decode_step(prev, enc, hidden) -> logits; forward = teacher-forced logits.

    A teacher-forced pass of a Bahdanau model runs the loop `uses_fast_bahdanau` picks (the one place it is
    decided); decoding (`decode_step`) always runs the reference path.
    """

    def __init__(self, cfg: ModelConfig, src_vocab_size: int, tgt_vocab_size: int):
        super().__init__()
        self.cfg = cfg
        self.encoder = Encoder(src_vocab_size, cfg)
        output_size = cfg.emb_size if cfg.tie_embeddings else cfg.hidden_size
        self.decoder = Decoder(tgt_vocab_size, cfg, self.encoder.output_size, output_size)
        self.output = nn.Linear(output_size, tgt_vocab_size)
        if cfg.tie_embeddings:
            self.output.weight = self.decoder.embed.weight

    def uses_fast_bahdanau(self, device: torch.device) -> bool:
        """Whether a teacher-forced pass on `device` runs the fast Bahdanau loop (`seq2seq.model.fast_bahdanau.
        bahdanau_steps`, same values and gradients) instead of the reference `Decoder._bahdanau_steps`.

        The one place this is decided. Teacher-forced passes are training steps and the validation loss (computed
        by the same `forward`); decoding (`decode_step`) always runs the reference. `model.bahdanau_loop` `fast` /
        `reference` is the user's choice; `auto` is this rule: the fast loop on the CPU, in fp32 and bf16 alike, the
        reference elsewhere (CUDA: never measured). Measured with `seq2seq bench --config configs/bench_reference.yaml`
        (30 timed training steps of the reference model on bucketed Multi30k batches of ~2,290 target tokens,
        2 threads), the same batches both ways:
        - fp32, 2-core AMD EPYC with AVX2 only: reference 1,147 and 1,199 target tokens/s in two runs, fast loop
          1,368 (+14-19%);
        - bf16, 2-core AMD EPYC with AVX-512 BF16 (`scripts/ablate_speed.py`): reference 722 ms per batch, fast 641
          (-11%).
        `scripts/ablate_speed.py --variants reference,fast` times the two loops alone (no optimizer step); on the
        AVX2 CPU it put them within 4% of each other, so the full training step is what decides.
        Luong attention has one path; an int8 model (`seq2seq.model.quantize`) has no nn.GRU weights for the fast
        loop to read, so its loss runs the reference.
        """
        if self.cfg.attention != "bahdanau" or not isinstance(self.decoder.rnn, nn.GRU):
            return False
        if self.cfg.bahdanau_loop != "auto":
            return self.cfg.bahdanau_loop == "fast"
        return device.type == "cpu"

    def encode(self, src: torch.Tensor, src_lengths: torch.Tensor) -> EncoderOutput:
        """src (B, S), src_lengths (B,) -> EncoderOutput."""
        states, final = self.encoder(src, src_lengths)  # (B, S, D), (B, D)
        mask = make_src_pad_mask(src_lengths.to(src.device), src.size(1))  # (B, S)
        return EncoderOutput(states, self.decoder.attention.project_keys(states), mask, self.decoder.init_hidden(final))

    def decode_step(
        self, prev: torch.Tensor, enc: EncoderOutput, hidden: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """prev (B,) -> logits (B, V), hidden (L, B, H), attention (B, S)."""
        pre, hidden, weights = self.decoder.step(prev, enc, hidden)
        return self.output(pre), hidden, weights

    def forward(
        self, src: torch.Tensor, src_lengths: torch.Tensor, tgt_in: torch.Tensor, teacher_forcing_ratio: float = 1.0
    ) -> torch.Tensor:
        """Logits (B, T, V) for the shifted targets `tgt_in` (B, T) = <bos> y.

        With teacher_forcing_ratio < 1, at each step each sentence is fed its gold previous token with that
        probability and the model's own greedy prediction otherwise (step by step).
        """
        enc = self.encode(src, src_lengths)
        if teacher_forcing_ratio >= 1.0:
            loop = bahdanau_steps if self.uses_fast_bahdanau(src.device) else None
            pre, _, _ = self.decoder(tgt_in, enc, enc.hidden, loop=loop)  # (B, T, O)
            return self.output(pre)  # (B, T, V), one projection over all steps
        hidden, prev, logits = enc.hidden, tgt_in[:, 0], []
        for t in range(tgt_in.size(1)):
            step_logits, hidden, _ = self.decode_step(prev, enc, hidden)  # (B, V)
            logits.append(step_logits)
            if t + 1 < tgt_in.size(1):
                gold = torch.rand(tgt_in.size(0), device=tgt_in.device) < teacher_forcing_ratio
                prev = torch.where(gold, tgt_in[:, t + 1], step_logits.argmax(-1))
        return torch.stack(logits, dim=1)  # (B, T, V)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
