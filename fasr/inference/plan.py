"""Planning an inference job before any compute: headers only, the output grid, and up-front refusals.

:func:`plan_inference` reads the geometry of the target and the reference (NIfTI headers; DICOM, fastMRI and
2-D slice files are read whole, since their geometry comes with the pixels), decides the super-resolution grid
and refuses, with one line that says what to do, a job that is not in-plane super-resolution by the model's
factor:

* the same file given as target and reference;
* a target finer than the reference (``--lr`` and ``--ref`` swapped);
* a thick-slice target (only one voxel axis coarser than the reference: through-plane super-resolution is not
  what the model does);
* a target already at the reference's resolution;
* in-plane voxels coarser than the reference by another factor than the model's.

It also checks that every output can be written (not an input, not existing unless ``force``, its folder
exists or can be made and is writable) and estimates time and memory, all before the model is loaded.
"""

from __future__ import annotations

import dataclasses
import math
import os
import tempfile
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Union

import nibabel as nib
import numpy as np
from nibabel.filebasedimages import ImageFileError
from nibabel.spatialimages import HeaderDataError

from fasr.checkpoint import load_checkpoint, resolve_checkpoint_path, stored_config
from fasr.data.degrade import SliceProfile
from fasr.data.geometry import sr_affine
from fasr.data.io import NIFTI_SUFFIXES, read_volume, sidecar_slice_thickness
from fasr.data.types import Volume
from fasr.errors import FasrError
from fasr.inference.engine.memory import DEFAULT_BATCH_SIZE, estimate
from fasr.inference.grid import (
    SRGrid,
    choose_inplane_axes,
    plan_sr_grid,
    plan_thick_grid,
    spacing_along_axes,
    voxel_sizes,
)
from fasr.inference.inputs import is_slice_file, read_inputs
from fasr.inference.output import check_outputs, resolved
from fasr.models.config import ModelConfig
from fasr.pretrained import PRETRAINED

DEFAULT_SEARCH_WINDOW = ModelConfig.search_window

__all__ = [
    "RATIO_TOLERANCE",
    "RATIO_WARNING",
    "InputGeometry",
    "InferencePlan",
    "read_geometry",
    "volume_geometry",
    "CheckpointFile",
    "read_checkpoint",
    "checkpoint_model",
    "check_task",
    "check_thick_task",
    "thick_profile",
    "check_writable",
    "check_output_paths",
    "estimate_cost",
    "plan_inference",
]

# A target axis counts as refined "by the scale" when LR voxel / reference spacing lies within this factor of
# it: sqrt(2) is halfway (in log) between successive powers of two, so a ratio fits at most one of x2 and x4
# (ours).
RATIO_TOLERANCE = math.sqrt(2.0)
# Relative deviation of an accepted ratio from the scale above which the plan warns (the reference is then
# interpolated onto the SR grid rather than sampled at its own resolution).
RATIO_WARNING = 0.25
# A through-plane model takes an LR whose slice spacing is at least this many reference spacings (ours).
THICK_MIN_RATIO = 1.5

# Whole-volume float32 arrays on the SR grid held at once by the pipeline (reference, stacks, SR, confidence).
_SR_GRID_ARRAYS = 7
_DIRECTIONS = ("left-right", "anterior-posterior", "inferior-superior")
# A target or reference: a file or DICOM folder (its header is read), a volume already read, or its geometry.
Source = Union[str, os.PathLike, Volume, "InputGeometry"]
_HEADER_ERRORS = (OSError, EOFError, ValueError, zlib.error, ImageFileError, HeaderDataError, TypeError)


@dataclass(frozen=True)
class InputGeometry:
    """Shape and voxel -> world affine of one input, as its header gives them.

    Attributes:
        path: the file or DICOM folder.
        shape: (X, Y, Z) voxel counts (a 2-D image has Z = 1).
        affine: (4, 4) voxel -> world matrix, finite and invertible.
        slice_thickness: the slice thickness in mm where the header states it (:class:`fasr.data.types.Volume`).
    """

    path: Path
    shape: tuple[int, int, int]
    affine: np.ndarray
    slice_thickness: float | None = None


