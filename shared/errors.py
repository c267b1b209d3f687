"""An exception as one line of text, for the one-line messages users see."""

from __future__ import annotations


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (leading blank space skipped); its type name
    when the message is empty."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def one_line(exc: BaseException) -> str:
    """``Type: first sentence`` of an exception (at most 160 characters of it); ``Type`` alone
    when the message is empty."""
    sentence = first_line(exc).split(". ")[0][:160] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {sentence}" if sentence else type(exc).__name__
