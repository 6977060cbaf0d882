"""Correspondence supervision for the matching branches (ours: the paper trains matching only through the SR loss).

Training pairs are co-registered and the data layer knows the synthetic misalignment it applies, so the true key
of every query is known: the sample carries, for every HR pixel of the target and of the reference, the canvas
coordinates of the anatomy it shows (``PairedSample.hr_coords`` / ``ref_coords``). Pooled onto the 1/4 grid they
give each query cell's true key cell (:func:`true_key_index`). The objective is InfoNCE of the true key against
every key of the image (:func:`correspondence_nce`): ``-log softmax_j(C(i, j) / T)[true(i)]``, with the row
logsumexp accumulated block by block by :func:`fasr.models.matching.softmax_score`, so no full correlation matrix
is ever built, and gradient reaches both the query and the key side (embeddings and the texture extractor).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from fasr.models.matching import MatchLevel, softmax_score

__all__ = ["MatchTarget", "match_target", "true_key_index", "correspondence_nce"]


class MatchTarget(NamedTuple):
    """The true key of every query on the 1/4 grid.

    Attributes:
        index: (B, Nq) long, row-major key cell on the 1/4 grid.
        valid: (B, Nq) bool: the query has content and its true key lies inside the reference crop.
    """

    index: Tensor
    valid: Tensor


def true_key_index(q_coords: Tensor, k_coords: Tensor, tolerance: float) -> tuple[Tensor, Tensor]:
    """Nearest key cell (in anatomy coordinates) of each query cell.

    Args:
        q_coords: (B, 2, Hq, Wq) anatomy coordinates (HR pixels) at each query cell centre.
        k_coords: (B, 2, Hk, Wk) anatomy coordinates shown at each key cell centre.
        tolerance: largest distance (HR pixels) at which the nearest key still counts as the query's own.

    Returns:
        ``(index (B, Nq) long, found (B, Nq) bool)``.
    """
    q = q_coords.flatten(2).transpose(1, 2)  # (B, Nq, 2)
    k = k_coords.flatten(2).transpose(1, 2)  # (B, Nk, 2)
    dist, index = torch.cdist(q.double(), k.double()).min(dim=-1)  # (B, Nq): small (training crops)
    return index, dist <= tolerance


def match_target(hr_coords: Tensor, ref_coords: Tensor, hr: Tensor, cell: int, foreground: float) -> MatchTarget:
    """True keys on the grid with ``cell`` HR pixels per cell, for queries with content.

    Args:
        hr_coords / ref_coords: (B, 2, H, W) anatomy coordinates of target / reference pixels.
        hr: (B, 1, H, W) HR target on [-1, 1] (content mask).
        cell: HR pixels per cell of the query grid (4 for the 1/4 grid).
        foreground: intensity above which a pixel is content.
    """
    q = F.avg_pool2d(hr_coords, cell)  # (B, 2, H/cell, W/cell) cell centres
    k = F.avg_pool2d(ref_coords, cell)  # cells partly outside the slice average to a far-away value (INVALID_COORD)
    index, found = true_key_index(q, k, tolerance=0.75 * cell)
    content = F.avg_pool2d((hr > foreground).float(), cell).flatten(1) > 0.5  # (B, Nq)
    return MatchTarget(index, found & content)


def correspondence_nce(
    levels: list[MatchLevel], target: MatchTarget, temperature: float, match_memory_mib: float
) -> Tensor:
    """InfoNCE of the true key (ours): mean over valid queries of ``-log softmax(C / T)[true key]``.

    Args:
        levels: the correlation the branch matches with (one level, or M-A's summed pyramid).
        target: true keys and which queries count.
        temperature: softmax temperature T.
        match_memory_mib: byte budget of one correlation block.

    Returns:
        Scalar loss (0 with gradient when no query is valid).
    """
    prob = softmax_score(levels, target.index, temperature, match_memory_mib)  # (B, Nq) = softmax at the true key
    nll = -torch.log(prob.clamp_min(1e-38))  # fp32: exp(-2/T - log Nk) stays representable for T >= 0.03
    weight = target.valid.float()
    return (nll * weight).sum() / weight.sum().clamp_min(1.0)