@dataclass(frozen=True)
class InferencePlan:
    """What an inference job will do, decided from the headers.

    Attributes:
        target / reference: geometry of the two inputs (target: the LR, or the HR to simulate from).
        simulate: the target is a high-resolution scan to degrade first.
        lr_shape: (X, Y, Z) of the LR that is super-resolved (simulated: the cropped HR divided by the scale).
        lr_affine: (4, 4) affine of that LR.
        grid: the SR grid of that LR.
        seconds: estimated wall time of the model on a CPU.
        memory_bytes: estimated peak memory.
        warnings: one-line cautions to show before the work starts.
    """

    target: InputGeometry
    reference: InputGeometry
    simulate: bool
    lr_shape: tuple[int, int, int]
    lr_affine: np.ndarray
    grid: SRGrid
    seconds: float
    memory_bytes: float
    warnings: tuple[str, ...] = field(default=())

    def summary(self) -> str:
        """One line: scale, shapes and voxel sizes, slices, and the cost estimate."""
        grid, n = self.grid, self.grid.shape[self.grid.slice_axis]
        h, w = (grid.shape[a] for a in grid.inplane_axes)
        if grid.thick_axis is not None:
            return (
                f"plan: x{grid.scale} through-plane along {_axis_name(self.lr_affine, grid.thick_axis)}, "
                f"{_dims(self.lr_shape)} ({_mm(voxel_sizes(self.lr_affine))} mm) -> {_dims(grid.shape)} "
                f"({_mm(voxel_sizes(grid.affine))} mm), {_thickness_note(self.target, grid.thick_axis)}, planes "
                "along both other axes, combined; estimated "
                f"{_duration(self.seconds)} on a CPU, peak memory ~{_size(self.memory_bytes)}"
            )
        return (
            f"plan: x{grid.scale} {_dims(self.lr_shape)} ({_mm(voxel_sizes(self.lr_affine))} mm) -> "
            f"{_dims(grid.shape)} ({_mm(voxel_sizes(grid.affine))} mm), {n} slices of {h}x{w} along voxel axis "
            f"{grid.slice_axis}; estimated {_duration(self.seconds)} on a CPU, peak memory ~{_size(self.memory_bytes)}"
        )


def _dims(shape: Sequence[int]) -> str:
    return "x".join(str(int(n)) for n in shape)


def _mm(sizes: Sequence[float]) -> str:
    return " x ".join(f"{float(s):.3g}" for s in sizes)


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _size(n_bytes: float) -> str:
    return f"{n_bytes / 2**30:.1f} GiB" if n_bytes >= 2**30 else f"{n_bytes / 2**20:.0f} MiB"


def _geometry(
    path: Path, shape: Sequence[int], affine: np.ndarray, slice_thickness: float | None = None
) -> InputGeometry:
    """Check a header's shape and affine: 2-5 dims with trailing singletons, finite, invertible."""
    dims = [int(n) for n in shape]
    while len(dims) > 3 and dims[-1] == 1:
        dims.pop()
    if len(dims) > 3:
        raise FasrError(f"'{path}' is {len(dims)}-D {tuple(dims)}; extract one 3-D volume (e.g. fslroi) and retry")
    if len(dims) < 2 or min(dims) < 1:
        raise FasrError(f"'{path}' has no image data (shape {tuple(dims)}); give a 2-D or 3-D image")
    dims += [1] * (3 - len(dims))
    affine = np.asarray(affine, dtype=np.float64)
    if affine.shape != (4, 4) or not np.all(np.isfinite(affine)):
        raise FasrError(
            f"'{path}' has a NaN/inf voxel-to-world matrix in its header; fix its qform/sform (e.g. with "
            "fslorient or nibabel) and retry"
        )
    sizes = voxel_sizes(affine)
    if sizes.min() <= 0 or abs(np.linalg.det(affine[:3, :3])) <= 1e-9 * float(np.prod(sizes)):
        raise FasrError(
            f"'{path}' has a singular voxel-to-world matrix in its header (voxel sizes {_mm(sizes)} mm, axes not "
            "independent); fix its qform/sform (e.g. with fslorient or nibabel) and retry"
        )
    return InputGeometry(path, tuple(dims), affine, slice_thickness)  # type: ignore[arg-type]


def volume_geometry(volume: Volume) -> InputGeometry:
    """The checked geometry of a volume already read (its file or label as the path)."""
    return _geometry(Path(volume.path), volume.data.shape, volume.affine, volume.slice_thickness)


