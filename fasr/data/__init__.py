"""Data layer: readers, paired datasets, normalisation, degradations and the slice cache (``docs/data.md``).

Import the submodules (``fasr.data.datasets``, ``fasr.data.io``, ...); nothing is imported here so that
``fasr.data.config`` stays light for the CLI.
"""

__all__: list[str] = []
