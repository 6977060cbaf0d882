"""The slice-axis rule, the SR grid (fasr.inference.grid) and the slice stacks (fasr.inference.engine.stacks)."""

from __future__ import annotations

import numpy as np
import pytest

from fasr.data.geometry import sr_affine
from fasr.data.orient import display_volume, slice_stack
from fasr.data.types import Volume
from fasr.inference.engine.stacks import Slicer
from fasr.inference.grid import choose_inplane_axes, plan_sr_grid, spacing_along_axes
from test_geometry import oblique_affine

ISO_REF = np.eye(4)


@pytest.mark.parametrize(
    ("zooms", "shape", "expected"),
    [
        ((4.0, 4.0, 1.0), (60, 60, 155), (0, 1)),  # axial LR of a 1 mm reference: slices keep 1 mm
        ((1.0, 4.0, 4.0), (155, 60, 60), (1, 2)),  # the same stored slices-first
        ((4.0, 1.0, 4.0), (60, 200, 50), (0, 2)),  # coronal
        ((4.0, 4.0, 5.0), (60, 60, 30), (0, 1)),  # thick slices: 5 mm is farther from 4 x 1 mm than 4 mm is
    ],
)
def test_inplane_axes_are_those_coarser_by_the_scale(zooms, shape, expected):
    assert choose_inplane_axes(shape, np.diag([*zooms, 1.0]), ISO_REF, 4) == expected


def test_ties_go_to_finer_reference_then_larger_extent():
    # Isotropic 4 mm LR: the reference's 1 mm axes win over its 3 mm axis.
    ref = np.diag([1.0, 3.0, 1.0, 1.0])
    assert choose_inplane_axes((40, 40, 40), np.diag([4.0, 4.0, 4.0, 1.0]), ref, 4) == (0, 2)
    # Everything isotropic (e.g. a high-resolution target at scale 1): the two largest extents.
    assert choose_inplane_axes((240, 240, 155), np.eye(4), np.eye(4), 1) == (0, 1)
    assert choose_inplane_axes((155, 240, 240), np.eye(4), np.eye(4), 1) == (1, 2)


def test_single_slice_is_always_the_slice_axis():
    assert choose_inplane_axes((1, 64, 64), np.diag([4.0, 4.0, 4.0, 1.0]), ISO_REF, 4) == (1, 2)
    assert choose_inplane_axes((64, 64, 1), np.diag([1.0, 1.0, 9.0, 1.0]), ISO_REF, 4) == (0, 1)


def test_reference_spacing_is_measured_along_the_target_axes():
    # A reference rotated by 90 degrees about z: its first (0.5 mm) axis lies along the target's y axis,
    # its second (2 mm) along x.
    ref = np.array([[0.0, -2.0, 0.0, 0.0], [0.5, 0.0, 0.0, 0.0], [0.0, 0.0, 0.5, 0.0], [0.0, 0.0, 0.0, 1.0]])
    np.testing.assert_allclose(spacing_along_axes(np.eye(4), ref), [2.0, 0.5, 0.5])
    assert choose_inplane_axes((30, 30, 30), np.diag([2.0, 2.0, 2.0, 1.0]), ref, 4) == (1, 2)


def test_plan_sr_grid_with_oblique_lr():
    affine = oblique_affine(zooms=(4.0, 2.0, 4.0))
    ref = oblique_affine(zooms=(1.0, 1.0, 1.0))
    grid = plan_sr_grid((12, 30, 10), affine, ref, 4)
    assert grid.inplane_axes == (0, 2) and grid.slice_axis == 1
    assert grid.shape == (48, 30, 40)
    np.testing.assert_allclose(grid.affine, sr_affine(affine, (4, 4), axes=(0, 2)))
    np.testing.assert_allclose(grid.ref_ratio, (4.0, 4.0))
    forced = plan_sr_grid((12, 30, 10), affine, ref, 2, inplane_axes=(1, 0))
    assert forced.inplane_axes == (0, 1) and forced.shape == (24, 60, 10)


@pytest.mark.parametrize("slice_axis", [0, 1, 2])
def test_slicer_round_trip_and_matches_the_training_slices(slice_axis):
    rng = np.random.default_rng(0)
    volume = rng.normal(size=(5, 6, 7)).astype(np.float32)
    affine = oblique_affine(zooms=(1.0, 2.0, 3.0), angles=(0.2, 0.1, 2.0))
    slicer = Slicer.for_grid(affine, slice_axis)
    stack = slicer.to_stack(volume)
    assert stack.shape[0] == volume.shape[slice_axis]
    np.testing.assert_array_equal(slicer.from_stack(stack), volume)
    # The data layer's slices of the same volume stored slice-last (what the models are trained on).
    order = [a for a in range(3) if a != slice_axis] + [slice_axis]
    slices_last = Volume(data=np.transpose(volume, order), affine=affine @ np.eye(4)[:, [*order, 3]], path="")
    np.testing.assert_array_equal(stack, slice_stack(display_volume(slices_last)))


def test_slicer_shows_brats_axial_slices_radiologically():
    lps = np.diag([-1.0, -1.0, 1.0, 1.0])  # BraTS: voxel x runs to the patient's left, y to posterior
    volume = np.zeros((4, 6, 2), np.float32)
    volume[0, 0, :] = 1.0  # the patient's rightmost, most anterior voxel
    volume[3, 5, :] = 2.0  # leftmost, most posterior
    stack = Slicer.for_grid(lps, 2).to_stack(volume)
    assert stack.shape == (2, 6, 4)  # (slices, rows, columns)
    assert stack[0, 0, 0] == 1.0 and stack[0, 5, 3] == 2.0  # top-left: anterior and patient's right
    # The same anatomy stored RAS (x flipped) gives the same picture.
    ras = np.diag([1.0, -1.0, 1.0, 1.0])
    np.testing.assert_array_equal(Slicer.for_grid(ras, 2).to_stack(volume[::-1]), stack)