def read_geometry(path: str | Path) -> InputGeometry:
    """Shape and affine of an input: NIfTI from its header alone; other formats (DICOM folder, fastMRI) are read.

    Args:
        path: NIfTI file, DICOM folder or fastMRI file.

    Raises:
        FasrError: missing, unreadable, not 2-D/3-D, or a NaN/inf/singular affine.
    """
    path = Path(path)
    if path.is_file() and path.name.lower().endswith(NIFTI_SUFFIXES):
        try:
            image = nib.load(str(path))
            shape, affine = image.shape, image.affine
        except _HEADER_ERRORS as exc:
            detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise FasrError(
                f"cannot read '{path}' as NIfTI ({detail}); check that the file is complete and in that format"
            ) from None
        return _geometry(path, shape, affine, sidecar_slice_thickness(path))
    volume = read_volume(path)
    return _geometry(path, volume.data.shape, volume.affine, volume.slice_thickness)


def _is_path(source: object) -> bool:
    return isinstance(source, (str, os.PathLike))


def _read_inputs(
    target: Source, ref: Source, keys: tuple[str | None, str | None] = (None, None)
) -> tuple[InputGeometry, InputGeometry]:
    """Geometry of both inputs. 2-D slice files have none of their own and are placed as
    :func:`fasr.inference.inputs.read_inputs` does (which reads them; ``keys``: their ``.mat`` variables)."""
    if _is_path(target) and _is_path(ref) and (is_slice_file(target) or is_slice_file(ref)):
        pair = read_inputs(target, ref, target_key=keys[0], ref_key=keys[1])
        target, ref = pair.target, pair.ref
    return tuple(  # type: ignore[return-value]
        s if isinstance(s, InputGeometry)
        else read_geometry(s) if _is_path(s)
        else volume_geometry(s)
        for s in (target, ref)
    )


@dataclass(frozen=True)
class CheckpointFile:
    """A checkpoint read once: where it is, what it holds, and its model section with the ``--set`` overrides
    (read from its stored config without building the model: the plan's factor and search window).

    Attributes:
        name: as given (file or shipped model name).
        path: the file.
        state: its contents (:func:`fasr.checkpoint.load_checkpoint`), to build the model from without reading
            it again (:func:`fasr.checkpoint.model_from_state`).
        model: the model section.
    """

    name: str
    path: Path
    state: dict
    model: ModelConfig


def read_checkpoint(checkpoint: str | Path, overrides: Sequence[str] = ()) -> CheckpointFile:
    """Resolve and read a checkpoint, and its model section with ``overrides`` applied.

    Args:
        checkpoint: ``.pt`` file or shipped model name.
        overrides: ``--set key=value`` strings (only inference settings may change the model section).
    """
    path = resolve_checkpoint_path(checkpoint)
    state = load_checkpoint(path)
    model = state["config"].get("model") if isinstance(state["config"], dict) else None
    scale = model.get("scale") if isinstance(model, dict) else None
    if not isinstance(scale, int) or scale < 1:
        raise FasrError(
            f"checkpoint '{checkpoint}' stores no valid model.scale ({scale!r}); "
            "use a checkpoint written by `fasr train`"
        )
    return CheckpointFile(str(checkpoint), path, state, stored_config(state, path, overrides).model)


def checkpoint_model(checkpoint: str | Path, overrides: Sequence[str] = ()) -> ModelConfig:
    """The model section of :func:`read_checkpoint`."""
    return read_checkpoint(checkpoint, overrides).model


def _near(ratio: float, factor: float) -> bool:
    return factor / RATIO_TOLERANCE <= ratio <= factor * RATIO_TOLERANCE


def _axis_name(affine: np.ndarray, axis: int) -> str:
    """``voxel axis 2 (inferior-superior)``: the world direction nearest a voxel axis."""
    return f"voxel axis {axis} ({_DIRECTIONS[int(np.argmax(np.abs(affine[:3, axis])))]})"


