"""Errors a person caused and can fix: printed as one line each, never as a traceback."""

from __future__ import annotations


class UserError(Exception):
    """A mistake in input (a file, a field, a flag). The message names the field and the fix."""

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or []
