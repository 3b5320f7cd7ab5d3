"""The training losses: symmetric InfoNCE with an optional margin, the pairwise sigmoid loss, the L2-SP anchor."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def info_nce(a: torch.Tensor, b: torch.Tensor, temperature: float, margin: float = 0.0) -> torch.Tensor:
    """Symmetric InfoNCE over a batch of (shop, photo) pairs, row i of `a` matching row i of `b`.

    With `margin` > 0 the true pair's cosine is lowered by `margin` before the softmax (an additive
    margin, as in CosFace): the loss only relaxes once the true pair beats every other pair in the batch
    by that much, which is what a fixed abstain threshold needs (right matches scoring clearly above the
    best wrong one).
    """
    cosines = a @ b.t()
    if margin:
        cosines = cosines - margin * torch.eye(len(a), dtype=cosines.dtype)
    logits = cosines / temperature
    target = torch.arange(len(a))
    return (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target)) / 2


class PairSigmoid(nn.Module):
    """The pairwise sigmoid loss of SigLIP: each (shop, photo) pair in the batch is its own yes/no question
    against one learned threshold on the scaled cosine, so scores become comparable across queries (what a
    fixed abstain threshold needs); the softmax of InfoNCE only ranks the products within a row.

    The scale starts at 10 and the threshold at cosine 0.5; both are learned (their own learning rate, see
    `train`) and are not part of the exported model.
    """

    def __init__(self) -> None:
        super().__init__()
        self.log_scale = nn.Parameter(torch.tensor(math.log(10.0)))
        self.bias = nn.Parameter(torch.tensor(-5.0))

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        logits = (a @ b.t()) * self.log_scale.exp() + self.bias
        signs = 2 * torch.eye(len(a), dtype=logits.dtype) - 1  # +1 for the true pairs, -1 for all others
        return -F.logsigmoid(signs * logits).sum() / len(a)


class Anchor:
    """Keeps what the starting weights (ImageNet) knew, L2-SP style (Li et al., 2018): ½‖θ − θ_start‖² over
    the trained backbone weights, a pull back towards where fine-tuning started; nearly free, unlike
    distilling from a second, frozen backbone (which doubled the step time here)."""

    def __init__(self, params: list[nn.Parameter]) -> None:
        self.params = params
        self.start = [p.detach().clone() for p in params]

    def loss(self) -> torch.Tensor:
        return sum(((p - s) ** 2).sum() for p, s in zip(self.params, self.start, strict=True)) / 2  # type: ignore[return-value]