def check_task(target: InputGeometry, ref: InputGeometry, scale: int, simulate: bool = False) -> tuple[int, int]:
    """Refuse a job that is not in-plane super-resolution by ``scale``; return the target's in-plane axes.

    Ratios are target voxel size / reference spacing along each target axis. Accepted: the two in-plane axes of
    the rule of :mod:`fasr.inference.grid` have ratios within :data:`RATIO_TOLERANCE` of ``scale`` (of 1 for a
    high-resolution target to simulate from); the slice axis may be anything.

    Args:
        target: the LR (or, with ``simulate``, the HR target).
        ref: the reference.
        scale: the model's in-plane factor.
        simulate: the target is high resolution and will be degraded by ``scale``.

    Raises:
        FasrError: same file twice, swapped inputs, thick-slice or already high-resolution LR, wrong factor.
    """
    option = "--simulate-from" if simulate else "--lr"
    _check_distinct(target, ref, option)
    expected = 1 if simulate else scale
    ratio = voxel_sizes(target.affine) / spacing_along_axes(target.affine, ref.affine)  # (3,)
    inplane = choose_inplane_axes(target.shape, target.affine, ref.affine, expected)
    if all(_near(ratio[a], expected) for a in inplane):
        return inplane
    axes = list(inplane) if 1 in target.shape else [0, 1, 2]
    fine = [a for a in axes if ratio[a] < 1 / RATIO_TOLERANCE]
    coarse = [a for a in axes if ratio[a] > RATIO_TOLERANCE]
    sizes = f"{_mm(voxel_sizes(target.affine))} mm voxels, {_mm(ratio)} times the reference spacing"
    if fine and not coarse:
        raise FasrError(
            f"{option} '{target.path}' ({sizes}) is finer than --ref '{ref.path}': the inputs look swapped; "
            f"{option} takes the {'high-resolution target' if simulate else 'low-resolution scan'} and --ref the "
            "high-resolution reference"
        )
    if simulate:
        raise FasrError(
            f"--simulate-from '{target.path}' ({sizes}) is not at the reference's resolution in-plane; "
            "--simulate-from takes a high-resolution target (pass a real low-resolution scan as --lr)"
        )
    if not coarse:
        raise FasrError(
            f"--lr '{target.path}' ({sizes}) already has the reference's resolution: there is nothing to "
            f"super-resolve x{scale}; give the low-resolution acquisition as --lr (to try the model on a "
            "high-resolution scan, pass it as --simulate-from)"
        )
    if len(coarse) == 1 and len(axes) == 3:
        thick = coarse[0]
        through = [m.name for m in PRETRAINED.values() if m.scale == 1] or ["a model trained with data.planes: thick"]
        raise FasrError(
            f"--lr '{target.path}' is a thick-slice scan: {ratio[thick]:.3g} times the reference spacing along "
            f"{_axis_name(target.affine, thick)}, like the reference along the other two ({sizes}); through-plane "
            f"super-resolution is not what this model does (it refines two in-plane axes x{scale} and keeps the "
            f"slices): pass a through-plane model ({', '.join(through)}) as --checkpoint"
        )
    pair = sorted(coarse, key=lambda a: abs(math.log(ratio[a] / scale)))[:2]
    factor = 2 ** round(math.log2(math.sqrt(ratio[pair[0]] * ratio[pair[-1]])))
    shipped = [m.name for m in PRETRAINED.values() if m.scale == factor]
    raise FasrError(
        f"--lr '{target.path}' ({sizes}) is coarser than the reference by about x{factor} in-plane, but the "
        f"checkpoint super-resolves x{scale}; use a x{factor} checkpoint{f' ({shipped[0]})' if shipped else ''} "
        f"or a reference with voxels 1/{scale} of the LR's"
    )


def _check_distinct(target: InputGeometry, ref: InputGeometry, option: str) -> None:
    """Refuse the same file as target and reference."""
    if resolved(target.path) == resolved(ref.path) or (
        target.path.exists() and ref.path.exists() and os.path.samefile(target.path, ref.path)
    ):
        raise FasrError(
            f"{option} and --ref are the same file '{target.path}'; --ref takes a high-resolution scan of another "
            "contrast of the same patient (e.g. T1 for a T2 target)"
        )


