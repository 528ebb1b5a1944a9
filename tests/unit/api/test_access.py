"""Operator access: API keys with roles, the roles table over every route, the bootstrap key,
throttling of wrong credentials (ADR 017 §8, docs/security.md "Roles")."""

from __future__ import annotations

import logging
import re
from datetime import timedelta
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from services.api import roles
from services.api.auth import PUBLIC_PATHS
from services.api.keys import KeyRing, check_name, parse_key
from services.api.throttle import FailureCounter, TrustedProxies, source_address
from services.common import kinds
from services.common.timeutil import to_ocpp, utcnow

from .access_harness import BOOTSTRAP, a_key, access_api
from .builders import Api, a_tariff_body

WRITE = ("POST", "PUT", "PATCH", "DELETE")


def _concrete(template: str) -> str:
    return re.sub(r"\{[^}]+\}", "X1", template)


def _api_routes(api: Api) -> list[tuple[str, str]]:
    assert api.service.app is not None
    out = []
    for r in api.service.app.router.routes():
        t = r.resource.canonical if r.resource is not None else ""
        if t.startswith("/api/v1") and t not in PUBLIC_PATHS and r.method != "HEAD":
            out.append((r.method, t))
    return out


# -- the table ----------------------------------------------------------------------------

async def test_every_route_the_app_registers_has_a_rule(tmp_path: Path) -> None:
    async with access_api(tmp_path) as api:
        routes = _api_routes(api)
        assert len(routes) > 40
        assert [rt for rt in routes if roles.rule_for(*rt) is None] == []
        assert roles.unruled_routes(routes, PUBLIC_PATHS) == []


async def test_a_viewer_key_is_refused_every_write_route(tmp_path: Path) -> None:
    async with access_api(tmp_path) as api:
        viewer = await a_key(api, "viewer")
        writes = [(m, t) for m, t in _api_routes(api) if m in WRITE]
        assert len(writes) > 20
        for method, template in writes:
            status, body = await api.call(method, _concrete(template), {}, key=viewer)
            assert status == 403, (method, template, status, body)
            assert body["error"] == f"role viewer may not {method} {template}"


def test_a_route_without_a_rule_is_admin_only_and_reported() -> None:
    assert roles.rule_for("GET", "/api/v1/brand-new-thing") is None
    assert roles.allowed("admin", "GET", "/api/v1/brand-new-thing")
    for role in ("operator", "installer", "billing", "viewer"):
        assert not roles.allowed(role, "GET", "/api/v1/brand-new-thing")
    assert roles.unruled_routes([("GET", "/api/v1/brand-new-thing"), ("GET", "/api/v1/stations")]) == [
        ("GET", "/api/v1/brand-new-thing")]


def test_new_routes_under_a_family_are_covered_by_its_rule() -> None:
    assert roles.allowed("installer", "POST", "/api/v1/stations/{id}/trust-anchors")
    assert not roles.allowed("operator", "POST", "/api/v1/stations/{id}/trust-anchors")
    assert roles.allowed("operator", "GET", "/api/v1/stations/{id}/certificates/{serial}")
    assert not roles.allowed("viewer", "GET", "/api/v1/stations/{id}/password")
    assert roles.allowed("viewer", "GET", "/api/v1/stations/{id}/some-future-view")
    assert not roles.allowed("installer", "GET", "/api/v1/sessions/{id}")
    assert not roles.allowed("operator", "GET", "/api/v1/api-keys/{id}")


def test_the_most_privileged_known_role_wins() -> None:
    assert roles.most_privileged(["viewer", "operator", "nonsense"]) == "operator"
    assert roles.most_privileged(["nonsense"]) is None


# -- the matrix over HTTP ---------------------------------------------------------------------

