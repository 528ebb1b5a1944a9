"""Identity, Basic auth, lockouts and the handshake's building blocks (rows 3-8)."""

from __future__ import annotations

import base64
from dataclasses import replace
from datetime import datetime, timedelta

import pytest

from services.common import passwords
from services.common.config import Settings
from services.common.errors import StoreUnavailable
from services.common.store.port import Station, Token
from services.gateway.app import choose_subprotocol
from services.gateway.auth import parse_basic, station_id_from_path
from services.gateway.limits import AuthLimits, Limits
from services.gateway.tokens import TokenCache, token_status_of
from tests.unit.gateway_core.auth_support import PEPPER, PW, UTC, Clock, Store, authenticator, basic, station

@pytest.mark.parametrize("path,expected", [
    ("/ocpp/CP1", "CP1"), ("/ocpp/CP-1_a.b", "CP-1_a.b"), ("/ocpp/CP1?x=1", "CP1"), ("/ocpp/" + "A" * 48, "A" * 48),
    ("/ocpp/" + "A" * 49, None), ("/ocpp/a:b", None), ("/ocpp/a%2Fb", None), ("/ocpp/a%252Fb", None),
    ("/ocpp/..", None), ("/ocpp/a..b", None), ("/ocpp/a\x00b", None), ("/ocpp/", None), ("/ocpp/a/b", None),
    ("/ocpp/a b", None), ("/ocpp/%41", None), ("/other/CP1", None), ("/ocpp/é", None),
])
def test_station_ids_are_taken_from_the_raw_path_and_checked(path: str, expected: str | None) -> None:
    assert station_id_from_path(path) == expected


@pytest.mark.parametrize("header,expected", [
    (None, "missing"), ("", "missing"), ("Bearer abc", "malformed"), ("Basic", "malformed"),
    ("Basic !!!notbase64", "malformed"), ("Basic " + base64.b64encode(b"nocolon").decode(), "malformed"),
    ("Basic " + base64.b64encode(b"CP1:").decode(), "malformed"), ("Basic " + base64.b64encode(b"\xff\xfe:x").decode(), "malformed"),
    (basic("CP1", "pass:with:colons"), ("CP1", "pass:with:colons")), ("basic " + base64.b64encode(b"a:b").decode(), ("a", "b")),
])
def test_basic_credentials_are_parsed_strictly(header: str | None, expected: object) -> None:
    assert parse_basic(header) == expected


@pytest.mark.parametrize("header,ocpp21,expected", [
    (None, False, None), ("", False, None), ("ocpp1.5", False, None),
    ("ocpp2.1, ocpp1.6", False, "ocpp1.6"), ("ocpp2.1, ocpp1.6", True, "ocpp2.1"),
    ("ocpp2.0.1,ocpp1.6", False, "ocpp2.0.1"), ("OCPP1.6", False, None),
])
def test_the_first_supported_subprotocol_the_client_offers_is_chosen(header: str | None, ocpp21: bool, expected: str | None) -> None:
    assert choose_subprotocol(header, ocpp21) == expected


async def test_a_station_with_a_fingerprint_authenticates_without_scrypt() -> None:
    store = Store()
    store.stations["CP1"] = replace(station(), password_hash="scrypt$broken")
    out = await authenticator(store).authenticate("CP1", basic("CP1", PW), "10.0.0.1")
    assert out.ok and out.station is not None and out.station.id == "CP1" and out.profile == 1
    assert store.writes == []  # a normal login writes nothing


