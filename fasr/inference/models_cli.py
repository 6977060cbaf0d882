"""``fasr models``: the shipped models, what they do, what they were trained on, how they score, and whether this
installation has their weights."""

from __future__ import annotations

import argparse
import json

from fasr.pretrained import PretrainedModel, list_pretrained

__all__ = ["add_arguments", "run", "model_rows", "models_table"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the list as JSON instead of a table")


def model_rows() -> list[dict[str, object]]:
    """One record per shipped model (installed or not)."""

    def row(m: PretrainedModel) -> dict[str, object]:
        return {
            "name": m.name,
            "scale": m.scale,
            "task": m.task,
            "target": m.target,
            "references": list(m.references),
            "training_data": m.training_data,
            "test": m.test,
            "test_psnr": m.test_psnr,
            "test_bicubic_psnr": m.test_bicubic_psnr,
            "file": str(m.path),
            "size_bytes": m.size_bytes,
        }

    return [row(m) for m in list_pretrained()]


def models_table(rows: list[dict[str, object]]) -> str:
    """Markdown table of :func:`model_rows`."""
    lines = [
        "| name | task | target | references | training data | test PSNR (bicubic) | file |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        size = "not installed" if r["size_bytes"] is None else f"{r['size_bytes'] / 2**20:.1f} MiB"
        lines.append(
            f"| {r['name']} | {r['task']} | {r['target']} | {', '.join(r['references'])} | {r['training_data']} "
            f"| {r['test_psnr']:.2f} dB ({r['test_bicubic_psnr']:.2f}) on {r['test']} | {size} |"
        )
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    rows = model_rows()
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print(models_table(rows))
        print("use one with --checkpoint NAME (fasr infer, fasr demo) or fasr.load_model(NAME); see docs/model-card.md")
    return 0