def check_thick_task(target: InputGeometry, ref: InputGeometry) -> tuple[int, int]:
    """Refuse a job that is not through-plane super-resolution; return the thick axis and its factor (ours).

    Accepted: one voxel axis at least 1.5 times the reference spacing (the slices), the other two within
    :data:`RATIO_TOLERANCE` of it or finer. The factor is that ratio rounded; the output's slices are the LR's
    slice spacing over the factor (the reference's spacing when the ratio is an integer).

    Raises:
        FasrError: same file twice, no thick axis (isotropic or swapped), or coarse in-plane voxels too.
    """
    _check_distinct(target, ref, "--lr")
    ratio = voxel_sizes(target.affine) / spacing_along_axes(target.affine, ref.affine)  # (3,)
    sizes = f"{_mm(voxel_sizes(target.affine))} mm voxels, {_mm(ratio)} times the reference spacing"
    thick = int(np.argmax(ratio))
    others = [a for a in range(3) if a != thick]
    if 1 in target.shape or ratio[thick] < THICK_MIN_RATIO:
        raise FasrError(
            f"--lr '{target.path}' ({sizes}) has no thick-slice axis: a through-plane model refines a volume whose "
            f"slices are at least {THICK_MIN_RATIO:g} times the reference spacing (e.g. 4 mm T2 slices, 1 mm T1)"
        )
    if any(ratio[a] > RATIO_TOLERANCE for a in others):
        raise FasrError(
            f"--lr '{target.path}' ({sizes}) is coarse in-plane too; a through-plane model keeps the in-plane "
            "resolution: use an in-plane model (brats-x2, brats-x4) for a low in-plane resolution"
        )
    return thick, max(2, math.floor(float(ratio[thick]) + 0.5))  # halves round up: 2.5 -> 3


def thick_profile(target: InputGeometry, thick_axis: int, factor: int, nominal: SliceProfile) -> SliceProfile:
    """The scan's own slice profile (ours): the model's profile shape at this scan's factor, with the slice
    thickness over the slice spacing that the header states (a gap below 1, overlap above), else the model's.

    Args:
        target: the thick-slice LR's geometry.
        thick_axis: its slice axis (:func:`check_thick_task`).
        factor: its factor.
        nominal: the model's own profile (``model.ref_degradation``).
    """
    if target.slice_thickness is None:
        return SliceProfile(factor, nominal.profile, nominal.thickness)
    spacing = float(voxel_sizes(target.affine)[thick_axis])
    return SliceProfile(factor, nominal.profile, target.slice_thickness / spacing)


def _thickness_note(target: InputGeometry, thick_axis: int) -> str:
    spacing = float(voxel_sizes(target.affine)[thick_axis])
    if target.slice_thickness is None:
        return "the model's own slice profile (no usable SliceThickness in the header)"
    return f"slices {target.slice_thickness:.3g} mm thick every {spacing:.3g} mm (header)"


def check_writable(path: Path, option: str) -> None:
    """Refuse an output whose folder cannot be made or written (probed with an anonymous temporary file).

    Args:
        path: the output file.
        option: the flag that named it (for the message).
    """
    path = Path(os.path.abspath(path))
    folder = path.parent
    while not folder.exists():
        if folder.parent == folder:
            break
        folder = folder.parent
    if not folder.is_dir():
        raise FasrError(f"{option} '{path}': '{folder}' is a file, not a folder; choose another output path")
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise FasrError(
            f"{option} '{path}' cannot be written: no file can be created in '{folder}' ({exc.strerror or exc}); "
            "choose a folder you can write to"
        ) from None


