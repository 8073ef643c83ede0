"""The review session file: round trip, and crafted files refused with a message naming the file."""

from __future__ import annotations

import json

import pytest

from annotator.core.errors import InputError
from annotator.core.review_session import ReviewSession, load_session

CASES = ["a", "b", "c"]


def test_round_trip_and_seen_does_not_downgrade(tmp_path):
    s = ReviewSession(reviewer="dr x", settings={"min_island_mm3": 50.0, "per_slice": False})
    s.set_status("a", "flagged", "liver tip cut off")
    s.mark_seen("a")
    s.mark_seen("b")
    s.current = "b"
    path = tmp_path / "annotator-review.json"
    s.save(path)
    back = load_session(path, CASES)
    assert back.state("a").status == "flagged"
    assert back.state("a").comment == "liver tip cut off"
    assert back.state("b").status == "reviewed"
    assert back.state("c").status == "not seen"
    assert back.current == "b"
    assert back.reviewer == "dr x"
    assert back.settings == s.settings
    assert back.with_status("flagged") == ["a"]


def _valid() -> dict:
    return {"format": "annotator-review", "version": 1, "cases": {"a": {"status": "reviewed"}}}


@pytest.mark.parametrize(("change", "problem"), [
    (lambda d: d.update(format="x"), "'format'"),
    (lambda d: d.update(version=9), "version 9"),
    (lambda d: d.update(labels="/etc/passwd"), "never file paths"),
    (lambda d: d["cases"].update({"../../etc/passwd": {"status": "reviewed"}}), "not in this dataset"),
    (lambda d: d["cases"]["a"].update(path="/tmp/x.nii.gz"), "unknown entries"),
    (lambda d: d["cases"]["a"].update(status="done"), "status 'done'"),
    (lambda d: d["cases"]["a"].update(comment=["x"]), "comment must be text"),
    (lambda d: d["cases"]["a"].update(updated="yesterday"), "'updated' must be a number"),
    (lambda d: d.update(cases=[1]), "'cases' must be an object"),
    (lambda d: d.update(current="zzz"), "'current' names no case"),
    (lambda d: d.update(settings={"x": [1]}), "'settings'"),
])
def test_crafted_sessions_are_refused(tmp_path, change, problem):
    data = _valid()
    change(data)
    path = tmp_path / "annotator-review.json"
    path.write_text(json.dumps(data))
    with pytest.raises(InputError, match=problem) as info:
        load_session(path, CASES)
    assert str(path) in str(info.value)


def test_unreadable_session(tmp_path):
    path = tmp_path / "s.json"
    path.write_text("{not json")
    with pytest.raises(InputError, match="cannot read the review session"):
        load_session(path, CASES)
