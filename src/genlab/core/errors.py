"""The one error type for mistakes a user can fix (bad path, bad flag, bad data).

The CLI prints such an error as a single line and exits with status 1 (2 for
usage errors); any other exception is a bug in genlab and keeps its traceback.
"""


class GenlabError(Exception):
    """A user-facing error: the message names the file, field or request at fault."""


class Interrupted(GenlabError):
    """Training stopped by SIGINT or SIGTERM after writing a checkpoint of that exact step.

    The CLI exits with `exit_code` (128 + the signal: 130 for Ctrl-C, 143 for SIGTERM)."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.exit_code = 128 + signum


def check_range(name: str, value, low, high) -> None:
    """One line naming the option when `value` lies outside [low, high]."""
    if not low <= value <= high:
        raise GenlabError(f"{name}: {value} is out of range (allowed: {low} to {high})")
