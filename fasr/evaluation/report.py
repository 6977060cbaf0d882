"""Write evaluation results (:func:`fasr.scoring.volumes.score_predictions`) as Markdown, CSV and JSON."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

__all__ = ["markdown_table", "write_csv", "write_json", "COLUMNS"]

COLUMNS = ("psnr", "ssim", "nmse")
_HEADERS = {"psnr": "PSNR (dB)", "ssim": "SSIM", "nmse": "NMSE"}
_FORMATS = {"psnr": "{:.2f}", "ssim": "{:.4f}", "nmse": "{:.4g}"}


def markdown_table(result: dict[str, Any]) -> str:
    """One row per method (bicubic first), with the convention stated under the table."""
    lines = ["| Method | " + " | ".join(_HEADERS[c] for c in COLUMNS) + " |", "|---" * (len(COLUMNS) + 1) + "|"]
    for method in result["methods"]:
        lines.append(f"| {method} | " + " | ".join(_FORMATS[c].format(result[method][c]) for c in COLUMNS) + " |")
    volumes = len({row["subject"] for row in result["per_volume"]})
    mask = f"; mask: {result['mask']}" if result["mask"] else ""
    lines += ["", f"{volumes} volume(s), {result['protocol']}{mask}"]
    return "\n".join(lines) + "\n"


def write_csv(result: dict[str, Any], path: str | Path) -> Path:
    """Per-volume and per-slice rows: ``level, subject, slice, method, psnr, ssim, nmse`` (slice empty for volumes)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["level", "subject", "slice", "method", *COLUMNS])
        for row in result["per_volume"]:
            writer.writerow(["volume", row["subject"], "", row["method"], *(row[c] for c in COLUMNS)])
        for row in result["per_slice"]:
            writer.writerow(["slice", row["subject"], row["slice"], row["method"], *(row[c] for c in COLUMNS)])
    return path


def _json_safe(value: Any) -> Any:
    """NaN/inf (a slice without foreground, a perfect PSNR) become null: strict JSON has no such numbers."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return value


def write_json(result: dict[str, Any], path: str | Path) -> Path:
    """The whole result as strict JSON."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_json_safe(result), indent=1) + "\n")
    return path
