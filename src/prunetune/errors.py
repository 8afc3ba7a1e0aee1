"""The one exception type for mistakes a user can cause.

Anything raised as :class:`UsageError` (bad path, bad column, bad layer list, empty
data, unknown recipe key ...) is reported by the CLI as a single line on stderr with
exit code 2 and no traceback. Everything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class UsageError(Exception):
    """A problem with the user's input; the message is shown as-is, on one line."""

    exit_code = 2
