"""Slice geometry for training samples: centred pad/crop to a fixed size, aligned random crops, joint
flips/90-degree rotations, a random in-plane misalignment of the reference (imperfect registration) and a random
rigid 3-D motion of the reference volume (the patient moving between sequences).

All functions take (..., H, W) tensors on the [-1, 1] scale; padding uses the background value -1.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "BACKGROUND", "canvas_size", "fit_offset", "place", "random_crop_offset", "dihedral", "misalign", "similarity_warp",
    "rotation_matrix", "rigid_plane", "random_motion",
]

BACKGROUND = -1.0


def _toward_zero(value: int, multiple: int) -> int:
    """``value`` rounded toward zero to a multiple of ``multiple``."""
    return int(math.copysign(abs(value) // multiple * multiple, value))


def canvas_size(shape: tuple[int, int], slice_size: int, multiple: int) -> tuple[int, int]:
    """(H, W) slices of native ``shape`` are padded/cropped to: ``slice_size`` squared, or (0) the native size
    rounded up to a multiple of ``multiple``.

    Args:
        shape: native (H, W).
        slice_size: configured size (0: native).
        multiple: the scale (or a multiple of every scale in use).
    """
    if slice_size:
        if slice_size % multiple:
            raise ValueError(f"slice size {slice_size} is not a multiple of {multiple}")
        return slice_size, slice_size
    h, w = (-(-n // multiple) * multiple for n in shape)
    return h, w


def fit_offset(shape: tuple[int, int], size: tuple[int, int], multiple: int) -> tuple[int, int]:
    """(dy, dx) position of a (H, W) slice's top-left corner in a centred (size) canvas (negative: cropped).

    Offsets are multiples of ``multiple`` so the same placement divided by the scale is exact on the LR grid.

    Args:
        shape: (H, W) of the slice.
        size: (H', W') of the canvas.
        multiple: the scale (or a multiple of every scale in use).
    """
    dy, dx = (_toward_zero(math.trunc((s - n) / 2), multiple) for n, s in zip(shape, size))
    return dy, dx


def place(image: Tensor, size: tuple[int, int], offset: tuple[int, int]) -> Tensor:
    """Put ``image`` (..., H, W) with its top-left corner at ``offset`` on a background canvas (..., *size).

    Args:
        image: slices to place.
        size: (H', W') canvas size.
        offset: (dy, dx) from :func:`fit_offset`; negative values crop.
    """
    (h, w), (dy, dx) = image.shape[-2:], offset
    if (h, w) == tuple(size) and offset == (0, 0):
        return image
    canvas = image.new_full((*image.shape[:-2], *size), BACKGROUND)
    y0, y1 = max(0, -dy), min(h, size[0] - dy)  # source rows that land on the canvas
    x0, x1 = max(0, -dx), min(w, size[1] - dx)
    canvas[..., y0 + dy : y1 + dy, x0 + dx : x1 + dx] = image[..., y0:y1, x0:x1]
    return canvas


def random_crop_offset(
    size: tuple[int, int], patch: int, multiple: int | tuple[int, int], generator: torch.Generator | None
) -> tuple[int, int]:
    """Random (y, x) top-left corner of a ``patch`` square inside ``size``, multiples of ``multiple``.

    Args:
        size: (H, W) of the slice.
        patch: crop size (a multiple of ``multiple``).
        multiple: the scale, so the LR crop starts at (y, x) / scale exactly; or (rows, columns) multiples (a
            through-plane sample's rows start at a thick slice's edge).
        generator: random source (None: torch's global generator).
    """
    my, mx = (multiple, multiple) if isinstance(multiple, int) else multiple
    ny, nx = (size[0] - patch) // my + 1, (size[1] - patch) // mx + 1
    y = int(torch.randint(ny, (1,), generator=generator)) * my
    x = int(torch.randint(nx, (1,), generator=generator)) * mx
    return y, x


def dihedral(image: Tensor, rotations: int, flip: bool) -> Tensor:
    """One of the 8 flips/90-degree rotations of (..., H, W) (applied jointly to HR, Ref and LR).

    Args:
        image: slices.
        rotations: number of counter-clockwise quarter turns.
        flip: mirror left-right after rotating.
    """
    image = torch.rot90(image, rotations, dims=(-2, -1))
    return image.flip(-1) if flip else image


def similarity_warp(image: Tensor, shift: Tensor, angle: Tensor, zoom: Tensor) -> Tensor:
    """Similarity transform about the slice centre; bilinear, pixels from outside the slice are background.

    Args:
        image: (B, C, H, W) slices.
        shift: (B, 2) float64 (x, y) translation in pixels: content moves by +shift.
        angle: (B,) float64 rotation in radians.
        zoom: (B,) float64 scale factor.
    """
    b, _, h, w = image.shape
    shift, angle, zoom = (t.to(torch.float64).cpu() for t in (shift, angle, zoom))
    # Output pixel -> input pixel about the centre: p_in = R(angle) p_out / zoom - shift, in pixel units;
    # affine_grid works in [-1, 1] coordinates, so conjugate by D = diag(2 / w, 2 / h).
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    theta = torch.zeros(b, 2, 3, dtype=torch.float64)
    theta[:, 0, 0], theta[:, 0, 1] = cos, -sin * h / w
    theta[:, 1, 0], theta[:, 1, 1] = sin * w / h, cos
    theta[:, 0, 2], theta[:, 1, 2] = -2 * shift[:, 0] / w, -2 * shift[:, 1] / h
    theta = theta.to(device=image.device, dtype=image.dtype)
    grid = F.affine_grid(theta, list(image.shape), align_corners=False)  # (B, H, W, 2)
    # Sample (image - background) with zero padding so outside pixels become the background.
    warped = F.grid_sample(image - BACKGROUND, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return warped + BACKGROUND


def misalign(
    image: Tensor, max_shift: float, max_rotation: float, max_scale: float, generator: torch.Generator | None
) -> Tensor:
    """Random :func:`similarity_warp` (simulated registration error of the reference).

    Shift, rotation and scale are drawn uniformly from ``[-max, max]``.

    Args:
        image: (B, C, H, W) slices.
        max_shift: pixels, per axis.
        max_rotation: degrees.
        max_scale: fraction (0.05: zoom in [0.95, 1.05]).
        generator: random source (None: torch's global generator).
    """
    u = 2 * torch.rand(image.shape[0], 4, generator=generator, dtype=torch.float64) - 1  # (B, 4) in [-1, 1]
    shift = torch.stack([u[:, 2], u[:, 3]], dim=1) * max_shift  # (B, 2) pixels (x, y)
    return similarity_warp(image, shift, torch.deg2rad(u[:, 0] * max_rotation), 1 + u[:, 1] * max_scale)


def rotation_matrix(angles: Tensor) -> Tensor:
    """(3, 3) float64 rotation ``Rz @ Ry @ Rx`` from (3,) angles in radians about the (z, y, x) voxel axes.

    Args:
        angles: (3,) radians about the (z, y, x) voxel axes.
    """
    az, ay, ax = (float(a) for a in angles)
    cz, sz, cy, sy, cx, sx = math.cos(az), math.sin(az), math.cos(ay), math.sin(ay), math.cos(ax), math.sin(ax)
    # Axes ordered (z, y, x): a rotation "about z" mixes y and x, and so on.
    rz = torch.tensor([[1, 0, 0], [0, cz, -sz], [0, sz, cz]], dtype=torch.float64)
    ry = torch.tensor([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]], dtype=torch.float64)
    rx = torch.tensor([[cx, -sx, 0], [sx, cx, 0], [0, 0, 1]], dtype=torch.float64)
    return rz @ ry @ rx


def rigid_plane(
    volume: Tensor, z: int, spacing: tuple[float, float, float], rotation: Tensor, shift: Tensor,
    size: tuple[int, int], offset: tuple[int, int],
) -> tuple[Tensor, Tensor, Tensor]:
    """Slice ``z`` of ``volume`` after a rigid 3-D motion, on a canvas: what a 2-D reference slice shows when the
    patient moved between the two sequences (through-plane included).

    The moved volume is ``moved(p) = volume(R (p - c) + c + t)`` in mm about the volume centre ``c``; output canvas
    pixel (yc, xc) is native pixel (yc - dy, xc - dx) of slice ``z``. Trilinear; outside the volume is background.

    Args:
        volume: (Z, H, W) slice stack.
        z: slice index.
        spacing: (dz, dy, dx) voxel size in mm.
        rotation: (3,) float64 radians about the (z, y, x) axes (:func:`rotation_matrix`).
        shift: (3,) float64 translation t in mm, (z, y, x).
        size: (H', W') canvas.
        offset: (dy, dx) of the native slice on the canvas (:func:`fit_offset`).

    Returns:
        The moved slice (1, 1, H', W'), the canvas (y, x) coordinates each pixel was sampled from (1, 2, H', W'),
        and whether the sample came from inside the volume (1, 1, H', W') bool.
    """
    depth, height, width = volume.shape
    sp = torch.tensor(spacing, dtype=torch.float64)
    ys, xs = torch.meshgrid(
        torch.arange(size[0], dtype=torch.float64) - offset[0], torch.arange(size[1], dtype=torch.float64) - offset[1],
        indexing="ij",
    )
    points = torch.stack([torch.full_like(ys, float(z)), ys, xs], dim=-1) * sp  # (H', W', 3) mm, (z, y, x)
    centre = (torch.tensor([depth, height, width], dtype=torch.float64) - 1) / 2 * sp
    source = ((points - centre) @ rotation_matrix(rotation).T + centre + shift) / sp  # (H', W', 3) voxels
    extent = torch.tensor([depth, height, width], dtype=torch.float64)
    inside = ((source > -0.5) & (source < extent - 0.5)).all(-1)  # (H', W')
    grid = ((2 * source + 1) / extent - 1).flip(-1)  # (H', W', 3) normalised (x, y, z) for grid_sample
    grid = grid[None, None].to(torch.float32)  # (1, 1, H', W', 3)
    vol = (volume.to(torch.float32) - BACKGROUND)[None, None]  # (1, 1, Z, H, W)
    plane = F.grid_sample(vol, grid, mode="bilinear", padding_mode="zeros", align_corners=False)[:, :, 0] + BACKGROUND
    coords = (source[..., 1:] + torch.tensor(offset, dtype=torch.float64)).permute(2, 0, 1)[None].float()
    return plane, coords, inside[None, None]


def random_motion(
    max_mm: float, max_deg: float, generator: torch.Generator | None
) -> tuple[Tensor, Tensor]:
    """A random rigid motion: (3,) rotation in radians and (3,) shift in mm, each component uniform in
    ``[-max, max]`` (continuous: sub-voxel and through-plane included).

    Args:
        max_mm: largest shift per axis.
        max_deg: largest rotation per axis, degrees.
        generator: random source (None: torch's global generator).
    """
    u = 2 * torch.rand(6, generator=generator, dtype=torch.float64) - 1
    return torch.deg2rad(u[:3] * max_deg), u[3:] * max_mm