async def test_roles_matrix(tmp_path: Path) -> None:
    async with access_api(tmp_path) as api:
        viewer, billing, installer, operator = [await a_key(api, r) for r in ("viewer", "billing", "installer", "operator")]
        assert (await api.post("/api/v1/stations", {"id": "CP-1", "password": "p" * 20}, key=BOOTSTRAP))[0] == 201

        # viewer: reads, cannot create stations or send commands
        assert (await api.get("/api/v1/stations", key=viewer))[0] == 200
        assert (await api.post("/api/v1/stations", {"id": "CP-2", "password": "p" * 20}, key=viewer))[0] == 403
        assert (await api.post("/api/v1/stations/CP-1/commands", {"type": "Reset"}, key=viewer))[0] == 403

        # billing: writes tariffs, not stations
        assert (await api.post("/api/v1/tariffs", a_tariff_body(), key=billing))[0] == 201
        assert (await api.post("/api/v1/stations", {"id": "CP-3", "password": "p" * 20}, key=billing))[0] == 403
        assert (await api.get("/api/v1/stations", key=billing))[0] == 200

        # installer: Reset yes (the station is offline: 409, past the role check), RemoteStart no
        status, body = await api.post("/api/v1/stations/CP-1/commands", {"type": "Reset", "reset_type": "Soft"}, key=installer)
        assert status == 409, body
        status, body = await api.post("/api/v1/stations/CP-1/commands",
                                      {"type": "RemoteStart", "id_token": "T1"}, key=installer)
        assert status == 403 and "RemoteStart" in body["error"], body
        status, body = await api.post("/api/v1/stations/CP-1/commands", {"type": 5}, key=installer)
        assert status == 400, body  # a type that is no type is the route's 400, not a role question
        assert (await api.get("/api/v1/sessions", key=installer))[0] == 403
        assert (await api.post("/api/v1/tariffs", a_tariff_body(id="t2"), key=installer))[0] == 403

        # operator: sends RemoteStart (offline: 409), cannot list api keys or read the audit log
        assert (await api.post("/api/v1/stations/CP-1/commands", {"type": "RemoteStart", "id_token": "T1"},
                               key=operator))[0] == 409
        assert (await api.get("/api/v1/api-keys", key=operator))[0] == 403
        assert (await api.get("/api/v1/audit", key=operator))[0] == 403
        assert (await api.post("/api/v1/tariffs", a_tariff_body(id="t3"), key=operator))[0] == 403

        for key, role in ((viewer, "viewer"), (operator, "operator"), (BOOTSTRAP, "admin")):
            status, body = await api.get("/api/v1/whoami", key=key)
            assert status == 200 and body["role"] == role
        assert (await api.get("/api/v1/whoami", key=BOOTSTRAP))[1] == {"actor": "bootstrap", "role": "admin"}


# -- key lifecycle ------------------------------------------------------------------------------

async def test_a_key_works_once_created_and_is_refused_once_revoked(tmp_path: Path) -> None:
    async with access_api(tmp_path) as api:
        status, created = await api.post("/api/v1/api-keys", {"name": "ops", "role": "operator"}, key=BOOTSTRAP)
        assert status == 201
        assert set(created) == {"id", "name", "role", "key", "created_at", "expires_at"}
        key = created["key"]
        assert parse_key(key) == (created["id"], key.split("_", 2)[2])
        status, me = await api.get("/api/v1/whoami", key=key)
        assert status == 200 and me == {"actor": f"key:{created['id']}", "role": "operator"}

        status, listed = await api.get("/api/v1/api-keys", key=BOOTSTRAP)
        assert status == 200
        [item] = listed["items"]
        assert "key" not in item and "secret_hmac" not in item and item["id"] == created["id"]
        assert item["created_by"] == "bootstrap" and item["last_used_at"] is not None
        doc = await api.rt.store.get_doc(kinds.API_KEY, created["id"])
        assert doc is not None and key.split("_", 2)[2] not in str(doc)  # only the HMAC is stored

        status, revoked = await api.call("DELETE", f"/api/v1/api-keys/{created['id']}", key=BOOTSTRAP)
        assert status == 200 and revoked["revoked_at"] is not None
        status, body = await api.get("/api/v1/whoami", key=key)
        assert status == 401 and "revoked" in body["error"]
        assert (await api.call("DELETE", "/api/v1/api-keys/0123456789abcdef", key=BOOTSTRAP))[0] == 404


