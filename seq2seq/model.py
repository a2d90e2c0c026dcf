"""The model: packed bidirectional GRU encoder -> bridge -> GRU decoder with masked attention -> output layer.

Modules are stateless: everything a call needs (encoder states, projected attention keys, the source
pad mask, the decoder state) is an argument. Shapes: B batch, S source length, T target length,
E embedding size, H hidden size, D encoder output size (H or 2H), O pre-output size, V vocabulary.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from seq2seq.config import ModelConfig
from seq2seq.vocab import PAD


def make_src_pad_mask(src_lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """(B, S) bool mask, True on padding, from lengths (B,)."""
    positions = torch.arange(max_len, device=src_lengths.device)
    mask = positions[None, :] >= src_lengths[:, None]  # (B, S)
    assert mask.shape == (src_lengths.size(0), max_len)
    return mask


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
    def __init__(
        self, vocab_size: int, emb_size: int, hidden_size: int, num_layers: int, bidirectional: bool, dropout: float,
        hidden_dropout: float | None = None,
    ):
        """`dropout` applies to the embeddings; `hidden_dropout` (None: `dropout`) between layers and on the outputs."""
        super().__init__()
        hidden_dropout = dropout if hidden_dropout is None else hidden_dropout
        self.embed = nn.Embedding(vocab_size, emb_size, padding_idx=PAD)
        self.dropout = Dropout(dropout)
        self.hidden_dropout = Dropout(hidden_dropout)
        self.rnn = nn.GRU(
            emb_size, hidden_size, num_layers, batch_first=True, bidirectional=bidirectional,
            dropout=hidden_dropout if num_layers > 1 else 0.0,
        )
        self.num_directions = 2 if bidirectional else 1
        self.output_size = hidden_size * self.num_directions

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

    Returns context (B, Tq, D) and weights (B, Tq, S); weights on pads are exactly 0 (masked with -inf
    before the softmax; every source holds at least its <eos>, so no row is all -inf).
    """
    scores = attention.scores(query, keys).float()  # (B, Tq, S)
    scores = scores.masked_fill(src_pad_mask[:, None, :], float("-inf"))
    weights = torch.softmax(scores, dim=-1)  # (B, Tq, S)
    context = torch.bmm(weights.to(states.dtype), states)  # (B, Tq, D)
    return context, weights


