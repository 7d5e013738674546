"""Errors raised for bad metric inputs and missing tools.

A bad input must never turn into a silently wrong score: readers raise :class:`MetricInputError` naming the
file and (1-based) line, and the CLI turns it into exit code 2 with the message on stderr.
"""
from __future__ import annotations

from pathlib import Path


class MetricInputError(ValueError):
    """A prediction/reference input that the official scripts would reject or misread."""

    def __init__(self, message: str, path: str | Path | None = None, line: int | None = None):
        self.path = None if path is None else str(path)
        self.line = line
        self.reason = message
        where = ""
        if self.path is not None:
            where = self.path if line is None else f"{self.path}, line {line}"
            where += ": "
        super().__init__(where + message)


class ToolUnavailable(RuntimeError):
    """An external tool (Java, a jar, an optional package or model) is not available here."""


def describe_lines(line_numbers: list[int], limit: int = 10) -> str:
    """`3, 7, 12 (and 4 more)` -- for messages that name several offending lines."""
    shown = ", ".join(str(n) for n in line_numbers[:limit])
    rest = len(line_numbers) - limit
    return shown + (f" (and {rest} more)" if rest > 0 else "")