async def test_an_expired_key_and_a_wrong_secret_are_refused(tmp_path: Path) -> None:
    async with access_api(tmp_path) as api:
        soon = to_ocpp(utcnow() + timedelta(seconds=1))
        assert (await api.post("/api/v1/api-keys", {"name": "x", "role": "viewer", "expires_at": to_ocpp(utcnow())},
                               key=BOOTSTRAP))[0] == 400
        key = await a_key(api, "viewer", expires_at=soon)
        key_id, secret = parse_key(key) or ("", "")
        wrong = f"csms_{key_id}_{'A' * len(secret)}"
        status, body = await api.get("/api/v1/whoami", key=wrong)
        assert status == 401 and "wrong secret" in body["error"]
        # expire it without waiting: move the stored expiry into the past
        ring = api.service.ctx.keys
        assert isinstance(ring, KeyRing)
        doc = await api.rt.store.get_doc(kinds.API_KEY, key_id)
        assert doc is not None
        doc["expires_at"] = to_ocpp(utcnow() - timedelta(seconds=1))
        await api.rt.store.put_doc_if(kinds.API_KEY, key_id, {**doc, "revision": doc["revision"] + 1},
                                      expected_version=doc["revision"], version=doc["revision"] + 1)
        ring.forget(key_id)
        status, body = await api.get("/api/v1/whoami", key=key)
        assert status == 401 and "expired" in body["error"]


async def test_key_creation_is_validated(tmp_path: Path) -> None:
    async with access_api(tmp_path) as api:
        for body in ({"name": "x", "role": "root"}, {"role": "viewer"}, {"name": "", "role": "viewer"},
                     {"name": "x", "role": "viewer", "extra": 1}, {"name": "x", "role": "viewer", "expires_at": "soon"}):
            status, answer = await api.post("/api/v1/api-keys", body, key=BOOTSTRAP)
            assert status == 400, (body, answer)


@pytest.mark.parametrize("name", ["a\x00b", "night\nshift", "x\r", "tab\there", "del\x7f", "c1\x85",
                                  "line\u2028sep", "bidi\u202eflip", "   ", "n" * 101])
def test_a_key_name_must_be_1_to_100_printable_characters(name: str) -> None:
    assert check_name(name) is not None


def test_ordinary_key_names_are_accepted() -> None:
    assert [check_name(n) for n in ("x", "night shift (Zürich) #2", "n" * 100, "夜勤")] == [None] * 4


