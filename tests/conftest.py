"""Suite-wide settings: one intra-op thread per test process.

The tests use tiny tensors, where a second OpenMP thread buys nothing, and on a 2-core machine shared with
pytest-xdist workers or other jobs spinning threads slowed single tests 5-30x.
"""

import torch


def pytest_configure(config) -> None:  # noqa: ARG001 - pytest hook signature
    torch.set_num_threads(1)
