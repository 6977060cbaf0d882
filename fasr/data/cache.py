"""The slice cache written by ``fasr prepare``: memory-mappable ``.npy`` stacks plus a JSON manifest.

Layout (``S``: slice size, ``s``: each prepared scale)::

    <root>/manifest.json                       sources, split, normalisation, degradation, counts
    <root>/<split>/<subject>/target.npy        (N, S, S) HR target on [-1, 1]
                             reference.npy     (N, S, S) HR reference on the target grid, on [-1, 1]
                             lr_x<s>.npy       (N, S/s, S/s) LR target (degradation and noise of the manifest)
                             slices.npy        (N,) int32 slice numbers in the source volume

Training reads slices straight from the memory maps, with no NIfTI decompression, resampling or
normalisation. The manifest is written first with ``"complete": false`` and rewritten at the end.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from fasr.data.config import DegradationConfig
from fasr.data.lru import LRUCache
from fasr.data.samples import RawSlice
from fasr.data.types import NormStats
from fasr.errors import FasrError
from fasr.files import atomic_write_text

__all__ = ["MANIFEST", "FORMAT", "VERSION", "subject_dir", "write_subject", "write_manifest", "read_manifest",
           "CacheSlices"]

MANIFEST = "manifest.json"
FORMAT = "fasr-slice-cache"
VERSION = 1


def subject_dir(root: Path, split: str, subject: str) -> Path:
    """Folder of one subject's arrays."""
    return root / split / subject


def write_subject(root: Path, split: str, subject: str, arrays: dict[str, np.ndarray]) -> None:
    """Save one subject's arrays as ``<name>.npy``.

    Args:
        root: cache folder.
        split: the subject's split.
        subject: subject id.
        arrays: ``target``, ``reference``, ``lr_x<s>`` and ``slices``.
    """
    folder = subject_dir(root, split, subject)
    folder.mkdir(parents=True, exist_ok=True)
    for name, array in arrays.items():
        np.save(folder / f"{name}.npy", array)


def write_manifest(root: Path, manifest: dict[str, Any]) -> None:
    """Write ``manifest.json`` atomically (temporary file, then rename)."""
    atomic_write_text(root / MANIFEST, json.dumps(manifest, indent=2))


def read_manifest(root: Path) -> dict[str, Any]:
    """The manifest of a complete cache.

    Raises:
        FasrError: not a cache, another format version, or an unfinished ``fasr prepare``.
    """
    path = root / MANIFEST
    if not path.is_file():
        raise FasrError(f"'{root}' is not a fasr slice cache (no {MANIFEST}); create one with `fasr prepare`")
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise FasrError(f"'{path}' is not valid JSON ({exc}); re-run `fasr prepare ... --force`") from None
    if manifest.get("format") != FORMAT or manifest.get("version") != VERSION:
        raise FasrError(f"'{path}' is not a {FORMAT} v{VERSION} manifest; re-run `fasr prepare ... --force`")
    if not manifest.get("complete"):
        raise FasrError(f"cache '{root}' is incomplete (fasr prepare did not finish); re-run it with --force")
    return manifest


class CacheSlices:
    """The slices of one split of a cache, read through memory maps (the stored LR of one scale).

    Args:
        root: cache folder.
        split: ``train``, ``val`` or ``test``.
        scale: LR factor; must be one of the prepared scales.
        max_open: subjects whose memory maps stay open (bounds open files per worker).
    """

    def __init__(self, root: Path, split: str, scale: int, max_open: int = 64) -> None:
        self.root, self.split, self.scale = Path(root), split, scale
        self.manifest = read_manifest(self.root)
        if scale not in self.manifest["scales"]:
            raise FasrError(
                f"cache '{root}' holds scales {self.manifest['scales']}, not x{scale}; re-run `fasr prepare` with "
                f"--scale {scale}"
            )
        self.subjects: list[str] = list(self.manifest["splits"][split])
        if not self.subjects:
            raise FasrError(f"cache '{root}' has no '{split}' subjects; re-run `fasr prepare` with a {split} split")
        info = self.manifest["subjects"]
        self._index = [(i, k) for i, s in enumerate(self.subjects) for k in range(info[s]["slices"])]
        self._maps: LRUCache[dict[str, np.ndarray]] = LRUCache(max_open)

    @property
    def degradation(self) -> DegradationConfig:
        """The degradation the cache's LR slices were made with."""
        return DegradationConfig(**self.manifest["degradation"])

    def _arrays(self, i: int) -> dict[str, np.ndarray]:
        folder = subject_dir(self.root, self.split, self.subjects[i])
        names = ("target", "reference", f"lr_x{self.scale}", "slices")
        return {name: np.load(folder / f"{name}.npy", mmap_mode="r") for name in names}

    def __len__(self) -> int:
        return len(self._index)

    def __getitem__(self, k: int) -> RawSlice:
        i, j = self._index[k]
        arrays = self._maps.get(i, lambda: self._arrays(i))
        info = self.manifest["subjects"][self.subjects[i]]
        return RawSlice(
            target=np.array(arrays["target"][j], dtype=np.float32),
            reference=np.array(arrays["reference"][j], dtype=np.float32),
            lr=np.array(arrays[f"lr_x{self.scale}"][j], dtype=np.float32),
            subject=self.subjects[i],
            slice_index=int(arrays["slices"][j]),
            target_stats=NormStats(*info["target_stats"]),
            ref_stats=NormStats(*info["ref_stats"]),
        )
