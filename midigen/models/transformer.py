"""The `transformer` family: a decoder-only causal Transformer next-token model, for every token
representation (the "sequence" stores the LSTM reads, trained and evaluated the same way).

Pre-norm blocks (LayerNorm -> attention -> residual, LayerNorm -> GELU MLP -> residual), relative
position information (rotary embeddings by default, ALiBi with model.position: alibi; no absolute
position table, so nothing ties a token to where its window happened to start), input and output
embeddings tied, dropout on embeddings, attention and residual branches, and attention through
torch.nn.functional.scaled_dot_product_attention (flash kernels on CUDA; bf16 autocast and
torch.compile come from the training loop there).

Context: the model sees at most model.context tokens. It trains on windows of train.seq_len
(<= model.context, checked); when sampling, its state is a key/value cache (KVCache, a ring
buffer of model.context slots per layer), so each new token costs one position, and once a
piece outgrows the context a new position overwrites the oldest: a sliding window. Both
position schemes encode only the distance between a query and a key, so the cached keys stay
valid as the window slides, and a token at any position sees at most the context it was
trained with. The full forward pass over a sequence longer than the context uses the same
sliding window, so cached and uncached logits agree.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from midigen.errors import ParamsError
from midigen.models.base import TokenLM, TokenLMFamily
from midigen.representations import Representation

POSITIONS = ("rotary", "alibi")
ROTARY_BASE = 10000.0


@dataclass
class TransformerConfig:
    """Sizes of a TransformerLM; the defaults live in the params schema (midigen/params.py)."""

    vocab_size: int
    d_model: int
    layers: int
    heads: int
    d_ff: int
    context: int
    dropout: float
    position: str = "rotary"


@dataclass
class KVCache:
    """The sampling state: per layer a ring buffer of the keys (rotary already applied) and
    values of the last model.context positions, keys (batch, heads, head_dim, context) (stored
    transposed: one query times them is the faster matmul), values (batch, heads, context,
    head_dim), position p in slot p % context; `pos`, the number of positions seen (the next token's position).
    Every row of a batch is at the same position (the sampler feeds them in step)."""

    keys: list[torch.Tensor]
    values: list[torch.Tensor]
    pos: int

    def keep_rows(self, keep: torch.Tensor) -> KVCache:
        return KVCache([k[keep] for k in self.keys], [v[keep] for v in self.values], self.pos)

    def slot_positions(self, context: int) -> torch.Tensor:
        """The position held in each filled slot, slot order."""
        n = min(self.pos, context)
        slots = torch.arange(n, device=self.values[0].device)
        return (self.pos - 1) - ((self.pos - 1 - slots) % context)


def rotary_angles(positions: torch.Tensor, head_dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(cos, sin) of the rotary angles, (T, head_dim / 2) each; computed in float64 so that far
    positions (a long piece sampled through the sliding window) keep their precision."""
    angles = positions.to(torch.float64)[:, None] * rotary_freqs(head_dim, positions.device)[None, :]
    return angles.cos().float(), angles.sin().float()


@functools.cache
def rotary_freqs(head_dim: int, device: torch.device) -> torch.Tensor:
    """The rotary frequencies of the dimension pairs (float64), made once per size and device."""
    return ROTARY_BASE ** (-torch.arange(0, head_dim, 2, dtype=torch.float64, device=device) / head_dim)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x (..., D) rotated pairwise (first half with second half) by the angles, which
    broadcast against x's leading dimensions (..., D / 2)."""
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)


def alibi_slopes(heads: int) -> torch.Tensor:
    """ALiBi's head slopes (Press et al. 2022): a geometric sequence from 2^(-8/heads)."""
    return torch.tensor([2.0 ** (-8.0 * (h + 1) / heads) for h in range(heads)])


