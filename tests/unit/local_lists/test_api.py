"""/api/v1/stations/{id}/local-list: validation, versions that move only on a change, the
token store rule, tokens bumping their revision, the view against its OpenAPI schema."""

from __future__ import annotations

from typing import Any

import jsonschema

from services.api.openapi import openapi_document
from services.common import kinds
from services.stations.local_list_documents import TOKENS_REVISION_ID, read_tokens_revision
from tests.unit.api.builders import Api

_DOC = openapi_document()
PATH = "/api/v1/stations/ST1/local-list"


def _valid(value: Any) -> None:
    root = {"$ref": "#/components/schemas/LocalList", "components": _DOC["components"]}
    jsonschema.Draft202012Validator(root).validate(value)


async def test_an_explicit_list_is_stored_and_its_version_moves_only_on_a_change(api: Api) -> None:
    await api.a_station("ST1")
    entries = [{"id_token": "B", "status": "Blocked", "expires_at": "2027-01-01T00:00:00Z", "group_id": "G",
                "id_token_type": "ISO14443"}, {"id_token": "A"}]
    status, view = await api.call("PUT", PATH, {"entries": entries})
    assert status == 201, view
    _valid(view)
    assert view["mode"] == "explicit" and view["entry_count"] == 2 and view["desired_version"] == 1
    assert view["status"] == "pending" and view["confirmed_version"] is None
    status, again = await api.call("PUT", PATH, {"entries": list(reversed(entries))})
    assert status == 200 and again["desired_version"] == 1
    status, changed = await api.call("PUT", PATH, {"entries": entries[:1]})
    assert status == 200 and changed["desired_version"] == 2 and changed["entry_count"] == 1
    status, shown = await api.get(PATH + "?entries=true")
    assert status == 200
    _valid(shown)
    assert shown["entries"] == [{"id_token": "B", "id_token_type": "ISO14443", "status": "Blocked",
                                 "expires_at": "2027-01-01T00:00:00.000Z", "group_id": "G"}]
    status, cleared = await api.call("DELETE", PATH)
    assert status == 200 and cleared["entry_count"] == 0 and cleared["desired_version"] == 3
    _valid(cleared)


async def test_a_synced_list_counts_the_tokens_and_token_changes_bump_the_revision(api: Api) -> None:
    await api.a_station("ST1")
    assert await read_tokens_revision(api.rt.store) == 0
    for i, group in enumerate(["g1", "g1", "g2"]):
        status, _ = await api.post("/api/v1/tokens", {"id_token": f"T{i}", "group_id": group})
        assert status == 201
    assert await read_tokens_revision(api.rt.store) == 3
    status, _ = await api.call("PUT", "/api/v1/tokens/T0", {"status": "Blocked", "group_id": "g1"})
    assert status == 200
    status, _ = await api.call("DELETE", "/api/v1/tokens/T2")
    assert status == 204
    doc = await api.rt.store.get_doc(kinds.TOKENS_REVISION, TOKENS_REVISION_ID)
    assert doc is not None and doc["revision"] == 5
    status, view = await api.call("PUT", PATH, {"sync": ["g1"]})
    assert status == 201 and view["mode"] == "groups" and view["groups"] == ["g1"] and view["entry_count"] == 2
    _valid(view)
    status, view = await api.call("PUT", PATH, {"sync": "all"})
    assert status == 200 and view["mode"] == "all" and view["entry_count"] == 2 and view["desired_version"] == 2
    _, shown = await api.get(PATH + "?entries=1&limit=1")
    assert shown["entries"] == [{"id_token": "T0", "status": "Blocked", "group_id": "g1"}]


async def test_the_view_shows_the_sync_state(api: Api) -> None:
    await api.a_station("ST1")
    await api.call("PUT", PATH, {"entries": [{"id_token": "A"}]})
    await api.rt.store.put_doc_if(kinds.LOCAL_LIST_SYNC, "ST1", {
        "station_id": "ST1", "status": "in_sync", "revision": 1, "source": {"list_version": 1, "tokens_revision": None},
        "target_version": 1, "confirmed_version": 1, "confirmed": {"A": "x"}, "verified": True,
        "max_per_message": 1000, "max_source": "station", "confirmed_at": "2026-11-28T12:00:00.000Z"},
        expected_version=None, version=1)
    _, view = await api.get(PATH)
    _valid(view)
    assert view["status"] == "in_sync" and view["confirmed_version"] == 1 and view["max_per_message"] == 1000
    assert view["confirmed_at"] == "2026-11-28T12:00:00.000Z"
    # a new desired version above anything sent
    _, view = await api.call("PUT", PATH, {"entries": []})
    assert view["desired_version"] == 2 and view["status"] == "pending"


async def test_bad_input_is_a_400_naming_every_field_and_unknown_stations_404(api: Api) -> None:
    await api.a_station("ST1")
    status, body = await api.call("PUT", PATH, {"entries": [
        {"id_token": "A"}, {"id_token": "A"}, {"id_token": "B", "status": "Maybe", "expires_at": "soon"},
        {"id_token": "x" * 37}, "junk", {"id_token": "C", "colour": "red"}, {"id_token": "D", "id_token_type": "Nope"}]})
    assert status == 400, body
    assert set(body["details"]) == {"entries[1].id_token", "entries[2].status", "entries[2].expires_at",
                                    "entries[3].id_token", "entries[4]", "entries[5].colour", "entries[6].id_token_type"}
    for bad in ({}, {"entries": [], "sync": "all"}, {"sync": "some"}, {"sync": []}, {"sync": ["g", "g"]},
                {"sync": [1]}, {"entries": "A"}, {"entries": [{"id_token": "A"}] * 10_001}):
        status, body = await api.call("PUT", PATH, bad)
        assert status == 400 and body["details"], (bad, body)
    status, _ = await api.call("PUT", PATH, raw=b"[1]", headers={"Content-Type": "application/json"})
    assert status == 400
    assert (await api.call("PUT", "/api/v1/stations/NOPE/local-list", {"sync": "all"}))[0] == 404
    assert (await api.get(PATH))[0] == 404  # no list yet
    assert (await api.call("DELETE", PATH))[0] == 404
    assert (await api.get("/api/v1/stations/NOPE/local-list"))[0] == 404
    assert (await api.get(PATH + "?entries=maybe"))[0] == 400
