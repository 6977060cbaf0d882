"""Inference: ``fasr infer`` (a user's scans) and ``fasr demo`` (the bundled subject); see docs/inference.md."""

__all__: list[str] = []
