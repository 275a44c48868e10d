"""One exception type for problems a user can fix.

The CLI prints a `GenlabError` as a single line (no traceback), so its message
must say what went wrong *and* how to fix it.
"""


class GenlabError(Exception):
    """A user-facing error: bad input, missing data, a corrupt checkpoint, ..."""


class DataError(GenlabError):
    """A dataset file is missing, corrupt or unreadable."""


class CheckpointError(GenlabError):
    """A checkpoint is missing, corrupt or does not fit the request."""