def _gru_gates(gi: torch.Tensor, gh: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """nn.GRU's cell from its two projections gi = W_i x + b_i, gh = W_h h + b_h (B, 3H), gates ordered r, z, n."""
    i_r, i_z, i_n = gi.chunk(3, dim=-1)
    h_r, h_z, h_n = gh.chunk(3, dim=-1)
    r = torch.sigmoid(i_r + h_r)
    z = torch.sigmoid(i_z + h_z)
    n = torch.tanh(i_n + r * h_n)
    return n + z * (h - n)  # = (1 - z) * n + z * h


class _StepWeights:
    """y_t = x_t W^T + b at every step t of a recurrence, with W's gradient computed once over all steps.

    The weights (one or more, stacked by rows, e.g. the recurrent gates and the attention query) are
    detached and cast to the compute dtype once per pass (once per weight update when decoding: `cache`);
    inside the loop only the inputs' gradients flow through the per-step matmuls. When training, the bias
    of every step comes from `_DeferredLinearGrad`, whose backward receives the gradients of all T steps at
    once and returns W's gradient as one (out, T*B) @ (T*B, in) matmul over the inputs recorded by
    `finish()`. Same values and gradients as T calls of F.linear.
    """

    def __init__(
        self, steps: int, batch: int, bias: torch.Tensor | None, *weights: torch.Tensor, dtype: torch.dtype,
        cache: dict | None = None,
    ):
        params = weights if bias is None else (bias, *weights)
        self.tracked = torch.is_grad_enabled() and any(p.requires_grad for p in params)
        key = tuple((p.data_ptr(), p._version) for p in params)
        if not self.tracked and cache is not None and cache.get("key") == (key, dtype):
            self.weight_t, self.row = cache["value"]
        else:
            self.weight_t = torch.cat([w.detach() for w in weights]).to(dtype).t()  # (in, out)
            self.row = self.weight_t.new_zeros(self.weight_t.size(1))  # (out,) the bias, zero where there is none
            if bias is not None:
                self.row[: bias.numel()] = bias.detach()
            if not self.tracked and cache is not None:
                cache["key"], cache["value"] = (key, dtype), (self.weight_t, self.row)
        self.inputs: list[torch.Tensor] = []
        self.recorded: list[torch.Tensor] = []  # filled by finish(): the stacked inputs, for the backward pass
        if self.tracked:
            self.biases = _DeferredLinearGrad.apply(self.recorded, self.row, batch, steps, bias, *weights).unbind(0)

    def __call__(self, t: int, x: torch.Tensor) -> torch.Tensor:
        """x (batch, in) -> (batch, out) at step t of 0, 1, ..., steps - 1."""
        if not self.tracked:
            return torch.addmm(self.row, x, self.weight_t)
        self.inputs.append(x)
        return torch.addmm(self.biases[t], x, self.weight_t)

    def finish(self) -> None:
        if self.tracked:
            self.recorded.append(torch.stack(self.inputs).detach())  # (T, B, in)
        self.inputs.clear()


class _DeferredLinearGrad(torch.autograd.Function):
    """Forward: the bias (zeros where there is none) of every step and sentence, (T, B, out). Backward: from
    the gradients of the T step outputs, (T, B, out), the bias gradient and each weight's gradient
    sum_t g_t^T x_t as one matmul over the inputs x (T, B, in) the caller recorded by then."""

    @staticmethod
    def forward(ctx, recorded, row, batch, steps, bias, *weights):  # type: ignore[override]
        ctx.recorded, ctx.rows, ctx.weight_dtype = recorded, [w.size(0) for w in weights], weights[0].dtype
        ctx.bias_size = None if bias is None else bias.numel()
        return row.expand(steps, batch, row.numel()).contiguous()  # one tensor, not one per step

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        (inputs,) = ctx.recorded  # (T, B, in)
        g = grad.reshape(-1, grad.size(-1))  # (T*B, out)
        grad_weight = g.t().mm(inputs.reshape(-1, inputs.size(-1)).to(g.dtype)).to(ctx.weight_dtype)  # (out, in)
        grad_bias = None if ctx.bias_size is None else g.sum(0, dtype=ctx.weight_dtype)[: ctx.bias_size]
        return (None, None, None, None, grad_bias, *grad_weight.split(ctx.rows))


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

    `bahdanau`: at step t the previous state queries the encoder; [embedding; context] is the GRU input;
    the pre-output is tanh(W [gru_out; context; embedding]). Step by step by nature.
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
        self._cast_cache: dict[str, dict] = {}  # decoding: loop weights cast once per weight update (_StepWeights)

    def init_hidden(self, enc_final: torch.Tensor) -> torch.Tensor:
        """enc_final (B, D) -> initial decoder state (L, B, H)."""
        h = torch.tanh(self.bridge(enc_final))  # (B, L * H)
        return h.view(-1, self.num_layers, self.hidden_size).transpose(0, 1).contiguous()  # (L, B, H)

    def forward(
        self, tgt_in: torch.Tensor, enc: EncoderOutput, hidden: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Teacher-forced pass. tgt_in (B, T), hidden (L, B, H) -> pre-output (B, T, O), hidden (L, B, H), attention (B, T, S)."""
        emb = self.dropout(self.embed(tgt_in))  # (B, T, E)
        if self.style == "luong":
            out, hidden = run_gru(self.rnn, emb, hidden)  # (B, T, H)
            out = self.hidden_dropout(out)
            context, weights = attend(self.attention, out, enc.keys, enc.states, enc.src_pad_mask)
            return self._pre_output(out, context, emb), hidden, weights
        out, context, hidden, weights = self._bahdanau_steps(emb, enc, hidden)
        return self._pre_output(self.hidden_dropout(out), context, emb), hidden, weights

    def step(
        self, prev: torch.Tensor, enc: EncoderOutput, hidden: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One step. prev (B,) token ids -> pre-output (B, O), hidden (L, B, H), attention (B, S)."""
        emb = self.dropout(self.embed(prev[:, None]))  # (B, 1, E)
        if self.style == "luong":
            out, hidden = run_gru(self.rnn, emb, hidden)  # (B, 1, H)
            out = self.hidden_dropout(out)
            context, weights = attend(self.attention, out, enc.keys, enc.states, enc.src_pad_mask)
        else:
            out, context, hidden, weights = self._bahdanau_steps(emb, enc, hidden)
            out = self.hidden_dropout(out)
        return self._pre_output(out, context, emb)[:, 0], hidden, weights[:, 0]

    def _bahdanau_steps(
        self, emb: torch.Tensor, enc: EncoderOutput, hidden: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Run the attentive GRU over given embeddings emb (B, T, E) from hidden (L, B, H).

        Returns GRU outputs (B, T, H), contexts (B, T, D), the last hidden (L, B, H) and attention (B, T, S).
        The GRU is written out with nn.GRU's own weights so that work can be moved out of the step loop:
        - the embedding half of the first layer's input projection runs once for all T steps;
        - with one layer the attention query is projected in the same matmul as the recurrent gates;
        - the weights the loop multiplies by (recurrent, query, context) are cast to the compute dtype once,
          and their gradients come from one matmul over all steps (`_StepWeights`) instead of T small ones,
          each cast back and accumulated.
        """
        rnn, attention = self.rnn, self.attention
        E, H, T = emb.size(-1), self.hidden_size, emb.size(1)
        w_ih = rnn.weight_ih_l0  # (3H, E + D)
        gi_emb = F.linear(emb, w_ih[:, :E], rnn.bias_ih_l0)  # (B, T, 3H), all steps in one matmul
        dtype = gi_emb.dtype  # bf16 under autocast
        fused = self.num_layers == 1
        query_weights = (attention.query_proj.weight,) if fused else ()
        B = emb.size(0)
        recurrent = _StepWeights(  # h -> gates [and query]
            T, B, rnn.bias_hh_l0, rnn.weight_hh_l0, *query_weights, dtype=dtype, cache=self._cast_cache.setdefault("hq", {})
        )
        from_context = _StepWeights(T, B, None, w_ih[:, E:], dtype=dtype, cache=self._cast_cache.setdefault("ctx", {}))
        states = [h.to(dtype) for h in hidden.unbind(0)]  # L x (B, H)
        outs, contexts, all_weights = [], [], []
        for t, gi_t in enumerate(gi_emb.unbind(1)):
            gh_q = recurrent(t, states[0])  # (B, 3H [+ A])
            gh = gh_q[:, : 3 * H]
            query = gh_q[:, 3 * H :] if fused else attention.query_proj(states[-1])  # (B, A)
            scores = attention.energy(torch.tanh(query[:, None, :] + enc.keys)).squeeze(-1)  # (B, S)
            weights = torch.softmax(scores.float().masked_fill(enc.src_pad_mask, float("-inf")), dim=-1)  # (B, S)
            context = torch.bmm(weights[:, None, :].to(enc.states.dtype), enc.states)[:, 0]  # (B, D)
            gi = gi_t + from_context(t, context.to(dtype))  # (B, 3H)
            states[0] = _gru_gates(gi, gh, states[0])
            for layer in range(1, self.num_layers):
                x = F.dropout(states[layer - 1], rnn.dropout, self.training)
                gi = F.linear(x, getattr(rnn, f"weight_ih_l{layer}"), getattr(rnn, f"bias_ih_l{layer}"))
                gh = F.linear(states[layer], getattr(rnn, f"weight_hh_l{layer}"), getattr(rnn, f"bias_hh_l{layer}"))
                states[layer] = _gru_gates(gi, gh, states[layer])
            outs.append(states[-1])
            contexts.append(context)
            all_weights.append(weights)
        recurrent.finish()
        from_context.finish()
        stack = lambda xs: torch.stack(xs, dim=1)  # noqa: E731
        return stack(outs), stack(contexts), torch.stack(states), stack(all_weights)

    def _pre_output(self, out: torch.Tensor, context: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        parts = [out, context, emb] if self.style == "bahdanau" else [out, context]
        return self.output_dropout(torch.tanh(self.pre_output(torch.cat(parts, dim=-1))))  # (B, T, O)


class Seq2Seq(nn.Module):
    """encode(src) -> EncoderOutput; decode_step(prev, enc, hidden) -> logits; forward = teacher-forced logits."""

    def __init__(self, cfg: ModelConfig, src_vocab_size: int, tgt_vocab_size: int):
        super().__init__()
        self.cfg = cfg
        emb_dropout, hidden_dropout, _ = dropout_rates(cfg)
        self.encoder = Encoder(
            src_vocab_size, cfg.emb_size, cfg.hidden_size, cfg.enc_layers, cfg.bidirectional, emb_dropout, hidden_dropout
        )
        output_size = cfg.emb_size if cfg.tie_embeddings else cfg.hidden_size
        self.decoder = Decoder(tgt_vocab_size, cfg, self.encoder.output_size, output_size)
        self.output = nn.Linear(output_size, tgt_vocab_size)
        if cfg.tie_embeddings:
            self.output.weight = self.decoder.embed.weight

    def encode(self, src: torch.Tensor, src_lengths: torch.Tensor) -> EncoderOutput:
        """src (B, S), src_lengths (B,) -> EncoderOutput."""
        states, final = self.encoder(src, src_lengths)
        mask = make_src_pad_mask(src_lengths.to(src.device), src.size(1))
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
            pre, _, _ = self.decoder(tgt_in, enc, enc.hidden)
            return self.output(pre)  # (B, T, V), one projection over all steps
        hidden, prev, logits = enc.hidden, tgt_in[:, 0], []
        for t in range(tgt_in.size(1)):
            step_logits, hidden, _ = self.decode_step(prev, enc, hidden)
            logits.append(step_logits)
            if t + 1 < tgt_in.size(1):
                gold = torch.rand(tgt_in.size(0), device=tgt_in.device) < teacher_forcing_ratio
                prev = torch.where(gold, tgt_in[:, t + 1], step_logits.argmax(-1))
        return torch.stack(logits, dim=1)  # (B, T, V)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
