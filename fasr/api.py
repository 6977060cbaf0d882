"""The public Python API of ``fasr`` (also importable as ``fasr.load_model``, ``fasr.super_resolve``).

    import fasr
    model = fasr.load_model("brats-x4", device="auto")          # once, for many volumes
    result = fasr.super_resolve("t2_lowres.nii.gz", "t1.nii.gz", model=model)
    result.sr, result.confidence, result.metadata                # nibabel images + the sidecar record
    result.save("t2_sr.nii.gz", confidence="t2_conf.nii.gz")      # the files `fasr infer` writes

Inputs may be file paths, nibabel images, or numpy arrays with ``lr_affine=`` / ``ref_affine=`` (a 2-D array
without one is a slice of the reference's field of view). See ``docs/inference.md``.
"""

from fasr.inference.api import SRResult, load_model, super_resolve
from fasr.inference.predict import LoadedModel

__all__ = ["LoadedModel", "SRResult", "load_model", "super_resolve"]
