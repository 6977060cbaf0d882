"""User-facing errors: one line saying what is wrong and what to do."""

__all__ = ["FasrError"]


class FasrError(Exception):
    """An error caused by the user's input or environment.

    The CLI prints ``fasr: error: <message>`` and exits with status 2 instead of a traceback, so the message
    must say what is wrong and what to do about it, on one line.
    """
