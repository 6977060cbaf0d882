"""Scoring shared by training (validation) and evaluation: metrics, conventions, predictions grouped by volume."""

__all__: list[str] = []
