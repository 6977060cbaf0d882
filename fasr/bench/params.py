"""``fasr params``: extractor and model size per backbone (Table II), or with ``--methods`` the size and cost of every
row of the methods benchmark (Table I), FLOPs counted by torch's flop counter.

FLOPs are counted by ``torch.utils.flop_counter`` (one multiply-add = 2 FLOPs) on a 256x256x3 extractor
input, as the paper's Table II. The paper does not say whether its "FLOPs" are multiply-adds; its VGG19
figure (22.06 G) is close to half of a 2-FLOP count through relu5_1, so it is most likely multiply-adds.
"""

from __future__ import annotations

import argparse
import json

__all__ = ["add_arguments", "run", "backbone_rows", "method_rows", "PAPER_TABLE_II"]

# Table II: backbone -> (params M, FLOPs G, PSNR, SSIM) on IXI x4.
PAPER_TABLE_II = {
    "resnet18": (12.87, 32.04, 38.55, 0.959),
    "resnet34": (22.51, 68.09, 38.70, 0.965),
    "vgg19": (12.34, 22.06, 38.52, 0.974),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--scale", type=int, default=4, help="upsampling factor of the models counted (default 4)")
    parser.add_argument("--size", type=int, default=256, help="extractor input size (square)")
    parser.add_argument(
        "--methods", action="store_true",
        help="count the rows of `fasr bench quality --suite methods` (its base config) on one LR of --lr-size",
    )
    parser.add_argument("--lr-size", type=int, default=60, help="LR side for --methods (default 60: 240 px at x4)")
    parser.add_argument("--json", nargs="?", const="-", default=None, metavar="FILE",
                        help="print JSON (or write it to FILE)")


def backbone_rows(scale: int = 4, size: int = 256) -> list[dict]:
    """One row per backbone: extractor parameters and GFLOPs at ``size``, and the whole model's parameters."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from fasr.models import ModelConfig, build_model

    rows = []
    for backbone in PAPER_TABLE_II:
        model = build_model(ModelConfig(name="fasr", scale=scale, backbone=backbone, backbone_weights=None)).eval()
        net = model.extractor.net
        x = torch.zeros(1, 3, size, size)
        counter = FlopCounterMode(display=False)
        with torch.no_grad(), counter:
            net(x, list(model.extractor.taps.values()))
        rows.append(
            {
                "backbone": backbone,
                "extractor_params_m": round(sum(p.numel() for p in net.parameters()) / 1e6, 3),
                "extractor_gflops": round(counter.get_total_flops() / 1e9, 2),
                "model_params_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 3),
                "extractor_layers": list(model.extractor.taps.values()),
            }
        )
    return rows


def method_rows(scale: int = 4, lr_size: int = 60) -> list[dict]:
    """One row per method of the methods benchmark, as its base config builds it: parameters and GFLOPs of one
    forward pass on an ``lr_size`` square LR with its reference (gathers and interpolations count no FLOPs)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from fasr.bench.quality.suites import DEFAULT_BASE, METHODS, MISSING_HINT, row_model
    from fasr.config import from_dict, read_yaml
    from fasr.errors import FasrError
    from fasr.models import ModelConfig, build_model

    base = read_yaml(DEFAULT_BASE, MISSING_HINT).get("model", {})
    rows = []
    for name in METHODS:
        cfg = from_dict(ModelConfig, row_model({**base, "name": name, "scale": scale}), "model")
        torch.manual_seed(0)
        try:
            model = build_model(cfg).eval()
        except FasrError as error:  # e.g. MASA-SR at a scale that is not a power of two
            rows.append({"method": name, "params": None, "gflops": None, "lr_size": lr_size, "scale": scale,
                         "note": str(error)})
            continue
        lr, ref = torch.zeros(1, 1, lr_size, lr_size), torch.zeros(1, 1, lr_size * scale, lr_size * scale)
        counter = FlopCounterMode(display=False)
        with torch.no_grad(), counter:
            model(lr, ref)
        rows.append(
            {
                "method": name,
                "params": sum(p.numel() for p in model.parameters()),
                "gflops": round(counter.get_total_flops() / 1e9, 2),
                "lr_size": lr_size,
                "scale": scale,
            }
        )
    return rows


def _write_json(rows: list[dict], where: str) -> None:
    text = json.dumps(rows, indent=2)
    if where == "-":
        print(text)
    else:
        with open(where, "w") as fh:
            fh.write(text + "\n")


def run(args: argparse.Namespace) -> int:
    if args.methods:
        rows = method_rows(args.scale, args.lr_size)
        if args.json is not None:
            _write_json(rows, args.json)
            return 0
        side = args.lr_size
        print(f"Methods of the benchmark (configs/cpu-quick.yaml) at x{args.scale}, one {side}x{side} LR with its "
              "reference (FLOPs: 2 per multiply-add)")
        print(f"{'method':<10}{'params':>12}{'GFLOPs':>10}")
        for r in rows:
            if r["params"] is None:
                print(f"{r['method']:<10}{'-':>12}{'-':>10}  ({r['note']})")
            else:
                print(f"{r['method']:<10}{r['params']:>12,}{r['gflops']:>10.2f}")
        return 0
    rows = backbone_rows(args.scale, args.size)
    if args.json is not None:
        _write_json(rows, args.json)
        return 0
    print(f"Texture extractor on a {args.size}x{args.size}x3 input (FLOPs: 2 per multiply-add), x{args.scale} model")
    print(f"{'backbone':<10}{'extractor M':>13}{'GFLOPs':>9}{'model M':>10} | paper: {'M':>6}{'G':>7}")
    for r in rows:
        p = PAPER_TABLE_II[r["backbone"]]
        print(f"{r['backbone']:<10}{r['extractor_params_m']:>13.3f}{r['extractor_gflops']:>9.2f}"
              f"{r['model_params_m']:>10.3f} | {p[0]:>14.2f}{p[1]:>7.2f}")
    print("Ours stop at the deepest layer the default model taps (relu3_1 for VGG19, layer3 for ResNets);")
    print("the paper's counts include deeper layers (e.g. VGG19 through relu5_1 is 12.9 M parameters).")
    return 0
