"""Local list rules, pure: differences, chunks, what a plan leaves confirmed, backoff and
reading the station's answers."""

from __future__ import annotations

from datetime import timedelta

from services.common.store.port import Token
from services.stations.domain.local_lists import (
    DIFFERENTIAL,
    FULL,
    ListEntry,
    Plan,
    SyncState,
    backoff,
    chunks,
    confirmed_after,
    differences,
    entries_from_tokens,
    fingerprints,
    fit_for_version,
    plan_update,
    reported_max,
    reported_version,
)
from tests.support.clock import T0


def _entries(n: int) -> list[ListEntry]:
    return [ListEntry(f"T{i:05d}") for i in range(n)]


def test_a_first_update_is_full_and_chunked_full_then_differential() -> None:
    plan = plan_update(SyncState("CP"), _entries(2500), 1000)
    assert plan is not None and plan.update_type == FULL
    parts = chunks(plan)
    assert [(t, len(e)) for t, e in parts] == [(FULL, 1000), (DIFFERENTIAL, 1000), (DIFFERENTIAL, 500)]
    assert parts[1][1][0].id_token == "T01000"


def test_an_empty_full_list_is_one_message_and_an_empty_differential_none() -> None:
    assert chunks(Plan(FULL, (), 10)) == [(FULL, ())]
    assert chunks(Plan(DIFFERENTIAL, (), 10)) == []


def test_differences_hold_changed_added_entries_and_removals_without_status() -> None:
    before = _entries(3)
    confirmed = fingerprints(before)
    after = [before[0], ListEntry("T00001", "Blocked"), ListEntry("NEW")]
    ops = differences(confirmed, after)
    assert [(e.id_token, e.status) for e in ops] == [("T00001", "Blocked"), ("NEW", "Accepted"), ("T00002", None)]
    assert ops[-1].params() == {"id_token": "T00002"}
    plan = plan_update(SyncState("CP", confirmed=confirmed), after, 100)
    assert plan is not None and plan.update_type == DIFFERENTIAL
    assert confirmed_after(confirmed, plan) == fingerprints(after)


def test_nothing_to_send_when_the_station_holds_the_list() -> None:
    entries = _entries(5)
    assert plan_update(SyncState("CP", confirmed=fingerprints(entries)), entries, 2) is None


def test_a_fingerprint_covers_status_expiry_group_and_type() -> None:
    base = ListEntry("A")
    variants = [ListEntry("A", "Blocked"), ListEntry("A", expires_at=T0), ListEntry("A", group_id="G"),
                ListEntry("A", id_token_type="ISO14443")]
    assert len({base.fingerprint(), *(v.fingerprint() for v in variants)}) == 5
    assert ListEntry("A", expires_at=T0).params() == {"id_token": "A", "status": "Accepted",
                                                       "expires_at": "2026-11-28T04:21:16.004Z"}


def test_tokens_by_group_and_version_limits() -> None:
    tokens = [Token("B", group_id="g1"), Token("A", "Blocked", group_id="g2"), Token("C")]
    assert [e.id_token for e in entries_from_tokens(tokens, None)] == ["A", "B", "C"]
    assert [e.id_token for e in entries_from_tokens(tokens, ["g2"])] == ["A"]
    long = [ListEntry("X" * 21), ListEntry("OK", group_id="G" * 21)]
    kept, skipped = fit_for_version(long, True)
    assert skipped == 1 and kept == [ListEntry("OK")]
    assert fit_for_version(long, False) == (long, 0)


def test_backoff_doubles_up_to_an_hour() -> None:
    assert backoff(60, 1) == timedelta(seconds=60)
    assert backoff(60, 3) == timedelta(seconds=240)
    assert backoff(60, 50) == timedelta(hours=1)


def test_answers_are_read_in_both_versions_and_junk_is_none() -> None:
    assert reported_version({"list_version": 7}) == 7
    assert reported_version({"version_number": -1}) == -1
    assert reported_version({"list_version": "x"}) is None and reported_version({}) is None
    assert reported_max({"configuration_key": [{"key": "SendLocalListMaxLength", "readonly": True, "value": "1000"}]}) == 1000
    assert reported_max({"get_variable_result": [{"attribute_status": "Accepted", "attribute_value": "250",
                                                  "component": {"name": "LocalAuthListCtrlr"},
                                                  "variable": {"name": "ItemsPerMessage"}}]}) == 250
    assert reported_max({"configuration_key": [{"key": "SendLocalListMaxLength", "value": "0"}]}) is None
    assert reported_max({"get_variable_result": [{"attribute_status": "UnknownVariable",
                                                  "variable": {"name": "ItemsPerMessage"}}]}) is None
    assert reported_max({"configuration_key": "junk"}) is None
