"""A Qwen2-style decoder in plain PyTorch, with the module names of Hugging Face's Qwen2.

Same architecture as the ONNX LoRA session's presets (client/trainer/): token embedding, per layer
RMSNorm → attention (q/k/v with bias, grouped-query heads, rotary positions) → RMSNorm → SwiGLU MLP,
final RMSNorm, LM head (tied to the embedding when the config says so). Because the parameter
names match Hugging Face's, a Qwen2 checkpoint's weights load into it and a LoRA adapter saved from
it has PEFT's key names.

Attention never crosses documents: ``document_ids`` (client/batch.ts) give each packed document of
a row its own block of the causal mask; padding (document 0) only sees itself so no row is empty.
"""
import math
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class ModelConfig:
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    rope_theta: float = 1_000_000.0
    rms_norm_eps: float = 1e-6
    tie_word_embeddings: bool = True
    #: Defaults to hidden_size / num_attention_heads (Qwen3 checkpoints set it explicitly).
    head_dim: Optional[int] = None
    #: Qwen2 has biases on q/k/v; Qwen3 does not.
    qkv_bias: bool = True
    #: Qwen3 RMS-normalises q and k per head (q_norm, k_norm).
    qk_norm: bool = False

    def __post_init__(self):
        if self.head_dim is None:
            self.head_dim = self.hidden_size // self.num_attention_heads

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        """From the trainer's resolved preset or a Hugging Face config.json (model_type qwen2 or qwen3)."""
        values = dict(d)
        if values.get("model_type") == "qwen3":
            values.setdefault("qk_norm", True)
            values.setdefault("qkv_bias", bool(values.get("attention_bias", False)))
        fields = cls.__dataclass_fields__
        return cls(**{k: values[k] for k in fields if k in values and values[k] is not None})


class RMSNorm(nn.Module):
    def __init__(self, size: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(size))
        self.eps = eps

    def forward(self, x):
        variance = x.float().pow(2).mean(-1, keepdim=True)
        return (x.float() * torch.rsqrt(variance + self.eps)).to(x.dtype) * self.weight


def rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


