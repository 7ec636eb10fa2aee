"""Softmax cross-entropy over the hashtag vocabulary, fused with the output layer.

At paper scale the logits of all training posts are 171,000 x 15,751 floats (10.8 GB), so they
exist one chunk of posts at a time. Autograd would keep each chunk's logits for backward or,
checkpointed, compute them twice and softmax them twice. Here the gradient of the softmax
cross-entropy is closed-form (dL/dlogits = mass * softmax - target), so each chunk's gradients
with respect to the post vectors, the weight and the bias are computed right after its loss,
while its logits are at hand; backward only scales them. One matrix product pass forward and
two for the gradients, one exp pass, and nothing [rows, V] kept between chunks.
"""

from __future__ import annotations

import torch


class _LinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx,
        vectors: torch.Tensor,
        weight: torch.Tensor,
        bias: torch.Tensor,
        row: torch.Tensor,
        column: torch.Tensor,
        target: torch.Tensor,
        chunk: int,
        with_grad: bool,
    ) -> torch.Tensor:
        total = vectors.new_zeros(())
        grads = (
            (torch.empty_like(vectors), torch.zeros_like(weight), torch.zeros_like(bias))
            if with_grad
            else None
        )
        # entries of each chunk of rows: `row` is sorted
        starts = torch.arange(0, len(vectors) + chunk, chunk, device=row.device)
        bounds = torch.searchsorted(row, starts).tolist()
        for number, start in enumerate(range(0, len(vectors), chunk)):
            x = vectors[start : start + chunk]
            first, last = bounds[number], bounds[number + 1]
            r, c, t = row[first:last] - start, column[first:last], target[first:last]
            logits = torch.addmm(bias, x, weight.t())
            picked = logits[r, c]
            top = logits.amax(dim=1, keepdim=True)
            logits.sub_(top).exp_()  # in place: exp(logit - max)
            norm = logits.sum(dim=1, keepdim=True)
            log_norm = (top + norm.log()).squeeze(1)
            total = total - (t * (picked - log_norm[r])).sum()
            if grads is None:
                continue
            mass = x.new_zeros(len(x)).index_add_(0, r, t)  # sum of a post's target weights
            logits.mul_(mass[:, None] / norm)  # mass * softmax
            logits.index_put_((r, c), -t, accumulate=True)  # minus the target distribution
            grads[0][start : start + chunk] = logits @ weight
            grads[1].addmm_(logits.t(), x)
            grads[2].add_(logits.sum(dim=0))
        if grads is not None:
            ctx.save_for_backward(*grads)
        return total

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        vectors, weight, bias = ctx.saved_tensors
        return grad * vectors, grad * weight, grad * bias, None, None, None, None, None


def linear_cross_entropy(
    vectors: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor,
    targets: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    chunk: int,
) -> torch.Tensor:
    """Summed cross-entropy of softmax(vectors @ weight.T + bias) against sparse targets.

    `targets` is (row, column, weight) with `row` sorted: row i of `vectors` wants vocabulary
    entry `column` with probability `weight`. Equals
    `-(log_softmax(logits)[row, column] * weight).sum()` in value and gradients.
    """
    row, column, target = targets
    with_grad = torch.is_grad_enabled() and any(t.requires_grad for t in (vectors, weight, bias))
    return _LinearCrossEntropy.apply(vectors, weight, bias, row, column, target, chunk, with_grad)
