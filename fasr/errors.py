"""User-facing errors: one line saying what is wrong and what to do, and the exit status each gives.

Exit statuses of the ``fasr`` command (``docs/inference.md``): 0 done; 1 the job failed on its inputs, data,
checkpoint or environment (:class:`FasrError`); 2 the command line is wrong (argparse's own errors and
:class:`UsageError`); 130 interrupted. Batch runs (``fasr infer --bids``) exit 1 when any subject failed.
"""

__all__ = ["FasrError", "UsageError", "EXIT_FAILED", "EXIT_USAGE", "EXIT_INTERRUPTED"]

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class FasrError(Exception):
    """An error caused by the user's input, data or environment.

    The CLI prints ``fasr: error: <message>`` and exits with :attr:`exit_status` instead of a traceback, so the
    message must say what is wrong and what to do about it, on one line.
    """

    exit_status = EXIT_FAILED


class UsageError(FasrError):
    """Options that do not fit together or a malformed option value: exits like argparse's usage errors."""

    exit_status = EXIT_USAGE