class Block(nn.Module):
    def __init__(self, c: TransformerConfig):
        super().__init__()
        self.heads, self.head_dim = c.heads, c.d_model // c.heads
        self.norm1 = nn.LayerNorm(c.d_model)
        self.qkv_proj = nn.Linear(c.d_model, 3 * c.d_model)
        self.proj = nn.Linear(c.d_model, c.d_model)
        self.norm2 = nn.LayerNorm(c.d_model)
        self.mlp = nn.Sequential(nn.Linear(c.d_model, c.d_ff), nn.GELU(), nn.Linear(c.d_ff, c.d_model))
        self.drop = nn.Dropout(c.dropout)
        self.attn_dropout = c.dropout

    def qkv(self, x: torch.Tensor, rot) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Queries, keys and values (B, heads, T, head_dim) of x (B, T, d); rotary applied (to
        queries and keys in one go: a sampling step is many small ops)."""
        b, t, _ = x.shape
        qkv = self.qkv_proj(self.norm1(x)).view(b, t, 3, self.heads, self.head_dim)
        qk, v = qkv[:, :, :2], qkv[:, :, 2]
        if rot is not None:
            qk = apply_rotary(qk, rot[0][:, None, None, :], rot[1][:, None, None, :])
        return qk[:, :, 0].transpose(1, 2), qk[:, :, 1].transpose(1, 2), v.transpose(1, 2)

    def finish(self, x: torch.Tensor, q, k, v, mask, k_transposed: bool = False) -> torch.Tensor:
        """Attention of q over k, v (mask None: causal when q is several positions, else all
        keys; k_transposed: k is (B, heads, head_dim, keys)), then the residual branches."""
        b, t, d = x.shape
        drop = self.attn_dropout if self.training else 0.0
        if t == 1 and not drop:
            # one query (sampling): two small matmuls beat SDPA's CPU kernel (1.4 vs 2.2 ms a layer,
            # batch 16, 256 cached positions, measured), same numbers
            scores = (q.contiguous() @ (k if k_transposed else k.transpose(-1, -2))) / math.sqrt(self.head_dim)
            if mask is not None:
                scores = (
                    scores + mask.to(scores.dtype) if mask.is_floating_point() else scores.masked_fill(~mask, -math.inf)
                )
            att = torch.softmax(scores, dim=-1) @ v
        elif mask is None:
            k = k.transpose(-1, -2) if k_transposed else k
            att = F.scaled_dot_product_attention(q, k, v, dropout_p=drop, is_causal=t > 1)
        else:
            k = k.transpose(-1, -2) if k_transposed else k
            att = F.scaled_dot_product_attention(
                q, k, v, attn_mask=mask.to(q.dtype) if mask.is_floating_point() else mask, dropout_p=drop
            )
        x = x + self.drop(self.proj(att.transpose(1, 2).reshape(b, t, d)))
        return x + self.drop(self.mlp(self.norm2(x)))


class TransformerLM(TokenLM):
    def __init__(self, config: TransformerConfig):
        super().__init__()
        if config.d_model % config.heads or (config.d_model // config.heads) % 2:
            raise ValueError(f"d_model {config.d_model} must split into {config.heads} heads of an even size")
        self.config = config
        self.embed = nn.Embedding(config.vocab_size, config.d_model)
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.layers))
        self.norm = nn.LayerNorm(config.d_model)
        self.head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        self.head.weight = self.embed.weight  # tied input and output embeddings
        self.register_buffer("slopes", alibi_slopes(config.heads), persistent=False)
        self._init_weights()

    def _init_weights(self) -> None:
        """GPT-2's: N(0, 0.02), the residual projections scaled by 1 / sqrt(2 x layers)."""
        for name, p in self.named_parameters():
            if p.dim() >= 2:
                std = (
                    0.02 / math.sqrt(2 * self.config.layers) if name.endswith(("proj.weight", "mlp.2.weight")) else 0.02
                )
                nn.init.normal_(p, 0.0, std)
            elif name.endswith("bias"):
                nn.init.zeros_(p)

    def _mask(self, q_pos: torch.Tensor, k_pos: torch.Tensor) -> torch.Tensor | None:
        """The attention mask of queries at q_pos over keys at k_pos: causal and within the
        context (a query sees itself and context - 1 keys before it); ALiBi adds its distance
        penalty. None when SDPA's own masking (causal over several new tokens, or nothing for one
        token over a cache that holds only its window) is exactly that."""
        dist = q_pos[:, None] - k_pos[None, :]
        allowed = (dist >= 0) & (dist < self.config.context)
        if self.config.position == "alibi":
            bias = -self.slopes[:, None, None] * dist[None].float()
            return bias.masked_fill(~allowed[None], float("-inf"))[None]
        t, past = q_pos.shape[0], k_pos.shape[0] - q_pos.shape[0]
        if (t == 1 and past < self.config.context) or (past == 0 and t <= self.config.context):
            return None
        return allowed

    def forward(self, x: torch.Tensor, state: KVCache | None = None) -> tuple[torch.Tensor, KVCache | None]:
        """x: (batch, time) ids, state: the cache of the positions before (None: x starts the
        sequence; a state passed in is updated in place) -> logits (batch, time, vocab), the
        cache including x's positions. With gradients on (training) no cache is built: None."""
        c = self.config.context
        t = x.shape[1]
        start = state.pos if state is not None else 0
        q_pos = torch.arange(start, start + t, device=x.device)
        rot = (
            rotary_angles(q_pos, self.config.d_model // self.config.heads) if self.config.position == "rotary" else None
        )
        h = self.drop(self.embed(x))
        step = state is not None and t == 1
        if step:  # the sampler's case: write the new position into its slot first, then attend
            filled = min(start + 1, c)
            rotary = self.config.position == "rotary"  # the cache holds just the window: no mask
            k_pos = None if rotary else KVCache(state.keys, state.values, start + 1).slot_positions(c)
        else:
            past_pos = state.slot_positions(c) if state is not None else q_pos[:0]
            k_pos = torch.cat([past_pos, q_pos])
        mask = None if k_pos is None else self._mask(q_pos, k_pos)
        cache = state is not None or not torch.is_grad_enabled()
        keys, values = [], []
        slots = q_pos[-min(t, c) :] % c
        for i, block in enumerate(self.blocks):
            q, k, v = block.qkv(h, rot)
            if step:
                kb, vb = state.keys[i], state.values[i]
                kb[..., start % c] = k[:, :, 0]
                vb[:, :, start % c] = v[:, :, 0]
                h = block.finish(h, q, kb[..., :filled], vb[:, :, :filled], mask, k_transposed=True)
            elif not cache:
                h = block.finish(h, q, k, v, mask)
                continue
            else:
                if state is not None:
                    n = past_pos.shape[0]
                    kb, vb = state.keys[i].clone(), state.values[i].clone()
                    k_all = torch.cat([kb[..., :n].transpose(-1, -2), k], dim=2)
                    v_all = torch.cat([vb[:, :, :n], v], dim=2)
                else:
                    vb = k.new_zeros(k.shape[0], k.shape[1], c, k.shape[3])
                    kb = vb.transpose(-1, -2).contiguous()
                    k_all, v_all = k, v
                h = block.finish(h, q, k_all, v_all, mask)
                kb[..., slots] = k[:, :, -slots.shape[0] :].detach().transpose(-1, -2)
                vb[:, :, slots] = v[:, :, -slots.shape[0] :].detach()
            keys.append(kb)
            values.append(vb)
        return self.head(self.norm(h)), KVCache(keys, values, start + t) if cache else None

    @staticmethod
    def keep_rows(state: KVCache, keep: torch.Tensor) -> KVCache:
        """The cache of the batch rows where keep is True (finished pieces leave the batch)."""
        return state.keep_rows(keep)


class TransformerFamily(TokenLMFamily):
    name = "transformer"

    def check_params(self, params: dict[str, Any]) -> None:
        mp, tp = params["model"], params["train"]
        if mp["d_model"] % mp["heads"] or (mp["d_model"] // mp["heads"]) % 2:
            raise ParamsError(
                f"model.d_model = {mp['d_model']} must split into model.heads = {mp['heads']} heads of an even size"
            )
        if tp["seq_len"] > mp["context"]:
            raise ParamsError(
                f"train.seq_len = {tp['seq_len']} is longer than model.context = {mp['context']}: the transformer "
                "sees at most model.context tokens (raise model.context or lower train.seq_len)"
            )

    def build(self, model_params: dict[str, Any], rep: Representation) -> TransformerLM:
        mp = model_params
        return TransformerLM(
            TransformerConfig(
                len(rep.vocab),
                mp["d_model"],
                mp["layers"],
                mp["heads"],
                mp["d_ff"],
                mp["context"],
                mp["dropout"],
                mp["position"],
            )
        )

    def from_config(self, config: dict[str, Any]) -> TransformerLM:
        return TransformerLM(TransformerConfig(**config))


FAMILY = TransformerFamily()