class Attention(nn.Module):
    def __init__(self, c: ModelConfig):
        super().__init__()
        self.heads, self.kv_heads, self.head_dim = c.num_attention_heads, c.num_key_value_heads, c.head_dim
        self.q_proj = nn.Linear(c.hidden_size, self.heads * self.head_dim, bias=c.qkv_bias)
        self.k_proj = nn.Linear(c.hidden_size, self.kv_heads * self.head_dim, bias=c.qkv_bias)
        self.v_proj = nn.Linear(c.hidden_size, self.kv_heads * self.head_dim, bias=c.qkv_bias)
        self.o_proj = nn.Linear(self.heads * self.head_dim, c.hidden_size, bias=False)
        if c.qk_norm:
            self.q_norm = RMSNorm(self.head_dim, c.rms_norm_eps)
            self.k_norm = RMSNorm(self.head_dim, c.rms_norm_eps)
        self.qk_norm = c.qk_norm

    def forward(self, x, cos, sin, mask):
        b, t, _ = x.shape
        q = self.q_proj(x).view(b, t, self.heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(b, t, self.kv_heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(b, t, self.kv_heads, self.head_dim).transpose(1, 2)
        if self.qk_norm:
            q, k = self.q_norm(q), self.k_norm(k)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        if self.kv_heads != self.heads:
            k = k.repeat_interleave(self.heads // self.kv_heads, dim=1)
            v = v.repeat_interleave(self.heads // self.kv_heads, dim=1)
        if hasattr(F, "scaled_dot_product_attention"):
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        else:  # torch < 2.0 (Debian 12's python3-torch 1.13)
            scores = (q @ k.transpose(-1, -2)) / math.sqrt(self.head_dim)
            scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
            out = scores.softmax(-1) @ v
        return self.o_proj(out.transpose(1, 2).reshape(b, t, self.heads * self.head_dim))


class MLP(nn.Module):
    def __init__(self, c: ModelConfig):
        super().__init__()
        self.gate_proj = nn.Linear(c.hidden_size, c.intermediate_size, bias=False)
        self.up_proj = nn.Linear(c.hidden_size, c.intermediate_size, bias=False)
        self.down_proj = nn.Linear(c.intermediate_size, c.hidden_size, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class DecoderLayer(nn.Module):
    def __init__(self, c: ModelConfig):
        super().__init__()
        self.input_layernorm = RMSNorm(c.hidden_size, c.rms_norm_eps)
        self.self_attn = Attention(c)
        self.post_attention_layernorm = RMSNorm(c.hidden_size, c.rms_norm_eps)
        self.mlp = MLP(c)

    def forward(self, x, cos, sin, mask):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, mask)
        return x + self.mlp(self.post_attention_layernorm(x))


class Qwen2Body(nn.Module):
    def __init__(self, c: ModelConfig):
        super().__init__()
        self.embed_tokens = nn.Embedding(c.vocab_size, c.hidden_size)
        self.layers = nn.ModuleList(DecoderLayer(c) for _ in range(c.num_hidden_layers))
        self.norm = RMSNorm(c.hidden_size, c.rms_norm_eps)


class Qwen2ForCausalLM(nn.Module):
    """``forward`` returns the final hidden states; ``lm_head`` is applied by the loss, only where a label is."""

    def __init__(self, c: ModelConfig):
        super().__init__()
        self.config = c
        self.model = Qwen2Body(c)
        self.lm_head = nn.Linear(c.hidden_size, c.vocab_size, bias=False)
        if c.tie_word_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight
        inv_freq = 1.0 / (c.rope_theta ** (torch.arange(0, c.head_dim, 2, dtype=torch.float32) / c.head_dim))
        self.register_buffer("inv_freq", inv_freq, persistent=False)

    def init_weights(self, generator: torch.Generator) -> None:
        """Seeded N(0, 0.02) for matrices and embeddings, zero biases, unit norms (HF's Qwen2 init)."""
        with torch.no_grad():
            for name, p in self.named_parameters():
                if name.endswith("norm.weight"):
                    p.fill_(1.0)
                elif name.endswith(".bias"):
                    p.zero_()
                else:
                    p.copy_(torch.randn(p.shape, generator=generator) * 0.02)

    def forward(self, input_ids, position_ids, document_ids):
        b, t = input_ids.shape
        x = self.model.embed_tokens(input_ids.long())
        freqs = position_ids.float()[..., None] * self.inv_freq
        emb = torch.cat((freqs, freqs), dim=-1)[:, None]  # [B, 1, T, head_dim]
        cos, sin = emb.cos().to(x.dtype), emb.sin().to(x.dtype)
        causal = torch.ones(t, t, dtype=torch.bool, device=input_ids.device).tril()
        same_doc = document_ids[:, :, None] == document_ids[:, None, :]
        mask = causal & same_doc & (document_ids[:, None, :] != 0)
        mask = (mask | torch.eye(t, dtype=torch.bool, device=input_ids.device))[:, None]
        for layer in self.model.layers:
            x = layer(x, cos, sin, mask)
        return self.model.norm(x)


def loss_positions(labels, document_ids):
    """Where position i predicts label i+1: that label is not -100 and i, i+1 lie in one document (not padding)."""
    target = labels[:, 1:].long()
    keep = (target != -100) & (document_ids[:, :-1] != 0) & (document_ids[:, 1:] == document_ids[:, :-1])
    return keep, target


def causal_lm_loss(hidden, lm_head, labels, document_ids):
    """Summed next-token cross-entropy and the number of tokens it sums over (the ONNX session's LOSS_SUM).

    The LM head runs only at the loss positions: with a 151,936-word vocabulary, full logits would
    be the largest tensor of the step.
    """
    keep, target = loss_positions(labels, document_ids)
    count = int(keep.sum())
    if count == 0:
        return None, 0
    logits = lm_head(hidden[:, :-1][keep]).float()
    return F.cross_entropy(logits, target[keep], reduction="sum"), count
