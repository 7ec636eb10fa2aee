from __future__ import annotations

import torch

from mishon.model.attention import MeanPooling, ModalityAttention


def batch() -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    units = torch.randn(3, 4, 6)
    mask = torch.tensor(
        [[True, True, False, False], [False, False, False, False], [True, True, True, True]]
    )
    return units, mask


def test_masked_units_get_zero_weight_and_weights_sum_to_one() -> None:
    attention = ModalityAttention(6, 5)
    units, mask = batch()
    weights = attention.weights(units, mask)
    assert weights.shape == (3, 4)
    assert (weights[~mask] == 0).all()
    torch.testing.assert_close(weights.sum(dim=1), torch.tensor([1.0, 0.0, 1.0]))
    assert not torch.isnan(weights).any()


def test_masked_units_do_not_change_the_output() -> None:
    attention = ModalityAttention(6, 5)
    units, mask = batch()
    out, present = attention(units, mask)
    changed = units.clone()
    changed[0, 2:] = 1000.0  # masked units of post 0
    again, _ = attention(changed, mask)
    torch.testing.assert_close(again, out)
    assert present.tolist() == [True, False, True]
    assert out.shape == (3, 5) and (out[1] == 0).all()


def test_attention_is_trainable_and_mean_pooling_ignores_masked_units() -> None:
    attention = ModalityAttention(6, 5)
    units, mask = batch()
    out, _ = attention(units, mask)
    out.sum().backward()
    assert attention.query.grad is not None and torch.isfinite(attention.query.grad).all()
    pooling = MeanPooling(6, 5)
    pooled, present = pooling(units, mask)
    expected = pooling.output(units[0, :2].mean(dim=0))
    torch.testing.assert_close(pooled[0], expected)
    assert (pooled[1] == 0).all() and present.tolist() == [True, False, True]
