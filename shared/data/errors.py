"""The error of the data package."""

from __future__ import annotations


class DataError(ValueError):
    """A data problem a user can fix; the message is one line."""
