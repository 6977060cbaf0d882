"""Matching accuracy of an untrained FASR-Net per Table II backbone, shipped MRI extractor against random.

The share of brain queries whose M-A match lies within one 1/4-grid cell of the truth (``matching_diagnostics``
of ``fasr bench reference``) on 8 evenly spaced validation slices of TCGA-FG-6692, bicubic x4 T2 LR against the
registered T1; the model is the suites' small FASR-Net (``configs/cpu-quick.yaml`` sizes). Numbers:
``docs/baselines.md`` (Table II).

    python benchmarks/extractor_matching.py --data ../shared/data/brats
"""

from __future__ import annotations

import argparse

import torch

from fasr.bench.reference import matching_diagnostics
from fasr.config import RunConfig, from_dict
from fasr.data.datasets import build_dataset
from fasr.models import build_model
from fasr.scoring.volumes import spread_indices


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="the BraTS-layout folder (e.g. ../shared/data/brats)")
    args = parser.parse_args()
    data = {"kind": "brats", "root": args.data, "target": "t2", "reference": "t1", "slice_size": 240,
            "val_subjects": ["TCGA-FG-6692"], "test_subjects": ["TCGA-DU-7294"], "degradation": {"kind": "bicubic"}}
    dataset = build_dataset(from_dict(RunConfig, {"data": data}).data, "val", scale=4, train=False)
    indices = spread_indices(len(dataset), 8)
    print("backbone  shipped mri  random")
    for backbone in ("vgg19", "resnet18", "resnet34"):
        accuracy = []
        for weights in ("mri", None):
            torch.manual_seed(0)
            sizes = {"backbone": backbone, "backbone_weights": weights, "n_feats": 32, "n_blocks": [2, 2, 1],
                     "embed_dim": 32}
            model = build_model(from_dict(RunConfig, {"model": sizes}).model).eval()
            accuracy.append(matching_diagnostics(model, dataset, indices, torch.device("cpu"))[1])
        print(f"{backbone:9s} {accuracy[0]:11.2f} {accuracy[1]:7.2f}")


if __name__ == "__main__":
    main()
