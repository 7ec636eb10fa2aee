"""Modality attention (DESIGN section 6): a post's L units of one modality -> one vector.

For units x_1..x_L with a mask: u_j = tanh(W x_j + b), a_j = softmax_j(q . u_j) over the
unmasked units only, h = sum_j a_j x_j, then a linear projection to the hidden size. A post
with no unmasked unit gets h = 0 (and a False in the returned `present`), never NaN.
"""

from __future__ import annotations

import torch
from torch import nn


class ModalityAttention(nn.Module):
    """Additive attention pooling over the units of one modality, then a projection."""

    def __init__(self, input_dim: int, hidden_dim: int, attention_dim: int | None = None) -> None:
        super().__init__()
        attention_dim = attention_dim or hidden_dim
        self.score_proj = nn.Linear(input_dim, attention_dim)
        self.query = nn.Parameter(torch.randn(attention_dim) / attention_dim**0.5)
        self.output = nn.Linear(input_dim, hidden_dim)

    def weights(self, units: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Attention weights [B, L]: zero on masked units; rows with no unit are all zero."""
        scores = torch.tanh(self.score_proj(units)) @ self.query
        scores = scores.masked_fill(~mask, float("-inf"))
        has_unit = mask.any(dim=1, keepdim=True)
        # softmax of an all -inf row is NaN: give such rows zeros instead
        safe = torch.where(has_unit, scores, torch.zeros_like(scores))
        return torch.where(has_unit, torch.softmax(safe, dim=1), torch.zeros_like(scores))

    def forward(self, units: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """units float [B, L, D], mask bool [B, L] -> (vectors [B, hidden], present [B])."""
        weights = self.weights(units, mask)
        pooled = torch.einsum("bl,bld->bd", weights, units)
        present = mask.any(dim=1)
        return self.output(pooled) * present[:, None], present


class MeanPooling(nn.Module):
    """The 'no attention' ablation: the mean of the unmasked units, then the same projection."""

    def __init__(self, input_dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.output = nn.Linear(input_dim, hidden_dim)

    def forward(self, units: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        counts = mask.sum(dim=1, keepdim=True)
        pooled = (units * mask[..., None]).sum(dim=1) / counts.clamp_min(1)
        present = mask.any(dim=1)
        return self.output(pooled) * present[:, None], present
