"""A LoRA layer of our own (Hu et al. 2021), laid out like PEFT's so adapters are interchangeable.

``y = base(x) + (x Aᵀ Bᵀ) · alpha / r`` with the base frozen, A ∈ R^{r×in} initialised like PEFT
(Kaiming-uniform, a = √5), B ∈ R^{out×r} zero, so training starts from the base model exactly.
"""
import math

import torch
from torch import nn


class LoRALinear(nn.Module):
    def __init__(self, base: nn.Linear, r: int, alpha: float, generator: torch.Generator):
        super().__init__()
        self.base = base
        for p in base.parameters():
            p.requires_grad_(False)
        self.r = r
        self.scale = alpha / r
        bound = 1.0 / math.sqrt(base.in_features)  # kaiming_uniform_(a=√5) on [r, in]
        self.lora_A = nn.Parameter((torch.rand(r, base.in_features, generator=generator) * 2 - 1) * bound)
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, r))

    def forward(self, x):
        return self.base(x) + (x @ self.lora_A.t().to(x.dtype)) @ self.lora_B.t().to(x.dtype) * self.scale


def apply_lora(model: nn.Module, targets, r: int, alpha: float, generator: torch.Generator):
    """Replaces every ``nn.Linear`` whose attribute name is in ``targets``; returns {module path: layer}."""
    replaced = {}
    for path, module in list(model.named_modules()):
        for child_name, child in list(module.named_children()):
            if child_name in targets and isinstance(child, nn.Linear):
                layer = LoRALinear(child, r, alpha, generator)
                setattr(module, child_name, layer)
                replaced[f"{path}.{child_name}" if path else child_name] = layer
    if not replaced:
        raise ValueError(f"no linear layer named {sorted(targets)} in the model")
    return replaced
