"""The one error type for mistakes a user can fix (bad path, bad flag, bad data).

The CLI prints such an error as a single line and exits non-zero; any other
exception is a bug in genlab and keeps its traceback.
"""


class GenlabError(Exception):
    """A user-facing error: the message names the file, field or request at fault."""