async def test_a_key_name_with_control_characters_is_400_and_never_reaches_the_log(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    async with access_api(tmp_path) as api:
        for name in ("evil\nINFO forged line", "nul\x00", "\u2028", " "):
            status, answer = await api.post("/api/v1/api-keys", {"name": name, "role": "viewer"}, key=BOOTSTRAP)
            assert status == 400 and "name" in answer["details"], (name, answer)
        status, created = await api.post("/api/v1/api-keys", {"name": "quoted 'name'", "role": "viewer"},
                                         key=BOOTSTRAP)
        assert status == 201
        assert (await api.call("DELETE", f"/api/v1/api-keys/{created['id']}", key=BOOTSTRAP))[0] == 200
    assert "forged line" not in caplog.text and "\x00" not in caplog.text
    assert repr("quoted 'name'") in caplog.text  # a user string is logged as its repr


async def test_a_key_lookup_is_cached_briefly_and_last_used_is_written_at_most_once_a_minute(tmp_path: Path) -> None:
    async with access_api(tmp_path) as api:
        key = await a_key(api, "viewer")
        key_id = (parse_key(key) or ("", ""))[0]
        store = api.rt.store
        reads_before = sum(n for (op, table), n in store.ops.items() if table == "documents")  # type: ignore[attr-defined]
        for _ in range(10):
            assert (await api.get("/api/v1/whoami", key=key))[0] == 200
        reads = sum(n for (op, table), n in store.ops.items() if table == "documents") - reads_before  # type: ignore[attr-defined]
        assert reads <= 3, reads  # one lookup, one read + one write of last_used_at, then the cache
        doc = await store.get_doc(kinds.API_KEY, key_id)
        assert doc is not None and doc["revision"] == 2 and doc["last_used_at"] is not None


# -- the bootstrap key ---------------------------------------------------------------------------

async def test_the_bootstrap_key_is_never_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    async with access_api(tmp_path) as api:
        assert (await api.get("/api/v1/whoami", key=BOOTSTRAP))[0] == 200
        assert (await api.post("/api/v1/stations", {"id": "CP-1", "password": "p" * 20}, key=BOOTSTRAP))[0] == 201
        assert (await api.get("/api/v1/whoami", key=BOOTSTRAP + "x"))[0] == 401
        assert (await api.get("/api/v1/whoami", key=BOOTSTRAP[:-1]))[0] == 401
        key = await a_key(api, "viewer")
        assert (await api.post("/api/v1/stations", {"id": "CP-2", "password": "p" * 20}, key=key))[0] == 403
        assert BOOTSTRAP not in repr(api.rt.settings) and BOOTSTRAP not in repr(api.service.ctx.settings)
    assert caplog.records
    assert BOOTSTRAP[4:-4] not in caplog.text
    assert key.split("_", 2)[2] not in caplog.text


# -- throttling -----------------------------------------------------------------------------------

async def test_wrong_credentials_past_the_limit_get_429_with_retry_after(tmp_path: Path) -> None:
    labels = {"reason": "throttled"}
    before = REGISTRY.get_sample_value("csms_api_auth_failures_total", labels) or 0
    async with access_api(tmp_path, api_auth_fail_limit=3) as api:
        assert (await api.get("/api/v1/whoami", key=None))[0] == 401  # a missing header is not counted
        for _ in range(3):
            assert (await api.get("/api/v1/whoami", key="csms_0123456789abcdef_" + "x" * 43))[0] == 401
        async with api.http.get(api.base + "/api/v1/whoami", headers={"Authorization": f"Bearer {BOOTSTRAP}"}) as r:
            assert r.status == 429
            assert 1 <= int(r.headers["Retry-After"]) <= 60
        assert (await api.get("/api/v1/openapi.json", key=None))[0] == 200  # public paths are not throttled
    assert (REGISTRY.get_sample_value("csms_api_auth_failures_total", labels) or 0) == before + 1


def test_the_failure_window_resets_after_a_minute() -> None:
    c = FailureCounter(limit=2)
    assert c.retry_after("a", 0.0) is None
    c.failed("a", 0.0)
    c.failed("a", 10.0)
    assert c.retry_after("a", 10.0) == 50
    assert c.retry_after("b", 10.0) is None
    assert c.first_refusal("a", 10.0) and not c.first_refusal("a", 11.0)
    assert c.retry_after("a", 60.0) is None


def test_forwarded_for_is_believed_only_from_trusted_proxies() -> None:
    trusted = TrustedProxies.from_cidrs(["10.0.0.0/8"])
    assert source_address("203.0.113.9", ["1.2.3.4"], trusted) == "203.0.113.9"
    assert source_address("10.0.0.2", ["1.2.3.4"], trusted) == "1.2.3.4"
    # a client-written left part is not believed past the trusted hops
    assert source_address("10.0.0.2", ["6.6.6.6, 1.2.3.4, 10.0.0.7"], trusted) == "1.2.3.4"
    assert source_address("10.0.0.2", ["garbage"], trusted) == "10.0.0.2"
    assert source_address("10.0.0.2", [], TrustedProxies()) == "10.0.0.2"


async def test_throttling_counts_the_forwarded_address_behind_a_trusted_proxy(tmp_path: Path) -> None:
    async with access_api(tmp_path, api_auth_fail_limit=2, trusted_proxies=("127.0.0.0/8",)) as api:
        for _ in range(2):
            assert (await api.get("/api/v1/whoami", key="nope", headers={"X-Forwarded-For": "198.51.100.1"}))[0] == 401
        assert (await api.get("/api/v1/whoami", key="nope", headers={"X-Forwarded-For": "198.51.100.1"}))[0] == 429
        assert (await api.get("/api/v1/whoami", key=BOOTSTRAP, headers={"X-Forwarded-For": "198.51.100.2"}))[0] == 200


# -- the OpenAPI document ----------------------------------------------------------------------------

async def test_the_access_answers_match_their_schemas_and_every_secured_operation_lists_403_and_429(
        tmp_path: Path) -> None:
    import jsonschema

    from services.api.openapi import openapi_document

    doc = openapi_document()

    def valid(value: object, schema: str) -> None:
        root = {"$ref": f"#/components/schemas/{schema}", "components": doc["components"]}
        jsonschema.Draft202012Validator(root).validate(value)

    async with access_api(tmp_path) as api:
        status, created = await api.post("/api/v1/api-keys", {"name": "n", "role": "viewer",
                                                               "expires_at": to_ocpp(utcnow() + timedelta(days=1))},
                                         key=BOOTSTRAP)
        valid(created, "ApiKeyCreated")
        await api.get("/api/v1/whoami", key=created["key"])
        valid((await api.get("/api/v1/api-keys", key=BOOTSTRAP))[1], "ApiKeyList")
        valid((await api.call("DELETE", f"/api/v1/api-keys/{created['id']}", key=BOOTSTRAP))[1], "ApiKey")
        valid((await api.get("/api/v1/whoami", key=BOOTSTRAP))[1], "WhoAmI")
        page = (await api.get("/api/v1/audit", key=BOOTSTRAP))[1]
        assert page["items"]
        valid(page, "AuditPage")
    assert doc["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    for path, item in doc["paths"].items():
        for method, op in item.items():
            if method == "parameters" or op.get("security") == []:
                continue
            assert {"401", "403", "429"} <= set(op["responses"]), (method, path)


# -- csms api-key ------------------------------------------------------------------------------------

def test_the_cli_creates_lists_and_revokes_keys_the_api_accepts(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import asyncio

    from services.api.keys_cli import main

    monkeypatch.setenv("CSMS_STORE_URL", f"sqlite:///{tmp_path}/a.db")
    monkeypatch.setenv("CSMS_AUTH_PEPPER", "pepper")  # the harness's runtime pepper
    assert main(["create", "--name", "night shift", "--role", "installer"]) == 0
    out = capsys.readouterr().out
    key = out.strip().splitlines()[-1]
    key_id = (parse_key(key) or ("", ""))[0]
    assert key_id and f"created api key {key_id}" in out

    assert main(["list"]) == 0
    listed = capsys.readouterr().out
    assert key_id in listed and "installer" in listed and "active" in listed and key.split("_", 2)[2] not in listed

    async def whoami() -> tuple[int, object]:
        async with access_api(tmp_path) as api:
            return await api.get("/api/v1/whoami", key=key)

    assert asyncio.run(whoami()) == (200, {"actor": f"key:{key_id}", "role": "installer"})
    assert main(["revoke", key_id]) == 0
    assert asyncio.run(whoami())[0] == 401
    assert main(["revoke", "0123456789abcdef"]) == 1
    assert main(["create", "--name", "x", "--role", "viewer", "--expires-at", "2001-01-01T00:00:00Z"]) == 2
    assert main(["create", "--name", "x", "--role", "viewer", "--expires-at", "tomorrow"]) == 2
    capsys.readouterr()
    assert main(["create", "--name", "two\nlines", "--role", "viewer"]) == 2
    assert "--name must be printable" in capsys.readouterr().err
