"""FASR-Net: Flexible Alignment Super-Resolution for multi-contrast MRI."""

__version__ = "0.1.0"
__all__ = ["FASRNet", "FASROutput", "__version__"]


def __getattr__(name: str):
    # Lazy so that `import fasr` (e.g. for the CLI's --help) does not import torch.
    if name in ("FASRNet", "FASROutput"):
        from fasr.models import fasrnet

        return getattr(fasrnet, name)
    raise AttributeError(name)
