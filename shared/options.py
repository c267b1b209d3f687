"""The command line of every command: :class:`ArgumentParser` and ``type=`` functions for option
values. A bad value (NaN, a negative count, an unparsable size) is argparse's own message as
one line, e.g. ``twostage prior: error: argument --temperature: must be a finite number >= 0,
got 'nan'``, with exit code 2 (through :func:`shared.cli.run_main`), before anything is loaded.

Sizes are ``WIDTHxHEIGHT`` in pixels everywhere (``1024x576`` is a landscape), the order of
image software (PIL's ``Image.size``, ImageMagick, ffmpeg) and of the VQGAN+CLIP notebooks."""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Callable

from shared.config import ConfigError
from shared.limits import LimitError, check_limit

SIZE_CONVENTION = (
    "WIDTHxHEIGHT in pixels, e.g. 1024x576 for a landscape (the order of image software)"
)
SEED_MAX = 2**32 - 1  # numpy's seeds (accelerate's set_seed seeds numpy too)


class UsageError(ConfigError):
    """A bad command line (unknown flag, missing or bad value): argparse's message."""


_RST_ROLE = re.compile(r":[A-Za-z][\w.+-]*:`(~?)([^`]*?)(?:\s*<[^`>]*>)?`")
_RST_LITERAL = re.compile(r"``(.+?)``", re.S)
_RST_PLAIN = re.compile(r"`([^`]+?)`_{0,2}")


def plain_text(text: str) -> str:
    """``text`` without reStructuredText markup, for ``--help``: double- and single-backquoted
    text loses its backquotes, and a role such as :class: or :func: gives way to its target
    (only the last dotted part of a ``~`` target)."""

    def role(m: re.Match) -> str:
        target = m.group(2).strip()
        return target.rsplit(".", 1)[-1] if m.group(1) else target

    text = _RST_ROLE.sub(role, text)
    text = _RST_LITERAL.sub(r"\1", text)
    return _RST_PLAIN.sub(r"\1", text)


class PlainHelpFormatter(argparse.HelpFormatter):
    """argparse's formatter over :func:`plain_text`: descriptions, epilogs and option helps
    (often a module docstring's first line) show without reStructuredText markup."""

    def _format_text(self, text: str) -> str:
        return super()._format_text(plain_text(text))

    def _expand_help(self, action: argparse.Action) -> str:
        return plain_text(super()._expand_help(action))


class ArgumentParser(argparse.ArgumentParser):
    """argparse whose errors are :class:`UsageError` (one line and exit code 2 under
    :func:`shared.cli.run_main`, like every other user error), and where the ``key=value``
    overrides of a command with ``overrides`` may stand anywhere among its flags (argparse
    alone takes them as one run); they keep their command-line order, so a later one wins.
    Sub-parsers are of this class too. Help texts print without reStructuredText markup
    (:class:`PlainHelpFormatter`)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", PlainHelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str):
        raise UsageError(message)

    def parse_args(self, args=None, namespace=None):
        parsed, extra = self.parse_known_args(args, namespace)
        if hasattr(parsed, "overrides"):
            late = [a for a in extra if "=" in a and not a.startswith("-")]
            parsed.overrides = [*parsed.overrides, *late]
            extra = [a for a in extra if a not in late]
        if extra:
            self.error(f"unrecognized arguments: {' '.join(extra)}")
        return parsed


def _fail(message: str, text: str) -> argparse.ArgumentTypeError:
    return argparse.ArgumentTypeError(f"{message}, got {text!r}")


def integer(
    low: int | None = None, high: int | None = None, limit: str | None = None
) -> Callable[[str], int]:
    """A type for integers in ``[low, high]``; ``limit`` names a :data:`shared.limits.LIMITS`
    bound the value must also respect."""
    if low is not None and high is not None:
        wanted = f"an integer in [{low}, {high}]"
    elif low is not None:
        wanted = f"an integer >= {low}"
    else:
        wanted = "an integer"

    def parse(text: str) -> int:
        try:
            value = int(text.strip())
        except ValueError:
            raise _fail(f"must be {wanted}", text) from None
        if (low is not None and value < low) or (high is not None and value > high):
            raise _fail(f"must be {wanted}", text)
        if limit is not None:
            try:
                check_limit(limit, value, "the value")
            except LimitError as e:
                raise argparse.ArgumentTypeError(str(e)) from None
        return value

    parse.__name__ = wanted
    return parse


def real(
    low: float | None = None, high: float | None = None, low_open: bool = False
) -> Callable[[str], float]:
    """A type for finite floats in ``[low, high]`` (``(low, high]`` with ``low_open``)."""
    if low is not None and high is not None:
        wanted = f"a number in {'(' if low_open else '['}{low:g}, {high:g}]"
    elif low is not None:
        wanted = f"a finite number {'>' if low_open else '>='} {low:g}"
    else:
        wanted = "a finite number"

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise _fail(f"must be {wanted}", text) from None
        below = low is not None and (value <= low if low_open else value < low)
        if not math.isfinite(value) or below or (high is not None and value > high):
            raise _fail(f"must be {wanted}", text)
        return value

    parse.__name__ = wanted
    return parse


positive_int = integer(1)
non_negative_int = integer(0)
seed = integer(0, SEED_MAX)
sample_count = integer(1, limit="samples")  # --num, --candidates: images one command makes
finite_float = real()
positive_float = real(0, low_open=True)
non_negative_float = real(0)
probability = real(0, 1, low_open=True)  # --top-p: 0 < p <= 1
fraction = real(0, 1)  # 0 <= x <= 1


def image_size(text: str) -> tuple[int, int]:
    """``"WIDTHxHEIGHT"`` pixels -> ``(width, height)``, both positive and within the pixel
    limit (:mod:`shared.limits`)."""
    parts = text.strip().lower().split("x")
    try:
        width, height = (int(v) for v in parts)
    except ValueError:
        raise _fail(f"must be {SIZE_CONVENTION}", text) from None
    if width < 1 or height < 1:
        raise _fail("width and height must be positive", text)
    try:
        check_limit("pixels", width * height, f"a {width}x{height} image")
    except LimitError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return width, height


image_size.__name__ = "WIDTHxHEIGHT size"
