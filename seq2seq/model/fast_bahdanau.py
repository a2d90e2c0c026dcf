"""The fast Bahdanau decoder loop: the same function as `Decoder._bahdanau_steps` in `seq2seq.model.network` (the
reference), written out so that work moves out of the step loop. Tested equal to the reference in values
and in every parameter's gradient (tests/model/test_fast_bahdanau.py, tests/test_padding.py).

What it does that the reference does not:
- nn.GRU's cell is written out (`_gru_gates`) with nn.GRU's own weights, so the embedding half of the first
  layer's input projection runs once for all T steps;
- with one decoder layer the attention query is projected in the same matmul as the recurrent gates;
- the weights the loop multiplies by (recurrent, query, context) are cast to the compute dtype once per
  pass, and their gradients come from one matmul over all steps (`_StepWeights`, `_DeferredLinearGrad`)
  instead of T small ones, each cast back and accumulated.

Whether a pass runs it is decided in one place, `seq2seq.model.network.Seq2Seq.uses_fast_bahdanau` (the rule and the
measurements behind it). Stateless: nothing is kept between calls. It knows the network's classes by type
only, so that the network can import it.
Shapes as in `seq2seq.model.network`: B batch, S source length, T target length, E embedding, H hidden,
D encoder output, A attention size, L decoder layers.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from seq2seq.model.masking import masked_softmax


def _gru_gates(gi: torch.Tensor, gh: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """nn.GRU's cell from its two projections gi = W_i x + b_i, gh = W_h h + b_h (B, 3H), gates ordered r, z, n."""
    i_r, i_z, i_n = gi.chunk(3, dim=-1)
    h_r, h_z, h_n = gh.chunk(3, dim=-1)
    r = torch.sigmoid(i_r + h_r)
    z = torch.sigmoid(i_z + h_z)
    n = torch.tanh(i_n + r * h_n)
    return n + z * (h - n)  # = (1 - z) * n + z * h  (B, H)


class _StepWeights:
    """y_t = x_t W^T + b at each step t = 0, 1, ..., T-1 of a recurrence, W's gradient computed once over all steps.

    Used only as a context manager around the step loop:

        with _StepWeights(T, B, bias, W1, W2, dtype=dtype) as linear:
            for t in range(T):
                y = linear(t, x_t)

    The weights (one or more, stacked by rows, e.g. the recurrent gates and the attention query) are
    detached and cast to the compute dtype once; inside the loop only the inputs' gradients flow through the
    per-step matmuls. When gradients are tracked, the bias of every step comes from `_DeferredLinearGrad`,
    whose backward receives the gradients of all T steps at once and returns W's gradient as one
    (out, T*B) @ (T*B, in) matmul over the inputs. Leaving the `with` block hands the backward those inputs
    (all T of them, in step order; checked), so no caller can forget to; a backward that runs before then
    raises instead of computing a wrong gradient. Same values and gradients as T calls of F.linear.
    """

    def __init__(self, steps: int, batch: int, bias: torch.Tensor | None, *weights: torch.Tensor, dtype: torch.dtype):
        params = weights if bias is None else (bias, *weights)
        self.steps = steps
        self.tracked = torch.is_grad_enabled() and any(p.requires_grad for p in params)
        self.weight_t = torch.cat([w.detach() for w in weights]).to(dtype).t()  # (in, out)
        self.row = self.weight_t.new_zeros(self.weight_t.size(1))  # (out,) the bias, zero where there is none
        if bias is not None:
            self.row[: bias.numel()] = bias.detach()
        self.inputs: list[torch.Tensor] = []
        self.recorded: list[torch.Tensor] = []  # filled on leaving the block: the stacked inputs, for the backward
        self.closed = False
        if self.tracked:
            self.biases = _DeferredLinearGrad.apply(self.recorded, self.row, batch, steps, bias, *weights).unbind(0)

    def __enter__(self) -> "_StepWeights":
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        self.closed = True
        if exc_type is None and self.tracked:
            assert len(self.inputs) == self.steps, f"{len(self.inputs)} of {self.steps} steps ran"
            self.recorded.append(torch.stack(self.inputs).detach())  # (T, B, in)
        self.inputs.clear()

    def __call__(self, t: int, x: torch.Tensor) -> torch.Tensor:
        """x (B, in) -> (B, out) at step t; the steps must come in order 0, 1, ..., T-1."""
        assert not self.closed, "_StepWeights called after its block ended"
        if not self.tracked:
            return torch.addmm(self.row, x, self.weight_t)
        assert t == len(self.inputs), f"step {t} out of order (expected {len(self.inputs)})"
        self.inputs.append(x)
        return torch.addmm(self.biases[t], x, self.weight_t)


