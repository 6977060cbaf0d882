"""How a result was made: the command, the commit, the machine and the date, recorded in every benchmark and
evaluation JSON (no fasr imports: every layer may use it)."""

from __future__ import annotations

import contextlib
import os
import platform
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

__all__ = ["provenance", "git_commit", "cpu_model"]


def cpu_model() -> str:
    """The CPU results were measured on: timings move with it (2-core machines here have been Intel with native
    bf16 and AMD EPYC with AVX2 only, ~2x apart in fp32)."""
    info = {"model name": platform.processor() or "unknown", "cpu family": "", "model": ""}
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo") as f:
            for ln in f:
                key, _, value = ln.partition(":")
                if key.strip() in info:
                    info[key.strip()] = value.strip()
                if not ln.strip():
                    break  # the first processor's block
    # "AMD EPYC" alone names Zen 4 (family 25) and Zen 5 (family 26) alike
    generation = f" (family {info['cpu family']} model {info['model']})" if info["cpu family"] else ""
    return info["model name"] + generation


def git_commit() -> str | None:
    """The checkout's commit (``-dirty`` when tracked files differ from it), or None outside a git checkout."""
    root = Path(__file__).resolve().parents[1]
    if not (root / ".git").exists():  # an installed copy, not a checkout (a parent project's commit is not ours)
        return None
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10)
        if commit.returncode:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return commit.stdout.strip() + ("-dirty" if dirty else "")


def provenance(command: str | None = None) -> dict[str, Any]:
    """The record: ``command`` (default: this process's command line), ``commit``, ``machine``, ``date``.

    Args:
        command: the command to record, when it is not ``sys.argv`` (e.g. normalised for the report).
    """
    import torch

    return {
        "command": command or "fasr " + " ".join(sys.argv[1:]),
        "commit": git_commit(),
        "machine": {"cpu_model": cpu_model(), "cores": os.cpu_count(), "threads": torch.get_num_threads(),
                    "platform": platform.platform(), "python": platform.python_version(), "torch": torch.__version__,
                    "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"},
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
