"""Identity, Basic auth, lockouts and the handshake's building blocks (rows 3-8)."""

from __future__ import annotations

import base64
import time
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest

from services.common import passwords
from services.common.config import Settings
from services.common.errors import StoreUnavailable
from services.common.store.port import Station, Token
from services.gateway.app import choose_subprotocol
from services.gateway.auth import Authenticator, parse_basic, station_id_from_path
from services.gateway.limits import Limits
from services.gateway.tokens import TokenCache, token_status_of

PEPPER = b"test-pepper"
PW = "correct-horse-battery-staple"
UTC = timezone.utc


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


class Store:
    def __init__(self) -> None:
        self.stations: dict[str, Station] = {}
        self.tokens: dict[str, Token] = {}
        self.reads = 0
        self.fail: Exception | None = None

    async def get_station(self, sid: str) -> Station | None:
        self.reads += 1
        if self.fail:
            raise self.fail
        return self.stations.get(sid)

    async def put_station(self, st: Station) -> None:
        self.stations[st.id] = st

    async def get_token(self, id_token: str) -> Token | None:
        self.reads += 1
        if self.fail:
            raise self.fail
        return self.tokens.get(id_token)


def authenticator(store: Store, **settings: object) -> Authenticator:
    s = Settings(**settings)  # type: ignore[arg-type]
    return Authenticator(store, pepper=PEPPER, clock=lambda: datetime.now(UTC), open_registration=s.open_registration,
                         extra=s.extra)


def station(sid: str = "CP1", *, fingerprint: bool = True, **kw: object) -> Station:
    return Station(
        id=sid,
        password_hash=passwords.hash_password(PW),
        password_fingerprint=passwords.fingerprint(PEPPER, sid, PW) if fingerprint else "",
        **kw,  # type: ignore[arg-type]
    )


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
    assert out.ok and out.station is not None and out.station.id == "CP1"


async def test_a_station_without_a_fingerprint_verifies_scrypt_once_then_from_memory() -> None:
    store = Store()
    store.stations["CP1"] = station(fingerprint=False)
    a = authenticator(store)
    assert (await a.authenticate("CP1", basic("CP1", PW), "10.0.0.1")).ok
    t = time.perf_counter()
    assert (await a.authenticate("CP1", basic("CP1", PW), "10.0.0.1")).ok
    assert time.perf_counter() - t < 0.01  # scrypt takes tens of ms


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


async def test_open_registration_still_needs_credentials() -> None:
    out = await authenticator(Store(), open_registration=True).authenticate("NEW1", None, "10.0.0.1")
    assert out.status == 401


async def test_a_disabled_station_is_refused_with_403() -> None:
    store = Store()
    store.stations["CP1"] = station(enabled=False)
    assert (await authenticator(store).authenticate("CP1", basic("CP1", PW), "10.0.0.1")).status == 403


async def test_five_failures_lock_the_station_id_even_for_the_right_password() -> None:
    store = Store()
    store.stations["CP1"] = station()
    a = authenticator(store)
    for i in range(5):
        assert (await a.authenticate("CP1", basic("CP1", f"wrong-{i}-xxxxxxxxxx"), f"10.0.0.{i}")).reason == "bad_password"
    out = await a.authenticate("CP1", basic("CP1", PW), "10.0.0.99")
    assert (out.status, out.reason) == (401, "locked") and int(out.headers["Retry-After"]) > 0


async def test_failures_from_one_address_lock_that_address_for_every_station() -> None:
    store = Store()
    store.stations.update({f"CP{i}": station(f"CP{i}") for i in range(40)})
    a = authenticator(store)
    for i in range(30):
        await a.authenticate(f"CP{i}", basic(f"CP{i}", "wrong-password-xxxx"), "10.6.6.6")
    assert (await a.authenticate("CP39", basic("CP39", PW), "10.6.6.6")).reason == "locked"
    assert (await a.authenticate("CP39", basic("CP39", PW), "10.0.0.1")).ok


async def test_a_password_changed_moments_ago_is_picked_up_despite_the_cache() -> None:
    store = Store()
    store.stations["CP1"] = station()
    a = authenticator(store)
    assert (await a.authenticate("CP1", basic("CP1", PW), "10.0.0.1")).ok
    new = "another-password-1234"
    store.stations["CP1"] = Station("CP1", "", passwords.fingerprint(PEPPER, "CP1", new))
    assert (await a.authenticate("CP1", basic("CP1", new), "10.0.0.1")).ok


async def test_station_lookups_are_cached() -> None:
    store = Store()
    store.stations["CP1"] = station()
    a = authenticator(store)
    for _ in range(5):
        assert (await a.authenticate("CP1", basic("CP1", PW), "10.0.0.1")).ok
    assert store.reads == 1


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


def test_limits_are_read_from_settings_extra() -> None:
    assert Limits.from_extra({"queue_cap": "4", "msg_rate": 1}).queue_cap == 4
    assert Limits.from_extra({}).queue_cap == 16