def count_scrypt(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Each scrypt verification the authenticator runs (the slow path), by password."""
    calls: list[str] = []
    slow = passwords.verify_password_slow

    def counting(password: str, stored: str) -> bool:
        calls.append(password)
        return slow(password, stored)

    monkeypatch.setattr(passwords, "verify_password_slow", counting)
    return calls


async def test_a_station_without_a_fingerprint_verifies_scrypt_once_then_stores_a_current_fingerprint(
        monkeypatch: pytest.MonkeyPatch) -> None:
    scrypts = count_scrypt(monkeypatch)
    store = Store()
    store.stations["CP1"] = station(fingerprint=False)
    a = authenticator(store)
    assert (await a.authenticate("CP1", basic("CP1", PW), "10.0.0.1")).ok
    assert passwords.fingerprint_is_current(PEPPER, store.stations["CP1"].password_fingerprint)
    assert len(store.writes) == 1 and scrypts == [PW]
    assert (await a.authenticate("CP1", basic("CP1", PW), "10.0.0.1")).ok
    assert scrypts == [PW]  # the second login used the stored fingerprint, no scrypt
    assert len(store.writes) == 1


async def test_a_scrypt_success_is_remembered_when_the_fingerprint_cannot_be_stored(
        monkeypatch: pytest.MonkeyPatch) -> None:
    scrypts = count_scrypt(monkeypatch)
    store = Store()
    store.stations["CP1"] = station(fingerprint=False)
    store.fail_writes = StoreUnavailable("down")
    a = authenticator(store)
    assert (await a.authenticate("CP1", basic("CP1", PW), "10.0.0.1")).ok
    assert (await a.authenticate("CP1", basic("CP1", PW), "10.0.0.1")).ok
    assert scrypts == [PW]  # remembered in memory: no second scrypt


@pytest.mark.parametrize("header,reason", [
    (None, "missing_credentials"), ("Basic zzz", "malformed_credentials"),
    (basic("CP2", PW), "username_mismatch"), (basic("CP1", "wrong-password-123"), "bad_password"),
])
async def test_bad_or_missing_credentials_are_401_with_a_challenge(header: str | None, reason: str) -> None:
    store = Store()
    store.stations["CP1"] = station()
    out = await authenticator(store).authenticate("CP1", header, "10.0.0.1")
    assert (out.status, out.reason) == (401, reason)
    assert out.headers["WWW-Authenticate"] == 'Basic realm="OCPP"'


async def test_an_unknown_station_is_404() -> None:
    out = await authenticator(Store()).authenticate("NOPE", basic("NOPE", PW), "10.0.0.1")
    assert out.status == 404


async def test_open_registration_creates_an_unknown_station_with_hash_and_fingerprint() -> None:
    store = Store()
    a = authenticator(store, open_registration=True)
    out = await a.authenticate("NEW1", basic("NEW1", PW), "10.0.0.1")
    assert out.ok
    st = store.stations["NEW1"]
    assert passwords.verify_password_slow(PW, st.password_hash)
    assert passwords.verify_fingerprint(PEPPER, "NEW1", PW, st.password_fingerprint)
    assert st.security_profile == 1


async def test_open_registration_still_needs_credentials() -> None:
    out = await authenticator(Store(), open_registration=True).authenticate("NEW1", None, "10.0.0.1")
    assert out.status == 401


@pytest.mark.parametrize("password", ["x" * 15, "x" * 41])
async def test_open_registration_enforces_the_ocpp_password_length(password: str) -> None:
    store = Store()
    out = await authenticator(store, open_registration=True).authenticate("NEW1", basic("NEW1", password), "10.0.0.1")
    assert (out.status, out.reason) == (401, "bad_password_length")
    assert store.stations == {}


@pytest.mark.parametrize("password", ["x" * 16, "x" * 40])
async def test_open_registration_accepts_16_to_40_characters(password: str) -> None:
    out = await authenticator(Store(), open_registration=True).authenticate("NEW1", basic("NEW1", password), "10.0.0.1")
    assert out.ok


async def test_a_disabled_station_is_refused_with_403() -> None:
    store = Store()
    store.stations["CP1"] = station(enabled=False)
    assert (await authenticator(store).authenticate("CP1", basic("CP1", PW), "10.0.0.1")).status == 403


async def test_five_failures_lock_the_station_for_that_source_only() -> None:
    store = Store()
    store.stations["CP1"] = station()
    a = authenticator(store)
    for i in range(5):
        assert (await a.authenticate("CP1", basic("CP1", f"wrong-{i}-xxxxxxxxxx"), "10.6.6.6")).reason == "bad_password"
    out = await a.authenticate("CP1", basic("CP1", PW), "10.6.6.6")
    assert (out.status, out.reason) == (401, "locked") and int(out.headers["Retry-After"]) > 0
    assert (await a.authenticate("CP1", basic("CP1", PW), "10.0.0.99")).ok


async def test_requests_without_credentials_never_lock_a_station() -> None:
    store = Store()
    store.stations["CP1"] = station()
    a = authenticator(store)
    for _ in range(100):
        assert (await a.authenticate("CP1", None, "10.0.0.1")).reason == "missing_credentials"
    assert (await a.authenticate("CP1", basic("CP1", PW), "10.0.0.1")).ok


async def test_failures_from_one_address_do_not_lock_the_other_stations_behind_it() -> None:
    store = Store()
    store.stations.update({f"CP{i}": station(f"CP{i}") for i in range(40)})
    a = authenticator(store)
    for i in range(35):
        await a.authenticate(f"CP{i}", basic(f"CP{i}", "wrong-password-xxxx"), "10.6.6.6")
    assert (await a.authenticate("CP39", basic("CP39", PW), "10.6.6.6")).ok  # same NAT address, never failed
    slowed = await a.authenticate("CP0", basic("CP0", PW), "10.6.6.6")  # this address failed for CP0
    assert (slowed.status, slowed.reason) == (429, "source_slowed") and int(slowed.headers["Retry-After"]) >= 1
    assert (await a.authenticate("CP0", basic("CP0", PW), "10.0.0.1")).ok


async def test_a_password_changed_moments_ago_is_picked_up_despite_the_cache() -> None:
    store = Store()
    store.stations["CP1"] = station()
    clock = Clock()
    a = authenticator(store, clock=clock)
    assert (await a.authenticate("CP1", basic("CP1", PW), "10.0.0.1")).ok
    new = "another-password-1234"
    store.stations["CP1"] = Station("CP1", "", passwords.fingerprint(PEPPER, "CP1", new))
    clock.t += 1.5  # past the re-read interval, within the station cache's lifetime
    assert (await a.authenticate("CP1", basic("CP1", new), "10.0.0.1")).ok


async def test_wrong_passwords_re_read_the_station_at_most_once_per_interval() -> None:
    store = Store()
    store.stations["CP1"] = station()
    clock = Clock()
    a = authenticator(store, clock=clock, fail_limit=1000)
    for i in range(20):
        await a.authenticate("CP1", basic("CP1", f"wrong-{i}-xxxxxxxxxxxx"), f"10.0.{i}.1")
    assert store.reads == 1
    clock.t += 1.5
    for i in range(20):
        await a.authenticate("CP1", basic("CP1", f"wrong-{i}-xxxxxxxxxxxx"), f"10.0.{i}.1")
    assert store.reads == 2


async def test_station_lookups_are_cached() -> None:
    store = Store()
    store.stations["CP1"] = station()
    a = authenticator(store)
    for _ in range(5):
        assert (await a.authenticate("CP1", basic("CP1", PW), "10.0.0.1")).ok
    assert store.reads == 1


def test_auth_limits_come_from_the_typed_settings() -> None:
    s = Settings(auth_fail_limit=3, auth_fail_window_s=30.0, auth_lock_s=90.0, auth_station_fail_limit=7,
                 auth_ip_fail_limit=9, auth_slow_max_s=20.0)
    lim = AuthLimits.from_settings(s)
    assert (lim.fail_limit, lim.fail_window_s, lim.lock_s, lim.station_fail_limit, lim.ip_fail_limit, lim.slow_max_s) == (
        3, 30.0, 90.0, 7, 9, 20.0)


def test_token_status_maps_unknown_expired_and_odd_statuses() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert token_status_of(None, now) == "Invalid"
    assert token_status_of(Token("T", "Accepted", expires_at=now - timedelta(seconds=1)), now) == "Expired"
    assert token_status_of(Token("T", "Blocked"), now) == "Blocked"
    assert token_status_of(Token("T", "Weird"), now) == "Invalid"


async def test_token_status_is_cached_and_served_stale_when_the_store_is_down() -> None:
    store = Store()
    store.tokens["T1"] = Token("T1", "Accepted")
    tokens = TokenCache(store, lambda: datetime.now(UTC), size=10, ttl_s=0.0)
    assert await tokens.status("T1") == "Accepted"
    store.fail = StoreUnavailable("down")
    assert await tokens.status("T1") == "Accepted"
    with pytest.raises(StoreUnavailable):
        await tokens.status("T2")


def test_limits_are_read_from_the_gateway_limit_settings() -> None:
    from services.common.config import load_settings

    assert Limits.from_settings(Settings()) == Limits()
    lim = Limits.from_settings(load_settings({
        "CSMS_HANDSHAKE_TIMEOUT_S": "2.5", "CSMS_CONNECTION_QUEUE_CAP": "4", "CSMS_MSG_RATE_PER_S": "1", "CSMS_MSG_BURST": "3",
        "CSMS_COMMAND_CONCURRENCY": "8", "CSMS_TOKEN_CACHE_TTL_S": "0", "CSMS_TOKEN_CACHE_SIZE": "10", "CSMS_CALL_TIMEOUT_S": "9",
    }))
    assert lim == Limits(open_timeout_s=2.5, queue_cap=4, msg_rate=1.0, msg_burst=3.0, command_concurrency=8,
                         token_cache_ttl_s=0.0, token_cache_size=10, call_timeout_s=9.0)


def test_auth_limits_are_read_from_the_auth_settings() -> None:
    from services.common.config import load_settings

    assert AuthLimits.from_settings(Settings()) == AuthLimits()
    lim = AuthLimits.from_settings(load_settings({
        "CSMS_AUTH_FAIL_LIMIT": "3", "CSMS_AUTH_MAX_TRACKED": "7", "CSMS_AUTH_STATION_CACHE_SIZE": "11",
        "CSMS_AUTH_STATION_CACHE_TTL_S": "0", "CSMS_AUTH_STATION_NEGATIVE_TTL_S": "0.5", "CSMS_AUTH_REREAD_INTERVAL_S": "2",
        "CSMS_AUTH_CERTIFICATE_CACHE_TTL_S": "3", "CSMS_AUTH_VERIFIED_TTL_S": "60", "CSMS_AUTH_SCRYPT_CONCURRENCY": "2",
    }))
    assert (lim.fail_limit, lim.max_tracked, lim.station_cache_size, lim.station_cache_ttl_s, lim.station_negative_ttl_s) == (
        3, 7, 11, 0.0, 0.5)
    assert (lim.reread_interval_s, lim.certificate_cache_ttl_s, lim.verified_ttl_s, lim.scrypt_concurrency) == (2.0, 3.0, 60.0, 2)
