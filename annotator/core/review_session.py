"""The review session of one dataset: which cases were seen, changed or flagged, the comments and
the reviewer's settings, kept as plain JSON beside the dataset so reopening resumes the review.

The file holds case ids and settings, never paths: a crafted session can name no file to read or
write. Every value is type-checked on load; a case id the dataset does not have is refused.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from annotator.core.atomic import atomic_write_text
from annotator.core.errors import InputError

SESSION_NAME = "annotator-review.json"
FORMAT = "annotator-review"
VERSION = 1
STATUSES = ("not seen", "reviewed", "modified", "flagged")
_MAX_COMMENT = 10_000
_MAX_BYTES = 64 << 20


@dataclass
class CaseState:
    status: str = "not seen"
    comment: str = ""
    updated: float = 0.0  # unix time of the last change

    def to_json(self) -> dict[str, Any]:
        return {"status": self.status, "comment": self.comment, "updated": self.updated}


@dataclass
class ReviewSession:
    cases: dict[str, CaseState] = field(default_factory=dict)
    current: str | None = None
    settings: dict[str, float | int | str | bool] = field(default_factory=dict)
    reviewer: str = ""

    def state(self, case_id: str) -> CaseState:
        return self.cases.get(case_id) or CaseState()

    def set_status(self, case_id: str, status: str, comment: str | None = None) -> None:
        if status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {status!r}")
        state = self.cases.setdefault(case_id, CaseState())
        state.status = status
        if comment is not None:
            state.comment = comment[:_MAX_COMMENT]
        state.updated = time.time()

    def mark_seen(self, case_id: str) -> None:
        """Opening a case counts as reviewing it unless it already has a stronger status."""
        if self.state(case_id).status == "not seen":
            self.set_status(case_id, "reviewed")

    def with_status(self, *statuses: str) -> list[str]:
        return [c for c, s in self.cases.items() if s.status in statuses]

    def to_json(self) -> dict[str, Any]:
        return {"format": FORMAT, "version": VERSION, "reviewer": self.reviewer, "current": self.current,
                "settings": self.settings, "cases": {c: s.to_json() for c, s in sorted(self.cases.items())}}

    def save(self, path: str | os.PathLike[str]) -> None:
        atomic_write_text(path, json.dumps(self.to_json(), indent=1, ensure_ascii=False) + "\n")


def session_path(dataset_root: str | os.PathLike[str]) -> Path:
    return Path(dataset_root) / SESSION_NAME


def load_session(path: str | os.PathLike[str], case_ids: list[str] | None = None) -> ReviewSession:
    """Read and check a session file; `case_ids` (the dataset's) refuses sessions of another dataset."""
    path = Path(path)
    try:
        if path.stat().st_size > _MAX_BYTES:
            raise InputError(path, "review session larger than 64 MiB: not a session file")
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(path, f"cannot read the review session ({exc})") from exc

    def bad(problem: str) -> InputError:
        return InputError(path, f"not a valid review session: {problem}")

    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise bad(f"'format' must be {FORMAT!r}")
    extra = sorted(set(data) - {"format", "version", "reviewer", "current", "settings", "cases"})
    if extra:
        raise bad(f"unknown entries {extra} (a session holds case ids and settings, never file paths)")
    if data.get("version") != VERSION:
        raise bad(f"version {data.get('version')!r} is not supported (this program reads {VERSION})")
    cases_raw = data.get("cases", {})
    if not isinstance(cases_raw, dict):
        raise bad("'cases' must be an object")
    known = set(case_ids) if case_ids is not None else None
    session = ReviewSession()
    for case_id, raw in cases_raw.items():
        if known is not None and case_id not in known:
            raise bad(f"case {case_id!r} is not in this dataset")
        if not isinstance(raw, dict):
            raise bad(f"case {case_id!r} must be an object")
        if set(raw) - {"status", "comment", "updated"}:
            raise bad(f"case {case_id!r}: unknown entries {sorted(set(raw) - {'status', 'comment', 'updated'})}")
        status, comment, updated = raw.get("status", "not seen"), raw.get("comment", ""), raw.get("updated", 0.0)
        if status not in STATUSES:
            raise bad(f"case {case_id!r}: status {status!r} is not one of {STATUSES}")
        if not isinstance(comment, str) or len(comment) > _MAX_COMMENT:
            raise bad(f"case {case_id!r}: comment must be text of at most {_MAX_COMMENT} characters")
        if isinstance(updated, bool) or not isinstance(updated, int | float):
            raise bad(f"case {case_id!r}: 'updated' must be a number")
        session.cases[case_id] = CaseState(status, comment, float(updated))
    current = data.get("current")
    if current is not None and (not isinstance(current, str) or (known is not None and current not in known)):
        raise bad(f"'current' names no case of this dataset: {current!r}")
    session.current = current
    settings = data.get("settings", {})
    if not isinstance(settings, dict) or not all(
            isinstance(k, str) and isinstance(v, int | float | str | bool) for k, v in settings.items()):
        raise bad("'settings' must map names to numbers, text or true/false")
    session.settings = dict(settings)
    reviewer = data.get("reviewer", "")
    if not isinstance(reviewer, str):
        raise bad("'reviewer' must be text")
    session.reviewer = reviewer
    return session
