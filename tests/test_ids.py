"""Event ids: `evt_` + a ULID any library parses, strictly increasing within a process."""

from __future__ import annotations

import time
import uuid

from ulid import ULID

from models.ids import MonotonicUlids, new_event_id, random_uuids


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


def test_ids_stay_exact_across_a_carry_into_the_cached_high_bits(monkeypatch):
    monkeypatch.setattr(time, "time_ns", lambda: 1_700_000_000_000_000_000)  # one millisecond throughout
    ulids = MonotonicUlids()
    ulids.new()
    ulids._random = (1 << 20) - 2  # the next increments carry out of the low 20 bits
    ids = [ulids.new() for _ in range(3)]
    assert ids == sorted(ids) and len(set(ids)) == 3
    for event_id, random in zip(ids, range((1 << 20) - 1, (1 << 20) + 2), strict=True):
        assert bytes(ULID.from_str(event_id))[6:] == random.to_bytes(10, "big")


def test_a_batch_of_ids_carries_like_single_ids(monkeypatch):
    monkeypatch.setattr(time, "time_ns", lambda: 1_700_000_000_000_000_000)
    ulids = MonotonicUlids()
    ulids.new()
    ulids._random = (1 << 20) - 50
    batch = ulids.many(100)
    assert batch == sorted(batch) and len(set(batch)) == 100
    for offset, event_id in enumerate(batch):
        assert bytes(ULID.from_str(event_id))[6:] == ((1 << 20) - 49 + offset).to_bytes(10, "big")


def test_random_uuids_are_distinct_version_4_uuids():
    values = random_uuids(1000)
    assert len(set(values)) == 1000 and random_uuids(0) == []
    for value in values:
        parsed = uuid.UUID(value)
        assert str(parsed) == value and parsed.version == 4 and parsed.variant == uuid.RFC_4122
