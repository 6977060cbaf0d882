"""Trained models shipped inside the package, addressed by name (``--checkpoint brats-x4``).

Each name maps to a half-precision checkpoint file in this folder, written by ``fasr train`` and exported as
described in ``docs/model-card.md``. A name whose file is not installed is reported as such (the registry lists
what the package is meant to ship, independent of whether this copy has the weights).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fasr.errors import FasrError

__all__ = ["PretrainedModel", "PRETRAINED", "PRETRAINED_DIR", "list_pretrained", "resolve_checkpoint"]

PRETRAINED_DIR = Path(__file__).resolve().parent


@dataclass(frozen=True)
class PretrainedModel:
    """One shipped model.

    Attributes:
        name: registry name given to ``--checkpoint``.
        filename: checkpoint file inside :data:`PRETRAINED_DIR`.
        scale: in-plane upsampling factor it was trained for (1: a through-plane model, factor from the scan).
        target: target contrast it super-resolves.
        references: reference contrasts seen in training.
        description: one line for ``list_pretrained`` / help texts.
        training_data: what it was trained on (``docs/model-card.md``).
        test: the held-out volume and reference its scores are measured on.
        test_psnr: PSNR (dB) on ``test`` from the model card, fastMRI convention.
        test_bicubic_psnr: bicubic's PSNR (dB) on the same volume.
        card: the ``fasr eval`` JSON in the source tree the two scores come from (a test checks they agree).
    """

    name: str
    filename: str
    scale: int
    target: str
    references: tuple[str, ...]
    description: str
    training_data: str
    test: str
    test_psnr: float
    test_bicubic_psnr: float
    card: str

    @property
    def task(self) -> str:
        """``x4 in-plane`` or ``through-plane`` (for tables and messages)."""
        return "through-plane x3-x6" if self.scale == 1 else f"x{self.scale} in-plane"

    @property
    def path(self) -> Path:
        return PRETRAINED_DIR / self.filename

    @property
    def available(self) -> bool:
        return self.path.is_file()

    @property
    def size_bytes(self) -> int | None:
        """Size of the installed weights file, None when it is not installed."""
        return self.path.stat().st_size if self.available else None


# Training data and test scores: docs/model-card.md (benchmarks/results/model-card/); update them with the weights.
_BRATS_SUBJECTS = "brain MRI: 4 subjects (AURORA-example, BraTS-GLI-00001-000, openms patient07/19)"
_REALISTIC = f"{_BRATS_SUBJECTS}, k-space / bicubic LR with Rician noise, references moved up to 2 mm / 2 deg"
_BRATS_TEST_KSPACE = "TCGA-DU-7294 (held out), T1 reference, k-space LR"
_THICK = f"{_BRATS_SUBJECTS}, coronal/sagittal planes, boxcar/Gaussian slices of 3-6 mm, Rician noise, references " \
    "moved up to 2 mm / 2 deg; fine-tuned from brats-x4"
_BRATS_TEST_THICK = "TCGA-DU-7294 (held out), T1 reference, 4 mm boxcar slices; cubic B-spline in brackets"


PRETRAINED: dict[str, PretrainedModel] = {
    m.name: m
    for m in (
        PretrainedModel(
            name="brats-x4",
            filename="brats-x4.pt",
            scale=4,
            target="t2",
            references=("t1", "t1c", "flair"),
            description="FASR-Net, x4 in-plane, T2 target from a T1/T1c/FLAIR reference, BraTS brain MRI, "
            "scanner-like LR (k-space, noise, motion)",
            training_data=_REALISTIC,
            test=_BRATS_TEST_KSPACE,
            test_psnr=34.92,
            test_bicubic_psnr=30.75,
            card="benchmarks/results/model-card/brats-x4-t1.json",
        ),
        PretrainedModel(
            name="brats-x2",
            filename="brats-x2.pt",
            scale=2,
            target="t2",
            references=("t1", "t1c", "flair"),
            description="FASR-Net, x2 in-plane, T2 target from a T1/T1c/FLAIR reference, BraTS brain MRI, "
            "scanner-like LR (k-space, noise, motion)",
            training_data=_REALISTIC,
            test=_BRATS_TEST_KSPACE,
            test_psnr=37.68,
            test_bicubic_psnr=35.34,
            card="benchmarks/results/model-card/brats-x2-t1.json",
        ),
        PretrainedModel(
            name="brats-thick",
            filename="brats-thick.pt",
            scale=1,
            target="t2",
            references=("t1", "t1c", "flair"),
            description="FASR-Net, through-plane x3-x6: a thick-slice T2 onto the 1 mm grid of a T1/T1c/FLAIR "
            "reference, BraTS brain MRI",
            training_data=_THICK,
            test=_BRATS_TEST_THICK,
            test_psnr=43.77,
            test_bicubic_psnr=38.61,
            card="benchmarks/results/model-card/brats-thick-t1.json",
        ),
    )
}


def _short_list() -> str:
    """``brats-x4 = x4 t2 from t1/t1c/flair, ...`` for error messages."""
    return ", ".join(f"{m.name} = {m.task} {m.target} from {'/'.join(m.references)}" for m in PRETRAINED.values())


def list_pretrained() -> list[PretrainedModel]:
    """All registered models, installed or not (see :attr:`PretrainedModel.available`)."""
    return list(PRETRAINED.values())


def resolve_checkpoint(name_or_path: str | Path) -> Path:
    """Turn a ``--checkpoint`` argument into a checkpoint file.

    Args:
        name_or_path: an existing file, or a registered name such as ``brats-x4``.

    Returns:
        Path of an existing checkpoint file.

    Raises:
        FasrError: neither an existing file nor a known name, or a known name whose weights are not installed.
    """
    path = Path(name_or_path)
    if path.is_file():
        return path
    model = PRETRAINED.get(str(name_or_path))
    if model is None:
        if path.exists():
            raise FasrError(f"checkpoint '{path}' is a folder; pass the .pt file inside it (e.g. best.pt)")
        raise FasrError(
            f"checkpoint '{name_or_path}' is neither a file nor a shipped model; "
            f"pass a .pt file or one of: {', '.join(PRETRAINED)} ({_short_list()}; details: fasr models)"
        )
    if not model.available:
        raise FasrError(
            f"shipped model '{model.name}' is not installed in this copy of fasr ({model.path} is missing); "
            "pass a checkpoint file from `fasr train` with --checkpoint, or install a release that ships it"
        )
    return model.path
