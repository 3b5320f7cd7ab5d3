"""Several embedding nets exported as one embedder.

Each member's unit vector is scaled by √weight and the results are concatenated and L2-normalised, so
the inner product of two ensemble vectors is the weighted mean of the members' cosine similarities:
scores stay on the scale of a single model, and FAISS, the abstain threshold and the service need no
change (the index only sees a longer vector).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


class EnsembleNet(nn.Module):
    def __init__(self, members: Sequence[nn.Module], weights: Sequence[float]) -> None:
        super().__init__()
        if not members or len(members) != len(weights):
            raise ValueError("an ensemble needs one weight per member, and at least one member")
        if any(w <= 0 for w in weights):
            raise ValueError(f"member weights must be positive, got {list(weights)}")
        self.members = nn.ModuleList(members)
        self.scales: torch.Tensor
        self.register_buffer("scales", torch.tensor([w**0.5 for w in weights], dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = [member(x) * self.scales[i] for i, member in enumerate(self.members)]
        return F.normalize(torch.cat(parts, dim=1), dim=1)
