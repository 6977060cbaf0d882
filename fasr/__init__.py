"""FASR-Net: Flexible Alignment Super-Resolution for multi-contrast MRI."""

__version__ = "0.1.0"
__all__ = ["FASRNet", "FASROutput", "SRResult", "load_model", "super_resolve", "__version__"]

_API = ("SRResult", "load_model", "super_resolve")


def __getattr__(name: str):
    # Lazy so that `import fasr` (e.g. for the CLI's --help) does not import torch.
    if name in ("FASRNet", "FASROutput"):
        from fasr.models import fasrnet

        return getattr(fasrnet, name)
    if name in _API:
        from fasr import api

        return getattr(api, name)
    raise AttributeError(name)
