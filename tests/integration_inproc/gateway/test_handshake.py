"""The upgrade: subprotocols, identity, Basic auth, lockouts, floods, slowloris (rows 1-14)."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from tests.integration_inproc.gateway.harness import Gateway, closed_with, raw_http, status_of, upgrade_request


async def status(gw: Gateway, station_id: str, **kw: object) -> int:
    with pytest.raises(aiohttp.WSServerHandshakeError) as info:
        await gw.connect(station_id, **kw)  # type: ignore[arg-type]
    return info.value.status


async def test_no_subprotocol_header_completes_the_handshake_without_one_then_closes(gw: Gateway) -> None:
    ws = await gw.connect("CP1", protocols=())
    assert ws.protocol is None
    assert await closed_with(ws) == 1002


async def test_only_ocpp15_offered_is_treated_like_no_subprotocol(gw: Gateway) -> None:
    ws = await gw.connect("CP1", protocols=("ocpp1.5",))
    assert ws.protocol is None
    assert await closed_with(ws) == 1002


async def test_ocpp16_is_selected_when_ocpp21_is_offered_first_but_disabled(gw: Gateway) -> None:
    ws = await gw.connect("CP1", protocols=("ocpp2.1", "ocpp1.6"))
    assert ws.protocol == "ocpp1.6"


async def test_ocpp21_is_selected_when_enabled(make_gateway) -> None:  # type: ignore[no-untyped-def]
    gw = await make_gateway(ocpp21=True)
    ws = await gw.connect("CP1", protocols=("ocpp2.1", "ocpp1.6"))
    assert ws.protocol == "ocpp2.1"


async def test_ocpp201_is_selected_in_client_preference_order(gw: Gateway) -> None:
    ws = await gw.connect("CP1", protocols=("ocpp2.0.1", "ocpp1.6"))
    assert ws.protocol == "ocpp2.0.1"


async def test_an_unknown_identity_is_404_without_upgrade(gw: Gateway) -> None:
    assert await status(gw, "NOBODY", add=False) == 404


@pytest.mark.parametrize("path", [
    "/ocpp/" + "A" * 49, "/ocpp/a:b", "/ocpp/a%2Fb", "/ocpp/a%252Fb", "/ocpp/..", "/ocpp/a..b", "/ocpp/a%00b", "/ocpp/",
])
async def test_a_malformed_identity_is_400(gw: Gateway, path: str) -> None:
    assert status_of(await raw_http(gw.port, upgrade_request(path))) in (400, 404)


async def test_a_nul_byte_in_the_path_is_refused(gw: Gateway) -> None:
    assert 400 <= status_of(await raw_http(gw.port, upgrade_request("/ocpp/a\x00b"))) < 500


async def test_a_username_different_from_the_path_identity_is_401(gw: Gateway) -> None:
    await gw.add_station("CP2")
    assert await status(gw, "CP1", user="CP2") == 401


async def test_no_credentials_is_401_with_a_basic_challenge(gw: Gateway) -> None:
    await gw.add_station("CP1")
    resp = await gw.session.get(gw.url("CP1"), headers={
        "Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version": "13", "Sec-WebSocket-Protocol": "ocpp1.6",
    })
    assert resp.status == 401
    assert resp.headers["WWW-Authenticate"] == 'Basic realm="OCPP"'


async def test_a_wrong_password_is_401(gw: Gateway) -> None:
    assert await status(gw, "CP1", password="not-the-password-xx") == 401


async def test_password_brute_force_locks_the_identity_out_for_that_source(gw: Gateway) -> None:
    await gw.add_station("CP1")
    for i in range(5):
        assert await status(gw, "CP1", password=f"guess-{i}-xxxxxxxxxxx") == 401
    assert await status(gw, "CP1") == 401  # even the right password, while locked (same source)
    assert gw.svc.web.auth.lockout.gate("CP1", "127.0.0.1").reason == "locked"


async def test_a_disabled_station_is_refused(gw: Gateway) -> None:
    await gw.add_station("CP1", enabled=False)
    assert await status(gw, "CP1") == 403


async def test_open_registration_creates_the_station_on_first_connect(make_gateway) -> None:  # type: ignore[no-untyped-def]
    gw = await make_gateway(open_registration=True)
    ws = await gw.connect("NEW1", add=False)
    assert ws.protocol == "ocpp1.6"
    assert (await gw.store.get_station("NEW1")) is not None


async def test_a_second_socket_wins_and_the_old_one_is_closed_1008(gw: Gateway) -> None:
    from services.gateway import metrics

    before = metrics.FENCED._value.get()
    old = await gw.connect("CP1")
    await gw.wait_connected("CP1")
    new = await gw.connect("CP1")
    assert await closed_with(old) == 1008
    assert not new.closed
    assert metrics.FENCED._value.get() == before + 1
    owner = await gw.store.get_owner("CP1")
    assert owner is not None and owner.connected and gw.svc.registry.get("CP1").epoch == owner.epoch


async def test_connecting_while_another_gateway_owns_the_station_fences_it(gw: Gateway) -> None:
    await gw.store.claim_station("CP1", "gateway-2")
    ws = await gw.connect("CP1")
    await gw.wait_connected("CP1")
    fences = [c for c in gw.commands(2) if c.command_type == "_Fence"]
    assert len(fences) == 1 and fences[0].station_id == "CP1"
    epoch = gw.svc.registry.get("CP1").epoch
    assert fences[0].fence_epoch == epoch and fences[0].target_gateway_id == "gateway-2"
    assert '"epoch"' in fences[0].params_json  # still readable by gateways older than the typed field
    assert not ws.closed


async def test_a_fence_with_a_newer_epoch_closes_the_local_socket_1008(gw: Gateway) -> None:
    ws = await gw.connect("CP1")
    await gw.wait_connected("CP1")
    epoch = gw.svc.registry.get("CP1").epoch
    await gw.send_command("CP1", "_Fence", {}, fence_epoch=epoch + 1)
    assert await closed_with(ws) == 1008


async def test_a_fence_of_a_gateway_older_than_the_typed_field_still_closes_the_local_socket(gw: Gateway) -> None:
    ws = await gw.connect("CP1")
    await gw.wait_connected("CP1")
    epoch = gw.svc.registry.get("CP1").epoch
    await gw.send_command("CP1", "_Fence", {"epoch": epoch + 1})
    assert await closed_with(ws) == 1008


@pytest.mark.parametrize("typed", [True, False])
async def test_a_fence_with_an_older_epoch_is_ignored(gw: Gateway, typed: bool) -> None:
    ws = await gw.connect("CP1")
    await gw.wait_connected("CP1")
    epoch = gw.svc.registry.get("CP1").epoch
    if typed:
        await gw.send_command("CP1", "_Fence", {}, fence_epoch=epoch)
    else:
        await gw.send_command("CP1", "_Fence", {"epoch": epoch})
    await asyncio.sleep(0.2)
    assert not ws.closed


async def test_connect_and_disconnect_are_published_and_ownership_released(gw: Gateway) -> None:
    ws = await gw.connect("CP1")
    ev = await gw.wait_event(lambda e: e.type_name == "StationConnected")
    assert ev.station_id == "CP1" and ev.body.subprotocol == "ocpp1.6" and ev.body.epoch >= 1  # type: ignore[union-attr]
    await ws.close()
    await gw.wait_event(lambda e: e.type_name == "StationDisconnected")
    for _ in range(100):
        owner = await gw.store.get_owner("CP1")
        if owner is not None and not owner.connected:
            break
        await asyncio.sleep(0.02)
    assert owner is not None and not owner.connected


async def test_slowloris_on_the_upgrade_is_dropped_at_the_open_timeout(make_gateway) -> None:  # type: ignore[no-untyped-def]
    gw = await make_gateway(handshake_timeout_s=0.5)
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    writer.write(b"GET /ocpp/CP1 HTTP/1.1\r\nHost: x\r\n")
    closed_after = None
    for _ in range(50):  # one header line every 100 ms: the request never completes
        try:
            writer.write(b"X-Slow: 1\r\n")
            await writer.drain()
            data = await asyncio.wait_for(reader.read(100), 0.1)
        except asyncio.TimeoutError:
            continue
        except ConnectionError:
            data = b""
        if data == b"":
            closed_after = loop.time() - t0
            break
    writer.close()
    assert closed_after is not None and 0.3 < closed_after < 2.0


async def test_129_headers_are_refused_with_4xx(gw: Gateway) -> None:
    extra = "".join(f"X-H{i}: v\r\n" for i in range(129))
    assert 400 <= status_of(await raw_http(gw.port, upgrade_request("/ocpp/CP1", extra=extra))) < 500


async def test_an_oversized_header_line_is_refused_with_4xx(gw: Gateway) -> None:
    extra = "X-Big: " + "a" * 10_000 + "\r\n"
    assert 400 <= status_of(await raw_http(gw.port, upgrade_request("/ocpp/CP1", extra=extra))) < 500


async def test_an_upgrade_flood_from_one_address_gets_429_and_others_are_unaffected(make_gateway) -> None:  # type: ignore[no-untyped-def]
    # upgrade_max_wait_s 0: past the burst refuse at once (by default it waits its turn up to a bound)
    gw = await make_gateway(upgrade_rate_per_ip=1.0, upgrade_burst_per_ip=3.0, upgrade_max_wait_s=0.0)
    ok = await gw.connect("CP1")
    codes = [status_of(await raw_http(gw.port, upgrade_request("/ocpp/CP1"))) for _ in range(5)]
    assert 429 in codes
    assert not ok.closed


async def test_health_endpoints_are_served_on_the_ocpp_port_and_metrics_are_not_by_default(gw: Gateway) -> None:
    for path in ("/healthz", "/readyz"):
        resp = await gw.session.get(f"http://127.0.0.1:{gw.port}{path}")
        assert resp.status == 200, path
    assert (await gw.session.get(f"http://127.0.0.1:{gw.port}/metrics")).status == 404


async def test_metrics_are_served_on_the_ocpp_port_when_asked_for(make_gateway) -> None:  # type: ignore[no-untyped-def]
    gw = await make_gateway(metrics_on_ocpp_port=True)
    body = await (await gw.session.get(f"http://127.0.0.1:{gw.port}/metrics")).text()
    assert "csms_gateway_connections_total" in body and "csms_gateway_callerrors_total" in body


async def test_stop_closes_sockets_with_1001_and_releases_ownership(make_gateway) -> None:  # type: ignore[no-untyped-def]
    gw = await make_gateway()
    ws = await gw.connect("CP1")
    await gw.wait_connected("CP1")
    stopper = asyncio.create_task(gw.svc.stop())
    assert await closed_with(ws) == 1001
    await stopper
    owner = await gw.store.get_owner("CP1")
    assert owner is not None and not owner.connected
    assert not gw.svc.ready()
    gw.svc.stop = _noop  # type: ignore[method-assign]


async def _noop() -> None:
    return None


async def test_a_silent_old_socket_does_not_delay_the_new_connection(gw: Gateway) -> None:
    from tests.integration_inproc.gateway.harness import call

    await gw.connect("CP1")  # never read again: it will not answer the close handshake
    await gw.wait_connected("CP1")
    new = await gw.connect("CP1")
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    assert (await call(new, "Heartbeat", {}))[0] == 3
    assert loop.time() - t0 < 1.0
