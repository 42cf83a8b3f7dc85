"""User-facing errors.

A :class:`SweepError` is a problem with the user's input or environment. ``sweep.py`` prints its
message as one line on stderr and exits non-zero, without a traceback; anything else is a bug
and keeps its traceback.
"""

from __future__ import annotations


class SweepError(Exception):
    """An invalid input or environment, explained in one line that names the way out."""
