"""Every committed result says how it was made: each JSON under benchmarks/results/ records its command and commit."""

from __future__ import annotations

import json
from pathlib import Path

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"


def test_every_result_json_records_its_command_and_commit() -> None:
    # runs/ holds the suites' run records (their config and source fingerprint), the inputs of a <suite>.json.
    files = sorted(p for p in RESULTS.rglob("*.json") if p.relative_to(RESULTS).parts[0] != "runs")
    assert files
    missing = []
    for path in files:
        record = json.loads(path.read_text())
        if not (isinstance(record, dict) and record.get("command") and record.get("commit")):
            missing.append(str(path.relative_to(RESULTS)))
    assert not missing, f"results without command or commit: {missing}"
