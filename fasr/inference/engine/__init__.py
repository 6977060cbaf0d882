"""The inference engine: slice stacks through a model within a memory budget (``slices``, ``tiling``, ``memory``),
volumes to stacks and back (``stacks``), whole volumes on their super-resolution grid (``volumes``), and a
through-plane model's adaptation to one scan (``adapt``). The front-ends (``fasr infer``, the Python API, the
dataset runner) sit above it in :mod:`fasr.inference`."""

__all__: list[str] = []
