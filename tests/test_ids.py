"""Event ids: `evt_` + a ULID any library parses, strictly increasing within a process."""

from __future__ import annotations

import time

from ulid import ULID

from models.ids import MonotonicUlids, new_event_id


def test_ids_parse_as_ulids_with_the_current_time():
    before = time.time()
    event_id = new_event_id()
    assert event_id.startswith("evt_") and len(event_id) == 30
    assert before - 0.01 <= ULID.from_str(event_id[4:]).timestamp <= time.time() + 0.01


def test_ids_increase_strictly_even_within_one_millisecond():
    ids = [new_event_id() for _ in range(50_000)]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)


def test_a_clock_that_steps_back_keeps_the_order(monkeypatch):
    ulids = MonotonicUlids()
    first = ulids.new()
    monkeypatch.setattr(time, "time_ns", lambda: 0)
    assert ulids.new() > first