class _DeferredLinearGrad(torch.autograd.Function):
    """Forward: the bias (zeros where there is none) of every step and sentence, (T, B, out). Backward: from
    the gradients of the T step outputs, (T, B, out), the bias gradient and each weight's gradient
    sum_t g_t^T x_t as one matmul over the inputs x (T, B, in) that `_StepWeights` recorded by then."""

    @staticmethod
    def forward(ctx, recorded, row, batch, steps, bias, *weights):  # type: ignore[override]
        ctx.recorded, ctx.rows, ctx.weight_dtype = recorded, [w.size(0) for w in weights], weights[0].dtype
        ctx.bias_size = None if bias is None else bias.numel()
        return row.expand(steps, batch, row.numel()).contiguous()  # one tensor, not one per step

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        if len(ctx.recorded) != 1:
            raise RuntimeError("fast_decoder: backward ran before the step loop's _StepWeights block ended")
        (inputs,) = ctx.recorded  # (T, B, in)
        g = grad.reshape(-1, grad.size(-1))  # (T*B, out)
        grad_weight = g.t().mm(inputs.reshape(-1, inputs.size(-1)).to(g.dtype)).to(ctx.weight_dtype)  # (out, in)
        grad_bias = None if ctx.bias_size is None else g.sum(0, dtype=ctx.weight_dtype)[: ctx.bias_size]
        return (None, None, None, None, grad_bias, *grad_weight.split(ctx.rows))


def bahdanau_steps(
    decoder: nn.Module, emb: torch.Tensor, enc: NamedTuple, hidden: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """`decoder._bahdanau_steps(emb, enc, hidden)`, faster: emb (B, T, E), hidden (L, B, H) -> GRU outputs
    (B, T, H), contexts (B, T, D), the last hidden (L, B, H), attention (B, T, S). `decoder` is the network's
    Decoder and `enc` its EncoderOutput; this module names neither, so that the network can import it without a cycle.

    The loop runs inside the `_StepWeights` blocks, so the gradients they defer are complete when this returns.
    """
    rnn, attention = decoder.rnn, decoder.attention
    (B, T, E), H, L = emb.shape, decoder.hidden_size, decoder.num_layers
    w_ih = rnn.weight_ih_l0  # (3H, E + D)
    gi_emb = F.linear(emb, w_ih[:, :E], rnn.bias_ih_l0)  # (B, T, 3H), all steps in one matmul
    dtype = gi_emb.dtype  # bf16 under autocast
    fused = L == 1  # the query reads the top layer's state, which is layer 0's only with one layer
    query_weights = (attention.query_proj.weight,) if fused else ()
    states = [h.to(dtype) for h in hidden.unbind(0)]  # L x (B, H)
    outs, contexts, all_weights = [], [], []
    with (
        _StepWeights(T, B, rnn.bias_hh_l0, rnn.weight_hh_l0, *query_weights, dtype=dtype) as recurrent,  # h -> gates [, query]
        _StepWeights(T, B, None, w_ih[:, E:], dtype=dtype) as from_context,  # context -> gates
    ):
        for t, gi_t in enumerate(gi_emb.unbind(1)):  # gi_t (B, 3H)
            gh_q = recurrent(t, states[0])  # (B, 3H [+ A])
            gh = gh_q[:, : 3 * H]  # (B, 3H)
            query = gh_q[:, 3 * H :] if fused else attention.query_proj(states[-1])  # (B, A)
            scores = attention.energy(torch.tanh(query[:, None, :] + enc.keys)).squeeze(-1)  # (B, S)
            weights = masked_softmax(scores[:, None], enc.src_pad_mask)[:, 0]  # (B, S), as attend() masks
            context = torch.bmm(weights[:, None, :].to(enc.states.dtype), enc.states)[:, 0]  # (B, D)
            states[0] = _gru_gates(gi_t + from_context(t, context.to(dtype)), gh, states[0])  # (B, H)
            for layer in range(1, L):
                x = F.dropout(states[layer - 1], rnn.dropout, decoder.training)  # nn.GRU's dropout between layers
                gi = F.linear(x, getattr(rnn, f"weight_ih_l{layer}"), getattr(rnn, f"bias_ih_l{layer}"))  # (B, 3H)
                gh = F.linear(states[layer], getattr(rnn, f"weight_hh_l{layer}"), getattr(rnn, f"bias_hh_l{layer}"))
                states[layer] = _gru_gates(gi, gh, states[layer])  # (B, H)
            outs.append(states[-1])
            contexts.append(context)
            all_weights.append(weights)
    stack = lambda xs: torch.stack(xs, dim=1)  # noqa: E731
    return stack(outs), stack(contexts), torch.stack(states), stack(all_weights)

