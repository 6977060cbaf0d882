"""Paired MRI datasets yielding :class:`PairedSample`: ``build_dataset(cfg, split, scale, train)``.

Sources hand out normalised slice pairs (:class:`fasr.data.samples.RawSlice`): :class:`VolumeSlices` reads
subjects' volumes (BraTS-format, IXI, fastMRI) or 2-D slice folders, decoding each subject once and keeping
``cfg.volume_cache`` of them per worker; :class:`fasr.data.cache.CacheSlices` reads a ``fasr prepare`` cache.
A :class:`fasr.data.samples.SampleMaker` turns them into samples (LR, Ref-down-up, crops, augmentation).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Protocol

from torch.utils.data import Dataset

from fasr.data.cache import CacheSlices
from fasr.data.config import DataConfig
from fasr.data.degrade import build_degradation
from fasr.data.layouts import SPLITS, PairSource, pairs_for_split
from fasr.data.lru import LRUCache
from fasr.data.samples import RawSlice, SampleMaker
from fasr.data.subjects import Subject, load_subject, plane_family
from fasr.data.types import PairedSample
from fasr.errors import FasrError

__all__ = ["SliceSource", "VolumeSlices", "PairedSliceDataset", "build_dataset"]


class SliceSource(Protocol):
    """Indexable normalised slice pairs."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> RawSlice: ...


class VolumeSlices:
    """The content slices of a list of subjects, read from their files.

    Volumes are read once at construction (to find the slices with content) and kept in a bounded LRU cache,
    so slices of cached subjects cost no I/O; 2-D slice folders are read on demand.

    Args:
        sources: the subjects' files.
        percentiles / min_foreground / slice_key: see :func:`fasr.data.subjects.load_subject`.
        slice_step: keep every n-th content slice.
        cache_size: subjects kept decoded (per data-loader worker).
        planes: ``axial`` (the stacks' slices) or ``thick`` (the planes that contain the slice axis, across both
            in-plane axes: :meth:`fasr.data.subjects.Subject.across`).
    """

    def __init__(
        self,
        sources: list[PairSource],
        *,
        percentiles: tuple[float, float],
        min_foreground: float,
        slice_key: str | None,
        slice_step: int,
        cache_size: int,
        planes: str = "axial",
    ) -> None:
        self.sources = sources
        volumes = sum(source.pairing != "grid" for source in sources)
        if volumes > cache_size:
            warnings.warn(
                f"{volumes} subjects but data.volume_cache={cache_size}: random access re-reads volumes; for "
                "training run `fasr prepare` and use data.kind=cache (or raise data.volume_cache)", stacklevel=3
            )
        self._options = dict(percentiles=percentiles, min_foreground=min_foreground, slice_key=slice_key)
        self._min_foreground = min_foreground
        self._cache: LRUCache[Subject] = LRUCache(cache_size)
        self._views: LRUCache[Subject] = LRUCache(2 * cache_size)
        self._axes = (1, 2) if planes == "thick" else (0,)
        if planes == "thick" and any(source.pairing == "grid" for source in sources):
            raise FasrError("data.planes: thick takes planes across volumes; a folder of 2-D slices has none")
        self._index: list[tuple[int, int, int]] = []  # (subject, stack axis, plane)
        for i, source in enumerate(sources):
            for axis in self._axes:
                slices = [0] if source.pairing == "grid" else self._subject(i, axis).slices[:: max(1, slice_step)]
                self._index.extend((i, axis, int(z)) for z in slices)

    def _subject(self, i: int, axis: int = 0) -> Subject:
        subject = self._cache.get(i, lambda: load_subject(self.sources[i], **self._options))
        if axis == 0:
            return subject
        return self._views.get((i, axis), lambda: subject.across(axis, self._min_foreground))

    def __len__(self) -> int:
        return len(self._index)

    def items(self) -> list[tuple[str, int]]:
        """(subject id, slice index) of every item, in order (a thick plane's subject id names its family)."""
        return [(self.sources[i].subject if axis == 0 else plane_family(self.sources[i].subject, axis), z)
                for i, axis, z in self._index]

    def __getitem__(self, index: int) -> RawSlice:
        i, axis, z = self._index[index]
        return self._subject(i, axis).raw_slice(z)


class PairedSliceDataset(Dataset):
    """A :class:`SliceSource` with a :class:`SampleMaker`: item ``i`` is ``maker(source[i], i)``.

    Args:
        source: slice pairs in a deterministic order (subject, then slice).
        maker: sizing, degradation, cropping and augmentation.
    """

    def __init__(self, source: SliceSource, maker: SampleMaker) -> None:
        self.source, self.maker = source, maker

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: int) -> PairedSample:
        return self.maker(self.source[index], index)


def build_dataset(cfg: DataConfig, split: str, scale: int, train: bool) -> Dataset:
    """The paired dataset of one split.

    Args:
        cfg: data config (``cfg.kind == "cache"`` reads a ``fasr prepare`` output from ``cfg.root``; its
            contrasts, split, slice selection and degradation are the cache's).
        split: ``train``, ``val`` or ``test`` (by subject: ``cfg.val_subjects`` / ``cfg.test_subjects``; with
            no val subjects the last subject id is val).
        scale: LR factor.
        train: random ``cfg.patch_size`` crops with augmentation; otherwise whole slices (``cfg.slice_size``, or
            native when 0) in subject/slice order.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if cfg.kind == "cache":
        if cfg.planes != "axial":
            raise FasrError("data.planes: thick reads volumes; a slice cache holds axial slices (use data.kind: brats)")
        source: SliceSource = CacheSlices(Path(cfg.root), split, scale)
        maker = SampleMaker.from_config(cfg, scale, train, build_degradation(source.degradation))
    else:
        maker = SampleMaker.from_config(cfg, scale, train, build_degradation(cfg.degradation))
        source = VolumeSlices(
            pairs_for_split(cfg, split), percentiles=tuple(cfg.norm_percentiles),
            min_foreground=cfg.min_foreground, slice_key=cfg.slice_key, slice_step=cfg.slice_step,
            cache_size=cfg.volume_cache, planes=cfg.planes,
        )
    return PairedSliceDataset(source, maker)