def estimate_cost(
    grid: SRGrid, ref: InputGeometry, batch_size: int, search_window: int = DEFAULT_SEARCH_WINDOW
) -> tuple[float, float]:
    """Estimated CPU seconds and peak bytes of super-resolving onto ``grid``: the forward passes' cost
    (:func:`fasr.inference.engine.memory.estimate`) plus the whole-volume arrays of the pipeline.

    Args:
        grid: the SR grid.
        ref: the reference (held whole in memory).
        batch_size: slices per forward pass.
        search_window: ``model.search_window`` of the model that will run (0: global matching).
    """
    n_slices = grid.shape[grid.slice_axis]
    lr_hw = tuple(grid.shape[a] // grid.scale for a in grid.inplane_axes)
    batch = max(1, min(batch_size, n_slices))
    # One forward pass of the default FASR-Net with the run's search window (the model is not loaded yet).
    forward = estimate(lr_hw, grid.scale, batch, search_window=search_window)  # type: ignore[arg-type]
    arrays = 4.0 * (_SR_GRID_ARRAYS * float(np.prod(grid.shape)) + float(np.prod(ref.shape)))
    return math.ceil(n_slices / batch) * forward.seconds, arrays + forward.peak_gib * 2**30


def check_output_paths(
    outputs: Mapping[str, Path], inputs: Sequence[Path], force: bool, force_hint: str = "pass --force"
) -> None:
    """Refuse, before any work, outputs that would replace an input or an existing file (unless ``force``), or
    that cannot be written.

    Args:
        outputs: flag or label -> file to be written (e.g. ``{"--out": ..., "sidecar": ...}``).
        inputs: files/folders read.
        force: existing outputs may be replaced.
        force_hint: how the caller allows replacing (``pass --force``; the Python API: ``pass force=True``).
    """
    check_outputs(outputs.values(), inputs, force, force_hint)
    for option, path in outputs.items():
        check_writable(Path(path), option)


def plan_inference(
    target: Source, ref: Source, scale: int, *, simulate: bool = False, batch_size: int = DEFAULT_BATCH_SIZE,
    search_window: int = DEFAULT_SEARCH_WINDOW, keys: tuple[str | None, str | None] = (None, None),
    through_plane: bool = False,
) -> InferencePlan:
    """Check an inference job from the inputs' geometry only, before the model is loaded.

    Args:
        target: the LR (or, with ``simulate``, the HR target to degrade): a path (only its header is read), a
            volume already read, or its geometry.
        ref: the high-resolution reference, likewise.
        scale: the model's in-plane factor (:func:`checkpoint_model`).
        search_window: the model's ``search_window`` (for the cost estimate).
        keys: the variables to read from ``.mat`` target / reference files holding several.
        simulate: degrade the target by ``scale`` first (``--simulate-from``).
        batch_size: slices per forward pass (for the memory estimate).
        through_plane: the model refines a thick slice axis (:func:`check_thick_task`; ``scale`` is unused).

    Raises:
        FasrError: a refused task (:func:`check_task`) or an unreadable header.
    """
    target_geo, ref_geo = _read_inputs(target, ref, keys)
    if through_plane:
        if simulate:
            raise FasrError(
                "--simulate-from with a through-plane model: make the thick-slice LR first (fasr.data.thick."
                "thick_volume, or `fasr bench thick`) and pass it as --lr"
            )
        axis, factor = check_thick_task(target_geo, ref_geo)
        grid = plan_thick_grid(target_geo.shape, target_geo.affine, ref_geo.affine, axis, factor)
        ratio = float((voxel_sizes(target_geo.affine) / spacing_along_axes(target_geo.affine, ref_geo.affine))[axis])
        thick_warnings = []
        if abs(ratio / factor - 1) > 0.1:
            thick_warnings.append(
                f"the slices are {ratio:.2f} times the reference spacing, refined x{factor}: the output's slices are "
                f"{ratio / factor:.2f} reference spacings apart"
            )
        # Two passes (one per plane family) of full-resolution planes: the in-plane cost model on the output grid.
        seconds, memory = estimate_cost(dataclasses.replace(grid, scale=1), ref_geo, batch_size, search_window)
        return InferencePlan(target_geo, ref_geo, False, target_geo.shape, target_geo.affine, grid, 2 * seconds,
                             memory, tuple(thick_warnings))
    inplane = check_task(target_geo, ref_geo, scale, simulate)
    if simulate:
        for axis in inplane:
            if target_geo.shape[axis] < scale:
                raise FasrError(
                    f"'{target_geo.path}' is only {target_geo.shape[axis]} voxels wide in-plane; it cannot be "
                    f"downsampled x{scale}"
                )
        # As fasr.inference.simulate.simulate_lr: trailing voxels cropped, then each in-plane axis coarsened.
        lr_shape = tuple(n // scale if a in inplane else n for a, n in enumerate(target_geo.shape))
        lr_affine = sr_affine(target_geo.affine, (1.0 / scale, 1.0 / scale), axes=inplane)
    else:
        lr_shape, lr_affine = target_geo.shape, target_geo.affine
    grid = plan_sr_grid(lr_shape, lr_affine, ref_geo.affine, scale, inplane)
    warnings = []
    if any(abs(r / scale - 1) >= RATIO_WARNING - 1e-6 for r in grid.ref_ratio):  # 25 % off (x3 LR, x4 model) warns
        ratio = " x ".join(f"{r:.2g}" for r in grid.ref_ratio)
        warnings.append(
            f"in-plane, the LR voxels are {ratio} times the reference spacing, not {scale}: the reference is "
            "interpolated onto the SR grid"
        )
    seconds, memory = estimate_cost(grid, ref_geo, batch_size, search_window)
    return InferencePlan(
        target=target_geo,
        reference=ref_geo,
        simulate=simulate,
        lr_shape=lr_shape,  # type: ignore[arg-type]
        lr_affine=lr_affine,
        grid=grid,
        seconds=seconds,
        memory_bytes=memory,
        warnings=tuple(warnings),
    )
