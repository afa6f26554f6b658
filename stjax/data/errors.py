"""Data errors and repair reports.

Every problem found in user data becomes an `Issue` that names the file, the line (or row)
and the field. Strict loading raises `DataError` with the first issues; repair loading drops
the bad records and counts each one, by kind, in a `RepairReport` so that
`kept + dropped == rows_read` always holds.
"""

from __future__ import annotations

import dataclasses
from collections import Counter

MAX_LISTED_ERRORS = 20


@dataclasses.dataclass(frozen=True)
class Issue:
    """One problem in one record: `file:line: field 'name': message`."""

    file: str
    line: int | None
    field: str | None
    message: str
    kind: str = "invalid"

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        what = f"field '{self.field}': " if self.field else ""
        return f"{where}: {what}{self.message}"


class DataError(Exception):
    """User data that cannot be loaded. Its message lists the first issues with locations."""

    def __init__(self, issues: list[Issue] | str, total: int | None = None):
        if isinstance(issues, str):
            issues = [Issue(file="", line=None, field=None, message=issues)]
        self.issues = list(issues)
        self.total = total if total is not None else len(self.issues)
        super().__init__(self.render())

    def render(self) -> str:
        shown = self.issues[:MAX_LISTED_ERRORS]
        lines = [str(i).lstrip(": ") if not i.file else str(i) for i in shown]
        if self.total > len(shown):
            lines.append(f"... and {self.total - len(shown)} more errors")
        return "\n".join(lines)


@dataclasses.dataclass
class RepairReport:
    """What repair mode did, per kind of problem. `kept + dropped == rows_read`."""

    rows_read: int = 0
    kept: int = 0
    dropped: Counter = dataclasses.field(default_factory=Counter)
    repaired: Counter = dataclasses.field(default_factory=Counter)
    examples: list[Issue] = dataclasses.field(default_factory=list)

    @property
    def total_dropped(self) -> int:
        return sum(self.dropped.values())

    def drop(self, kind: str, count: int = 1) -> None:
        """Records records removed after parsing (deduplication, k-core): kept shrinks."""
        if count:
            self.dropped[kind] += count
            self.kept -= count

    def as_dict(self) -> dict:
        return {
            "rows_read": self.rows_read,
            "kept": self.kept,
            "dropped": dict(self.dropped),
            "repaired": dict(self.repaired),
        }

    def check(self) -> None:
        assert self.kept + self.total_dropped == self.rows_read, self.as_dict()
