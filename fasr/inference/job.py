"""One inference job, decided once before the model is loaded (:class:`InferenceJob`): the inputs read and checked,
the checkpoint read once, the plan (output grid, cost estimate with the run's own settings, warnings). ``fasr
infer`` prints it and runs it; :func:`fasr.inference.api.super_resolve` (the Python API) and the dataset
runner build and run one per pair.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from fasr.checkpoint import resolve_device
from fasr.errors import FasrError
from fasr.inference.inputs import ImageInput, InputPair, read_inputs
from fasr.inference.options import DEFAULT_BATCH_SIZE, DEFAULT_MODEL
from fasr.inference.plan import CheckpointFile, InferencePlan, plan_inference, read_checkpoint
from fasr.inference.predict import LoadedModel, Prediction, check_adapt, load_for_inference, predict
from fasr.models.config import ModelConfig, is_through_plane

__all__ = ["InferenceJob", "load_model"]


def load_model(
    name_or_path: str | Path | LoadedModel = DEFAULT_MODEL,
    device: str | torch.device = "auto",
    *,
    scale: int | None = None,
    overrides: Sequence[str] = (),
    read: CheckpointFile | None = None,
) -> LoadedModel:
    """Load a model once for many jobs (public as ``fasr.load_model``).

    Args:
        name_or_path: a shipped model name (``fasr models`` lists them) or a checkpoint file; a model that is
            already loaded is returned as it is.
        device: ``auto`` (CUDA when available), ``cpu``, ``cuda``, ``cuda:1``, ... or a ``torch.device``.
        scale: required in-plane factor (an error if the checkpoint is trained for another); None: its own.
        overrides: ``key=value`` settings as with ``--set`` (e.g. ``model.search_window=16``).
        read: the checkpoint already read (an :class:`InferenceJob`'s): it is not read again.
    """
    if isinstance(name_or_path, LoadedModel):
        if scale is not None and scale != name_or_path.scale:
            raise FasrError(f"model '{name_or_path.label}' is trained for x{name_or_path.scale}, not x{scale}")
        if overrides:
            raise FasrError("overrides apply when a model is loaded; pass them to fasr.load_model instead")
        return name_or_path
    resolved = device if isinstance(device, torch.device) else resolve_device(str(device))
    return load_for_inference(str(name_or_path), resolved, scale, overrides, read)


@dataclass(frozen=True)
class InferenceJob:
    """Everything decided about one super-resolution before the model loads.

    Attributes:
        inputs: the target (the LR, or with ``simulate`` the HR to degrade) and the reference, read.
        model: the model as given: a shipped name, a checkpoint file, or a loaded model.
        checkpoint: that checkpoint read once (None when ``model`` is already loaded).
        model_config: its model section with ``overrides`` applied (the plan's factor and search window).
        plan: output grid, estimate and warnings (:func:`fasr.inference.plan.plan_inference`).
        overrides: ``--set`` strings for the model's config.
        simulate / degradation: degrade the target first, with the checkpoint's LR degradation or this kind
            (``fasr infer --simulate-from`` / ``--degradation``), and score against it.
        batch_size / strict / register / adapt: as :func:`fasr.inference.predict.predict`.
    """

    inputs: InputPair
    model: str | Path | LoadedModel
    checkpoint: CheckpointFile | None
    model_config: ModelConfig
    plan: InferencePlan
    overrides: tuple[str, ...] = ()
    simulate: bool = False
    degradation: str | None = None
    batch_size: int = DEFAULT_BATCH_SIZE
    strict: bool = False
    register: str = "rigid"
    adapt: int = 0

    @classmethod
    def prepare(
        cls,
        lr: ImageInput,
        ref: ImageInput,
        model: str | Path | LoadedModel = DEFAULT_MODEL,
        *,
        lr_affine: np.ndarray | None = None,
        ref_affine: np.ndarray | None = None,
        lr_key: str | None = None,
        ref_key: str | None = None,
        overrides: Sequence[str] = (),
        simulate: bool = False,
        degradation: str | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        strict: bool = False,
        register: str = "rigid",
        adapt: int = 0,
    ) -> InferenceJob:
        """Read the inputs and the checkpoint and plan the job; every refusal comes here, before the model loads.

        Args: as :func:`fasr.inference.api.super_resolve`.
        """
        if batch_size < 1:
            raise FasrError(f"batch size must be >= 1, got {batch_size}")
        if degradation is not None and not simulate:
            raise FasrError("a degradation only applies when simulating; drop it for a real LR scan")
        inputs = read_inputs(lr, ref, lr_affine, ref_affine, lr_key, ref_key)
        checkpoint = None if isinstance(model, LoadedModel) else read_checkpoint(model, overrides)
        config = model.config.model if isinstance(model, LoadedModel) else checkpoint.model  # type: ignore[union-attr]
        check_adapt(adapt, config)
        plan = plan_inference(inputs.target, inputs.ref, config.scale, simulate=simulate, batch_size=batch_size,
                              search_window=config.search_window, keys=(lr_key, ref_key),
                              through_plane=is_through_plane(config))
        return cls(inputs, model, checkpoint, config, plan, tuple(overrides), simulate, degradation, batch_size,
                   strict, register, adapt)

    def load(self, device: str | torch.device = "auto", scale: int | None = None) -> LoadedModel:
        """The job's model on ``device`` (built from the checkpoint already read; a loaded model as it is)."""
        return load_model(self.model, device, scale=scale, overrides=self.overrides, read=self.checkpoint)

    def run(self, loaded: LoadedModel, progress: bool = False, warn: Callable[[str], None] | None = None
            ) -> Prediction:
        """Super-resolve with ``loaded`` (:meth:`load`); ``warn`` hears what is found while running (the plan's
        warnings are the caller's to show: ``plan.warnings``)."""
        return predict(loaded, self.inputs, simulate=self.simulate, degradation=self.degradation,
                       batch_size=self.batch_size, progress=progress, strict=self.strict, warn=warn,
                       register=self.register, adapt=self.adapt)
