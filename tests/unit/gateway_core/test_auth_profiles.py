"""Security profiles, client certificates, pending profiles, password rotation, invalidation
and equal cost of the station authenticator (issue 11; docs/security.md "Station connections")."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

import pytest

from services.common import kinds, passwords
from services.common.errors import StoreUnavailable
from services.common.store.port import Station
from services.gateway.auth import Transport
from tests.unit.gateway_core.auth_support import NEW_PW, PEPPER, PW, Clock, Store, authenticator, basic, station

TLS = Transport(True, None, None)


def cert(cn: str = "CP1", serial: str = "1a2b") -> Transport:
    return Transport(True, cn, serial)


@pytest.mark.parametrize("stored,transport,expected", [
    (None, Transport(False, None, None), (0, 1)), (1, TLS, (0, 2)), (2, TLS, (0, 2)),
    (2, Transport(False, None, None), (403, 0)), (3, TLS, (403, 0)), (3, Transport(False, None, None), (403, 0)),
    (1, cert(), (0, 3)), (2, cert(), (0, 3)), (3, cert(), (0, 3)),
])
async def test_a_station_never_connects_below_its_profile(stored: int | None, transport: Transport,
                                                          expected: tuple[int, int]) -> None:
    store = Store()
    store.stations["CP1"] = station(security_profile=stored)
    out = await authenticator(store).authenticate("CP1", basic("CP1", PW), "10.0.0.1", transport)
    assert (out.status, out.profile) == expected
    if out.status:
        assert out.reason == "security_profile"


async def test_a_downgraded_connection_is_refused_before_the_password_is_looked_at() -> None:
    store = Store()
    store.stations["CP1"] = station(security_profile=2)
    a = authenticator(store)
    for _ in range(10):  # wrong passwords over ws:// are not even counted: no password oracle there
        out = await a.authenticate("CP1", basic("CP1", "wrong-password-xxxxx"), "10.0.0.1")
        assert (out.status, out.reason) == (403, "security_profile")
    assert (await a.authenticate("CP1", basic("CP1", PW), "10.0.0.1", TLS)).ok


async def test_a_profile_3_connection_needs_no_basic_credentials() -> None:
    store = Store()
    store.stations["CP1"] = Station("CP1", "", security_profile=3)  # no password at all
    out = await authenticator(store).authenticate("CP1", None, "10.0.0.1", cert())
    assert out.ok and out.profile == 3


async def test_a_profile_3_connection_that_sends_credentials_must_send_the_right_ones() -> None:
    store = Store()
    store.stations["CP1"] = station(security_profile=3)
    a = authenticator(store)
    out = await a.authenticate("CP1", basic("CP1", "wrong-password-xxxxx"), "10.0.0.1", cert())
    assert (out.status, out.reason) == (401, "bad_password")
    assert (await a.authenticate("CP1", basic("CP1", PW), "10.0.0.1", cert())).ok


async def test_a_certificate_for_another_station_is_refused() -> None:
    store = Store()
    store.stations["CP1"] = station()
    out = await authenticator(store).authenticate("CP1", basic("CP1", PW), "10.0.0.1", cert(cn="CP2"))
    assert (out.status, out.reason) == (403, "certificate_identity")
    out = await authenticator(store).authenticate("CP1", basic("CP1", PW), "10.0.0.1", Transport(True, None, "99"))
    assert (out.status, out.reason) == (403, "certificate_identity")  # a certificate without a CN names nobody


async def test_a_revoked_certificate_is_refused_and_the_lookup_is_cached_until_invalidated() -> None:
    store = Store()
    store.stations["CP1"] = station(security_profile=3)
    a = authenticator(store)
    store.docs[(kinds.CERTIFICATE, "1a2b")] = {"serial": "1a2b", "station_id": "CP1", "status": "installed"}
    assert (await a.authenticate("CP1", None, "10.0.0.1", cert(serial="01A2B"))).ok  # serial normalised
    assert (await a.authenticate("CP1", None, "10.0.0.1", cert())).ok
    assert store.doc_reads == 1
    store.docs[(kinds.CERTIFICATE, "1a2b")]["status"] = "revoked"
    assert (await a.authenticate("CP1", None, "10.0.0.1", cert())).ok  # cached (a revocation invalidates)
    a.invalidate("CP1")
    out = await a.authenticate("CP1", None, "10.0.0.1", cert())
    assert (out.status, out.reason) == (403, "certificate_revoked")


async def test_a_certificate_the_csms_never_issued_is_not_revoked() -> None:
    store = Store()
    store.stations["CP1"] = station(security_profile=3)
    assert (await authenticator(store).authenticate("CP1", None, "10.0.0.1", cert(serial="ffff"))).ok


async def test_a_pending_profile_becomes_the_profile_on_the_first_connection_with_it() -> None:
    store = Store()
    store.stations["CP1"] = station(security_profile=1, pending_security_profile=2)
    a = authenticator(store)
    assert (await a.authenticate("CP1", basic("CP1", PW), "10.0.0.1")).ok  # the old profile still works
    assert store.writes == []
    out = await a.authenticate("CP1", basic("CP1", PW), "10.0.0.1", TLS)
    assert out.ok and out.profile == 2
    stored = store.stations["CP1"]
    assert (stored.security_profile, stored.pending_security_profile) == (2, None)
    assert out.station == stored and len(store.writes) == 1
    out = await a.authenticate("CP1", basic("CP1", PW), "10.0.0.1")
    assert (out.status, out.reason) == (403, "security_profile")


async def test_a_pending_profile_is_not_stored_over_a_station_that_changed_meanwhile() -> None:
    store = Store()
    store.stations["CP1"] = station(security_profile=1, pending_security_profile=2)
    a = authenticator(store)
    assert (await a.authenticate("CP1", basic("CP1", PW), "10.0.0.1")).ok  # cached
    store.stations["CP1"] = replace(store.stations["CP1"], enabled=False)  # not yet announced
    out = await a.authenticate("CP1", basic("CP1", PW), "10.0.0.1", TLS)
    assert (out.status, out.reason) == (403, "disabled")
    assert store.writes == []


def rotating(**kw: Any) -> Station:
    return station(pending_password_hash=passwords.hash_password(NEW_PW),
                   pending_password_fingerprint=passwords.fingerprint(PEPPER, "CP1", NEW_PW), **kw)


async def test_during_a_rotation_both_passwords_work_until_the_new_one_is_used() -> None:
    store = Store()
    store.stations["CP1"] = rotating()
    a = authenticator(store)
    assert (await a.authenticate("CP1", basic("CP1", PW), "10.0.0.1")).ok
    assert store.writes == []
    assert (await a.authenticate("CP1", basic("CP1", NEW_PW), "10.0.0.1")).ok
    stored = store.stations["CP1"]
    assert passwords.verify_fingerprint(PEPPER, "CP1", NEW_PW, stored.password_fingerprint)
    assert passwords.verify_password_slow(NEW_PW, stored.password_hash)
    assert (stored.pending_password_hash, stored.pending_password_fingerprint) == ("", "")
    out = await a.authenticate("CP1", basic("CP1", PW), "10.0.0.1")
    assert (out.status, out.reason) == (401, "bad_password")
    assert (await a.authenticate("CP1", basic("CP1", NEW_PW), "10.0.0.1")).ok


async def test_a_rotation_without_fingerprints_promotes_through_scrypt_and_forgets_the_old_verification() -> None:
    store = Store()
    store.stations["CP1"] = Station("CP1", passwords.hash_password(PW), pending_password_hash=passwords.hash_password(NEW_PW))
    a = authenticator(store)
    assert (await a.authenticate("CP1", basic("CP1", PW), "10.0.0.1")).ok  # scrypt, remembered; fingerprint stored
    store.writes.clear()
    assert (await a.authenticate("CP1", basic("CP1", NEW_PW), "10.0.0.1")).ok
    assert store.stations["CP1"].pending_password_hash == ""
    assert a.verified.get("CP1") is None
    assert not (await a.authenticate("CP1", basic("CP1", PW), "10.0.0.1")).ok


async def test_a_rotation_stored_after_the_station_was_cached_is_picked_up() -> None:
    store = Store()
    store.stations["CP1"] = station()
    clock = Clock()
    a = authenticator(store, clock=clock)
    assert (await a.authenticate("CP1", basic("CP1", PW), "10.0.0.1")).ok
    store.stations["CP1"] = rotating()  # POST .../password: no revocation is announced
    clock.t += 1.5
    assert (await a.authenticate("CP1", basic("CP1", NEW_PW), "10.0.0.1")).ok
    assert passwords.verify_fingerprint(PEPPER, "CP1", NEW_PW, store.stations["CP1"].password_fingerprint)


async def test_a_promotion_that_cannot_be_stored_still_lets_the_station_in() -> None:
    store = Store()
    store.stations["CP1"] = rotating()
    store.fail_writes = StoreUnavailable("down")
    a = authenticator(store)
    assert (await a.authenticate("CP1", basic("CP1", NEW_PW), "10.0.0.1")).ok
    store.fail_writes = None
    assert (await a.authenticate("CP1", basic("CP1", NEW_PW), "10.0.0.1")).ok
    assert store.stations["CP1"].pending_password_fingerprint == ""


@pytest.mark.parametrize("change", [
    lambda s: replace(s, enabled=False), lambda s: None,
    lambda s: replace(s, password_fingerprint=passwords.fingerprint(PEPPER, "CP1", NEW_PW), password_hash=""),
])
async def test_after_invalidate_a_revoked_station_is_refused_on_its_next_attempt(change: Any) -> None:
    store = Store()
    store.stations["CP1"] = station()
    a = authenticator(store)
    assert (await a.authenticate("CP1", basic("CP1", PW), "10.0.0.1")).ok
    changed = change(store.stations["CP1"])
    if changed is None:
        del store.stations["CP1"]
    else:
        store.stations["CP1"] = changed
    assert (await a.authenticate("CP1", basic("CP1", PW), "10.0.0.1")).ok  # cached: nothing announced yet
    a.invalidate("CP1")
    assert not (await a.authenticate("CP1", basic("CP1", PW), "10.0.0.1")).ok


async def test_invalidate_drops_only_that_station() -> None:
    store = Store()
    store.stations.update({"CP1": station("CP1", fingerprint=False), "CP2": station("CP2", fingerprint=False)})
    store.fail_writes = StoreUnavailable("keep the scrypt path")
    a = authenticator(store)
    for sid in ("CP1", "CP2"):
        assert (await a.authenticate(sid, basic(sid, PW), "10.0.0.1")).ok
    a.invalidate("CP1")
    assert a.verified.get("CP1") is None and a.stations.get("CP1") is None
    assert a.verified.get("CP2") is not None and a.stations.get("CP2") is not None


class SlowStore(Store):
    """get_station waits for `gate` (so a revocation can land while a read is in flight)."""

    def __init__(self) -> None:
        super().__init__()
        self.gate: asyncio.Event | None = None
        self.entered = asyncio.Event()

    async def get_station(self, sid: str) -> Station | None:
        value = self.stations.get(sid)  # the read is served before the revocation ...
        if self.gate is not None:
            self.entered.set()
            await self.gate.wait()
            self.gate = None
        self.reads += 1
        return value  # ... and arrives after it


async def test_an_attempt_in_flight_when_the_station_is_revoked_is_decided_again() -> None:
    store = SlowStore()
    store.stations["CP1"] = station()
    a = authenticator(store)
    store.gate = asyncio.Event()
    task = asyncio.create_task(a.authenticate("CP1", basic("CP1", PW), "10.0.0.1"))
    await store.entered.wait()
    store.stations["CP1"] = replace(store.stations["CP1"], enabled=False)
    a.invalidate("CP1")
    store.gate.set()
    out = await task
    assert (out.status, out.reason) == (403, "disabled")
    assert a.stations.get("CP1") is None or not a.stations.get("CP1").enabled  # type: ignore[union-attr]


class Counting:
    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.macs = 0
        self.scrypts = 0
        mac, slow = passwords._mac, passwords.verify_password_slow

        def counted_mac(*args: Any) -> str:
            self.macs += 1
            return mac(*args)

        def counted_slow(*args: Any) -> bool:
            self.scrypts += 1
            return slow(*args)

        monkeypatch.setattr(passwords, "_mac", counted_mac)
        monkeypatch.setattr(passwords, "verify_password_slow", counted_slow)


async def test_an_unknown_station_and_a_wrong_password_cost_one_hmac_each(monkeypatch: pytest.MonkeyPatch) -> None:
    store = Store()
    store.stations["CP1"] = station()  # scrypt hash and current fingerprint
    a = authenticator(store)
    await a.authenticate("CP1", basic("CP1", PW), "10.0.0.1")  # warm the cache
    n = Counting(monkeypatch)
    assert (await a.authenticate("NOPE", basic("NOPE", "wrong-password-xxxxx"), "10.0.0.2")).status == 404
    assert (n.macs, n.scrypts) == (1, 0)
    assert (await a.authenticate("CP1", basic("CP1", "wrong-password-xxxxx"), "10.0.0.2")).status == 401
    assert (n.macs, n.scrypts) == (2, 0)
    assert (await a.authenticate("CP1", basic("CP1", PW), "10.0.0.3")).ok
    assert (n.macs, n.scrypts) == (3, 0)


async def test_scrypt_runs_only_for_a_station_without_a_current_fingerprint(monkeypatch: pytest.MonkeyPatch) -> None:
    store = Store()
    legacy = "hmac-sha256$" + passwords.fingerprint(PEPPER, "CP2", PW).rsplit("$", 1)[1]
    store.stations.update({
        "CP1": station("CP1", fingerprint=False),
        "CP2": replace(station("CP2"), password_fingerprint=legacy),
        "CP3": replace(station("CP3"), password_fingerprint=passwords.fingerprint(b"old-pepper", "CP3", PW)),
    })
    a = authenticator(store)
    n = Counting(monkeypatch)
    for sid in ("CP1", "CP2", "CP3"):
        assert not (await a.authenticate(sid, basic(sid, "wrong-password-xxxxx"), "10.0.0.1")).ok
    assert n.scrypts == 3
    assert (await a.authenticate("CP2", basic("CP2", PW), "10.0.0.1")).ok  # the old form matches: no scrypt
    assert n.scrypts == 3
    assert passwords.fingerprint_is_current(PEPPER, store.stations["CP2"].password_fingerprint)
    assert (await a.authenticate("CP3", basic("CP3", PW), "10.0.0.1")).ok  # another pepper: scrypt, then renewed
    assert n.scrypts == 4 and passwords.fingerprint_is_current(PEPPER, store.stations["CP3"].password_fingerprint)


async def test_unknown_stations_count_against_the_pair_but_missing_credentials_do_not() -> None:
    a = authenticator(Store())
    for _ in range(10):
        assert (await a.authenticate("NOPE", None, "10.0.0.1")).reason == "unknown_station"
    assert a.lockout.sizes() == (0, 0, 0)
    for _ in range(5):
        await a.authenticate("NOPE", basic("NOPE", "wrong-password-xxxxx"), "10.0.0.1")
    assert (await a.authenticate("NOPE", basic("NOPE", "wrong-password-xxxxx"), "10.0.0.1")).reason == "locked"


async def test_a_station_over_its_total_failure_limit_slows_failing_sources_only() -> None:
    store = Store()
    store.stations["CP1"] = station()
    a = authenticator(store, station_fail_limit=10, fail_limit=5)
    for i in range(12):  # 12 sources, one failure each: no pair is locked
        await a.authenticate("CP1", basic("CP1", "wrong-password-xxxxx"), f"10.0.{i}.1")
    out = await a.authenticate("CP1", basic("CP1", PW), "10.0.0.1")
    assert (out.status, out.reason) == (429, "station_slowed") and int(out.headers["Retry-After"]) >= 1
    assert (await a.authenticate("CP1", basic("CP1", PW), "192.168.7.7")).ok  # a source without failures


async def test_rotation_and_profile_promotion_on_the_sqlite_store(tmp_path: Any) -> None:
    from services.common.store.sqlite import SqliteStore

    store = SqliteStore(f"sqlite:///{tmp_path}/a.db")
    await store.start()
    await store.migrate()
    try:
        await store.put_station(rotating(security_profile=1, pending_security_profile=2))
        a = authenticator(store)  # type: ignore[arg-type]
        assert (await a.authenticate("CP1", basic("CP1", PW), "10.0.0.1")).ok
        out = await a.authenticate("CP1", basic("CP1", NEW_PW), "10.0.0.1", TLS)
        assert out.ok and out.profile == 2
        stored = await store.get_station("CP1")
        assert stored is not None and (stored.security_profile, stored.pending_security_profile) == (2, None)
        assert passwords.verify_fingerprint(PEPPER, "CP1", NEW_PW, stored.password_fingerprint)
        assert stored.pending_password_fingerprint == ""
        a.invalidate("CP1")
        assert not (await a.authenticate("CP1", basic("CP1", PW), "10.0.0.1", TLS)).ok
    finally:
        await store.close()


async def test_no_credential_reaches_the_log(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("DEBUG")
    store = Store()
    store.stations["CP1"] = rotating(security_profile=1, pending_security_profile=2, fingerprint=False)
    a = authenticator(store, open_registration=True)
    headers = [basic("CP1", PW), basic("CP1", NEW_PW), basic("CP1", "wrong-password-xxxxx"), "Basic " + "A" * 30,
               "Bearer " + PW, basic("NEW1", "a-new-station-password")]
    for h in headers:
        await a.authenticate("CP1" if "NEW1" not in h else "NEW1", h, "10.0.0.1", TLS)
    text = caplog.text
    assert "promoted" in text or "rotated" in text  # something was logged ...
    for secret in [PW, NEW_PW, "wrong-password-xxxxx", "a-new-station-password", *headers]:
        assert secret not in text  # ... but no credential


async def test_a_pending_profile_below_the_stored_one_never_lowers_it() -> None:
    store = Store()
    store.stations["CP1"] = station(security_profile=3, pending_security_profile=2)
    out = await authenticator(store).authenticate("CP1", None, "10.0.0.1", cert())
    assert out.ok
    assert (store.stations["CP1"].security_profile, store.stations["CP1"].pending_security_profile) == (3, None)
