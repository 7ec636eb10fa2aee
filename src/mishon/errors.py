"""Exceptions that carry where in the input a problem is (file, row, field)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


class MishonError(Exception):
    """Base class for errors the command line reports as a message, without a traceback."""


@dataclass(frozen=True)
class Problem:
    """One problem in an input: where it is, which field, what is wrong, and a short reason key.

    `reason` groups problems for counting ("bad number", "duplicate post_id", ...);
    `message` is the human sentence.
    """

    file: str
    row: int | str | None
    field: str | None
    reason: str
    message: str
    row_label: str = "row"

    def __str__(self) -> str:
        where = self.file
        if self.row is not None:
            where += f", {self.row_label} {self.row}"
        if self.field is not None:
            where += f", field '{self.field}'"
        return f"{where}: {self.message}"

    def to_dict(self) -> dict[str, object]:
        return {
            "file": self.file,
            self.row_label: self.row,
            "field": self.field,
            "reason": self.reason,
            "message": self.message,
        }


class InputError(MishonError):
    """One or more problems in input data; the message lists them."""

    def __init__(self, problems: list[Problem], limit: int = 20) -> None:
        if not problems:
            raise ValueError("InputError needs at least one problem")
        self.problems = problems
        shown = [str(p) for p in problems[:limit]]
        more = len(problems) - len(shown)
        if more > 0:
            shown.append(f"... and {more} more problem(s)")
        super().__init__("\n".join(shown))

    @classmethod
    def single(
        cls,
        file: str | Path,
        message: str,
        *,
        row: int | str | None = None,
        field: str | None = None,
        reason: str = "bad input",
        row_label: str = "row",
    ) -> InputError:
        return cls([Problem(str(file), row, field, reason, message, row_label)])


class FieldError(ValueError):
    """A bad value in one field of one record; the importer adds the file and row."""

    def __init__(self, field: str, reason: str, message: str) -> None:
        self.field = field
        self.reason = reason
        super().__init__(message)
