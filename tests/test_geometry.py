"""Voxel-grid geometry: SR-grid affines keep world coordinates, resampling follows the affines, coverage."""

from __future__ import annotations

import numpy as np
import pytest
from nibabel.affines import rescale_affine

from fasr.data.geometry import check_coverage, resample_to_grid, sr_affine, voxel_to_world, world_to_voxel
from fasr.errors import FasrError


def oblique_affine(zooms=(1.2, 0.9, 3.0), angles=(0.3, -0.2, 0.45), origin=(-80.0, 35.0, 12.5)) -> np.ndarray:
    """A voxel -> world matrix with rotations about all three axes and anisotropic voxels."""
    a, b, c = angles
    rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    ry = np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
    rz = np.array([[np.cos(c), -np.sin(c), 0], [np.sin(c), np.cos(c), 0], [0, 0, 1]])
    affine = np.eye(4)
    affine[:3, :3] = rz @ ry @ rx @ np.diag(zooms)
    affine[:3, 3] = origin
    return affine


def linear_field(affine: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    """Volume whose value at each voxel centre is a fixed linear function of its world position."""
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), axis=-1)  # (X, Y, Z, 3)
    xyz = voxel_to_world(affine, ijk)
    return (0.5 * xyz[..., 0] - 0.25 * xyz[..., 1] + 0.75 * xyz[..., 2] + 10.0).astype(np.float32)


@pytest.mark.parametrize("scale", [(4, 4), (2, 3)])
def test_sr_affine_keeps_world_coordinates_of_points(scale):
    coarse = oblique_affine()
    fine = sr_affine(coarse, scale)
    s = np.array([scale[0], scale[1], 1.0])
    # Any point: coarse coordinate c and fine coordinate (c + 0.5) * s - 0.5 (in-plane) name the same place.
    c = np.array([[0.0, 0.0, 0.0], [-0.5, -0.5, 2.0], [7.3, 2.1, 4.0], [15.5, 11.5, 9.0]])
    f = c.copy()
    f[:, :2] = (c[:, :2] + 0.5) * s[:2] - 0.5
    np.testing.assert_allclose(voxel_to_world(fine, f), voxel_to_world(coarse, c), atol=1e-9)
    # Voxel size divided by the scale in-plane, slice spacing kept.
    np.testing.assert_allclose(np.linalg.norm(fine[:3, :3], axis=0), np.array([1.2, 0.9, 3.0]) / s)


def test_sr_affine_keeps_field_of_view_centre_unlike_rescale_affine():
    coarse = oblique_affine()
    shape = (16, 12, 5)
    fine_shape = (64, 48, 5)
    centre = lambda aff, shp: voxel_to_world(aff, (np.array(shp) - 1) / 2.0)  # noqa: E731
    np.testing.assert_allclose(centre(sr_affine(coarse, (4, 4)), fine_shape), centre(coarse, shape), atol=1e-9)
    # The refined grid tiles exactly the old extent: its corner (-0.5, -0.5) is the old corner.
    fine = sr_affine(coarse, (4, 4))
    corner = np.array([-0.5, -0.5, 0.0])
    np.testing.assert_allclose(voxel_to_world(fine, corner), voxel_to_world(coarse, corner), atol=1e-9)
    # nibabel's rescale_affine moves the centre by (1 - 1/4) / 2 = 0.375 old voxels along each refined axis.
    nib_fine = rescale_affine(coarse, shape, np.linalg.norm(fine[:3, :3], axis=0), fine_shape)
    shift = centre(nib_fine, fine_shape) - centre(coarse, shape)
    np.testing.assert_allclose(shift, -0.375 * (coarse[:3, 0] + coarse[:3, 1]), atol=1e-9)


def test_sr_affine_on_other_axes():
    coarse = oblique_affine()
    fine = sr_affine(coarse, (2, 2), axes=(1, 2))
    c = np.array([3.0, 1.25, 2.0])
    f = np.array([3.0, (1.25 + 0.5) * 2 - 0.5, (2.0 + 0.5) * 2 - 0.5])
    np.testing.assert_allclose(voxel_to_world(fine, f), voxel_to_world(coarse, c), atol=1e-9)


def test_world_to_voxel_inverts_voxel_to_world():
    affine = oblique_affine()
    ijk = np.array([[1.0, 2.0, 3.0], [-0.5, 7.25, 0.0]])
    np.testing.assert_allclose(world_to_voxel(affine, voxel_to_world(affine, ijk)), ijk, atol=1e-9)


def test_resample_identity_grid_returns_data():
    rng = np.random.default_rng(0)
    data = rng.normal(size=(6, 5, 4)).astype(np.float32)
    affine = oblique_affine()
    for order in (0, 1, 3):
        np.testing.assert_allclose(resample_to_grid(data, affine, data.shape, affine, order=order), data, atol=1e-4)


def test_resample_follows_world_coordinates_between_oblique_grids():
    src_affine = oblique_affine(zooms=(1.0, 1.0, 1.0))
    src_shape = (40, 40, 40)
    src = linear_field(src_affine, src_shape)
    # A smaller, differently rotated grid in the middle of the source field of view.
    dst_affine = oblique_affine(zooms=(0.7, 1.3, 2.0), angles=(0.1, 0.25, 0.5))
    centre_src = voxel_to_world(src_affine, np.array([19.5, 19.5, 19.5]))
    dst_shape = (12, 10, 6)
    dst_affine[:3, 3] += centre_src - voxel_to_world(dst_affine, (np.array(dst_shape) - 1) / 2.0)
    out = resample_to_grid(src, src_affine, dst_shape, dst_affine, order=1)
    # Trilinear interpolation of a linear field is exact.
    np.testing.assert_allclose(out, linear_field(dst_affine, dst_shape), rtol=1e-4, atol=1e-3)


def test_resample_outside_field_of_view_is_zero_and_border_half_voxel_is_kept():
    affine = np.eye(4)
    data = np.full((4, 4, 2), 5.0, dtype=np.float32)
    # dst grid shifted by 3 voxels along x: dst voxel i sits at src coordinate i + 3.
    dst_affine = np.eye(4)
    dst_affine[0, 3] = 3.0
    out = resample_to_grid(data, affine, (4, 4, 2), dst_affine)
    np.testing.assert_array_equal(out[0], 5.0)
    np.testing.assert_array_equal(out[1:], 0.0)
    # The refined grid's outer voxels (at src coordinate -0.375) are inside the field of view: edge value.
    fine = resample_to_grid(data, affine, (16, 16, 2), sr_affine(affine, (4, 4)))
    np.testing.assert_array_equal(fine, 5.0)


def test_check_coverage_full_partial_and_error_names_files():
    affine = oblique_affine()
    shape = (20, 16, 6)
    assert check_coverage(shape, affine, (80, 64, 6), sr_affine(affine, (4, 4)), "ref.nii", "lr.nii") == 1.0
    shifted = affine.copy()
    shifted[:3, 3] += affine[:3, 0] * 10  # half the x extent
    fraction = check_coverage(shape, affine, shape, shifted, "ref.nii", "lr.nii", min_fraction=0.0)
    assert fraction == pytest.approx(0.5)
    with pytest.raises(FasrError, match=r"'ref\.nii' covers only 50% of the field of view of 'lr\.nii'"):
        check_coverage(shape, affine, shape, shifted, "ref.nii", "lr.nii")
