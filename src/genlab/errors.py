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


class ParamError(GenlabError):
    """A bad value of one named parameter, worded about the parameter, not about a flag.

    Model and maths code know parameters (`eta`, `sample_steps`), not command-line
    flags: `raise ParamError("eta", "must be between 0 and 1, got 2")` reads
    "eta must be between 0 and 1, got 2" from Python, and the CLI, which knows
    which flag sets `eta`, prints "--eta must be between 0 and 1, got 2".
    """

    def __init__(self, param: str, message: str):
        super().__init__(f"{param} {message}")
        self.param, self.message = param, message

    def worded(self, name: str) -> str:
        """The message with the parameter called `name` (e.g. its flag)."""
        return f"{name} {self.message}"
