"""Security profiles on the wire: `wss://` with Basic auth (2), client certificates (3),
trusted proxies and their headers, and where /metrics is served (issue 11; docs/security.md
"Station connections"). Real sockets, certificates from tests/support/certs.py."""

from __future__ import annotations

import datetime as dt
import ssl
from pathlib import Path
from typing import Any, Awaitable, Callable
from urllib.parse import quote

import aiohttp
import multidict
import pytest

from services.common.events import StationConnected
from tests.integration_inproc.gateway.harness import FREE, PW, Gateway, basic
from tests.support.certs import CA, Issued, client_context, issue, make_ca, pem, write_pem
from tests.support.waiting import eventually

P16 = ("ocpp1.6",)
MakeGateway = Callable[..., Awaitable[Gateway]]
CONNECT_FAILED = (aiohttp.ClientConnectionError, ssl.SSLError, ConnectionError)


class Pki:
    def __init__(self, folder: Path) -> None:
        self.ca: CA = make_ca("CSMS CA")
        self.other: CA = make_ca("Another CA")
        self.server = issue(self.ca, "localhost", server=True, client=False)
        self.cert_path, self.key_path = write_pem(folder, "server", self.server)
        self.ca_path = folder / "client-ca.pem"
        self.ca_path.write_text(pem(self.ca.cert))

    def tls_settings(self, **more: Any) -> dict[str, Any]:
        return dict(ocpp_port=FREE, ocpp_tls_port=FREE, tls_cert=str(self.cert_path),
                    tls_key=str(self.key_path), tls_client_ca=str(self.ca_path), **more)


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return Pki(tmp_path / "pki")


async def wss(gw: Gateway, pki: Pki, station_id: str, *, client: Issued | None = None, password: str | None = PW,
              headers: dict[str, str] | None = None) -> aiohttp.ClientWebSocketResponse:
    h = dict(headers or {})
    if password is not None:
        h["Authorization"] = basic(station_id, password)
    ws = await gw.session.ws_connect(gw.tls_url(station_id), protocols=P16, headers=h,
                                     ssl=client_context(pki.ca, client))
    gw.sockets.append(ws)
    return ws


async def ws_plain(gw: Gateway, station_id: str, *, password: str | None = PW,
                   headers: dict[str, str] | None = None) -> aiohttp.ClientWebSocketResponse:
    h = dict(headers or {})
    if password is not None:
        h["Authorization"] = basic(station_id, password)
    ws = await gw.session.ws_connect(gw.url(station_id), protocols=P16, headers=h)
    gw.sockets.append(ws)
    return ws


async def refused(connect: Awaitable[object]) -> tuple[int, str]:
    with pytest.raises(aiohttp.WSServerHandshakeError) as info:
        await connect
    return info.value.status, info.value.message


async def connected(gw: Gateway, station_id: str) -> StationConnected:
    env = await gw.wait_event(lambda e: e.station_id == station_id and isinstance(e.body, StationConnected))
    assert isinstance(env.body, StationConnected)
    return env.body


def now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


# -- profile 2: Basic auth over TLS ------------------------------------------------

async def test_a_profile_2_station_connects_over_wss_with_basic_auth(make_gateway: MakeGateway, pki: Pki) -> None:
    gw = await make_gateway(**pki.tls_settings())
    await gw.add_station("CP2", security_profile=2)
    ws = await wss(gw, pki, "CP2")
    assert ws.protocol == "ocpp1.6"
    event = await connected(gw, "CP2")
    assert event.security_profile == 2
    assert event.remote_addr == "127.0.0.1"


async def test_a_profile_2_station_over_plain_ws_is_refused_403(make_gateway: MakeGateway, pki: Pki) -> None:
    gw = await make_gateway(**pki.tls_settings())
    await gw.add_station("CP2", security_profile=2)
    assert (await refused(ws_plain(gw, "CP2")))[0] == 403
    body = await (await gw.session.get(gw.url("CP2"), headers={
        "Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version": "13", "Authorization": basic("CP2", PW)})).text()
    assert body.strip() == "security profile"


async def test_a_profile_1_station_still_connects_over_plain_ws(make_gateway: MakeGateway, pki: Pki) -> None:
    gw = await make_gateway(**pki.tls_settings())
    await gw.add_station("CP1", security_profile=1)
    await ws_plain(gw, "CP1")
    assert (await connected(gw, "CP1")).security_profile == 1


async def test_health_is_served_on_the_wss_port(make_gateway: MakeGateway, pki: Pki) -> None:
    gw = await make_gateway(**pki.tls_settings())
    resp = await gw.session.get(f"https://127.0.0.1:{gw.svc.tls_port}/healthz", ssl=client_context(pki.ca))
    assert resp.status == 200


async def test_tls_1_2_suites_outside_the_list_are_refused(make_gateway: MakeGateway, pki: Pki) -> None:
    gw = await make_gateway(**pki.tls_settings())
    await gw.add_station("CP2", security_profile=2)
    context = client_context(pki.ca)
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers("ECDHE-ECDSA-AES128-SHA256:ECDHE-ECDSA-CHACHA20-POLY1305")  # CBC and ChaCha: not OCPP's
    with pytest.raises(CONNECT_FAILED):
        await gw.session.ws_connect(gw.tls_url("CP2"), protocols=P16, headers={"Authorization": basic("CP2", PW)},
                                    ssl=context)
    context.set_ciphers("ECDHE-ECDSA-AES128-GCM-SHA256")
    gw.sockets.append(await gw.session.ws_connect(gw.tls_url("CP2"), protocols=P16,
                                                  headers={"Authorization": basic("CP2", PW)}, ssl=context))


async def test_wss_only_when_the_plain_port_is_0(make_gateway: MakeGateway, pki: Pki) -> None:
    gw = await make_gateway(**{**pki.tls_settings(), "ocpp_port": 0})
    assert gw.svc.port == 0 and gw.svc.tls_port != 0
    await gw.add_station("CP2", security_profile=2)
    await wss(gw, pki, "CP2")


# -- profile 3: client certificates --------------------------------------------------

async def test_a_profile_3_station_connects_with_its_certificate_and_no_password(make_gateway: MakeGateway, pki: Pki) -> None:
    gw = await make_gateway(**pki.tls_settings())
    await gw.add_station("CP3", security_profile=3)
    await wss(gw, pki, "CP3", client=issue(pki.ca, "CP3"), password=None)
    assert (await connected(gw, "CP3")).security_profile == 3


async def test_a_profile_3_station_without_a_certificate_is_refused(make_gateway: MakeGateway, pki: Pki) -> None:
    gw = await make_gateway(**pki.tls_settings())
    await gw.add_station("CP3", security_profile=3)
    status, _ = await refused(wss(gw, pki, "CP3"))
    assert status == 403


async def test_a_certificate_of_another_ca_fails_the_tls_handshake(make_gateway: MakeGateway, pki: Pki) -> None:
    gw = await make_gateway(**pki.tls_settings())
    await gw.add_station("CP3", security_profile=3)
    with pytest.raises(CONNECT_FAILED):
        await wss(gw, pki, "CP3", client=issue(pki.other, "CP3"), password=None)
    assert "CP3" not in gw.svc.registry


async def test_an_expired_certificate_fails_the_tls_handshake(make_gateway: MakeGateway, pki: Pki) -> None:
    gw = await make_gateway(**pki.tls_settings())
    await gw.add_station("CP3", security_profile=3)
    expired = issue(pki.ca, "CP3", not_before=now() - dt.timedelta(days=60), not_after=now() - dt.timedelta(days=1))
    with pytest.raises(CONNECT_FAILED):
        await wss(gw, pki, "CP3", client=expired, password=None)
    assert "CP3" not in gw.svc.registry


async def test_a_certificate_for_another_station_is_403_certificate_identity(make_gateway: MakeGateway, pki: Pki) -> None:
    gw = await make_gateway(**pki.tls_settings())
    await gw.add_station("CP3", security_profile=3)
    status, _ = await refused(wss(gw, pki, "CP3", client=issue(pki.ca, "CP9"), password=None))
    assert status == 403
    resp = await gw.session.get(gw.tls_url("CP3"), ssl=client_context(pki.ca, issue(pki.ca, "CP9")), headers={
        "Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version": "13"})
    assert (resp.status, (await resp.text()).strip()) == (403, "certificate identity")


async def test_the_client_ca_defaults_to_the_built_in_ca(make_gateway: MakeGateway, pki: Pki, tmp_path: Path) -> None:
    ca_dir = tmp_path / "ca"
    ca_dir.mkdir()
    (ca_dir / "ca.pem").write_text(pem(pki.ca.cert))
    gw = await make_gateway(**{**pki.tls_settings(), "tls_client_ca": "", "ca_dir": str(ca_dir)})
    await gw.add_station("CP3", security_profile=3)
    await wss(gw, pki, "CP3", client=issue(pki.ca, "CP3"), password=None)
    assert (await connected(gw, "CP3")).security_profile == 3


# -- behind a proxy -----------------------------------------------------------------------

HEADER = "X-SSL-Client-Cert"


def proxied(cert: Issued, **more: str) -> dict[str, str]:
    return {HEADER: quote(cert.pem, safe=""), "X-Forwarded-Proto": "https", **more}


async def test_a_certificate_header_from_a_trusted_proxy_is_accepted(make_gateway: MakeGateway, pki: Pki) -> None:
    gw = await make_gateway(**pki.tls_settings(trusted_proxies=("127.0.0.0/8",), client_cert_header=HEADER))
    await gw.add_station("CP3", security_profile=3)
    await ws_plain(gw, "CP3", password=None, headers=proxied(issue(pki.ca, "CP3"), **{"X-Forwarded-For": "203.0.113.7"}))
    event = await connected(gw, "CP3")
    assert (event.security_profile, event.remote_addr) == (3, "203.0.113.7")


async def test_envoy_xfcc_from_a_trusted_proxy_is_accepted(make_gateway: MakeGateway, pki: Pki) -> None:
    gw = await make_gateway(**pki.tls_settings(trusted_proxies=("127.0.0.0/8",), client_cert_header="X-Forwarded-Client-Cert"))
    await gw.add_station("CP3", security_profile=3)
    xfcc = f'Hash=00;Cert="{quote(issue(pki.ca, "CP3").pem, safe="")}";Subject="CN=CP3"'
    await ws_plain(gw, "CP3", password=None, headers={"X-Forwarded-Client-Cert": xfcc})
    assert (await connected(gw, "CP3")).security_profile == 3


@pytest.mark.parametrize("which", ["other_ca", "expired"])
async def test_a_bad_header_certificate_from_a_trusted_proxy_is_403_certificate_invalid(
        make_gateway: MakeGateway, pki: Pki, which: str) -> None:
    gw = await make_gateway(**pki.tls_settings(trusted_proxies=("127.0.0.0/8",), client_cert_header=HEADER))
    await gw.add_station("CP3", security_profile=3)
    cert = issue(pki.other, "CP3") if which == "other_ca" else issue(
        pki.ca, "CP3", not_before=now() - dt.timedelta(days=60), not_after=now() - dt.timedelta(days=1))
    resp = await gw.session.get(gw.url("CP3"), headers={
        "Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version": "13", "Sec-WebSocket-Protocol": "ocpp1.6", **proxied(cert)})
    assert (resp.status, (await resp.text()).strip()) == (403, "certificate invalid")


async def upgrade_status(gw: Gateway, station_id: str, headers: Any) -> tuple[int, str]:
    h = multidict.CIMultiDict({"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
                               "Sec-WebSocket-Version": "13", "Sec-WebSocket-Protocol": "ocpp1.6"})
    h.extend(headers)
    async with gw.session.get(gw.url(station_id), headers=h) as resp:
        return resp.status, (await resp.text()).strip()


@pytest.mark.parametrize("value", ["garbage", "%20", "CSR"])
async def test_an_unreadable_certificate_header_from_a_trusted_proxy_is_403_certificate_invalid(
        make_gateway: MakeGateway, pki: Pki, value: str) -> None:
    gw = await make_gateway(**pki.tls_settings(trusted_proxies=("127.0.0.0/8",), client_cert_header=HEADER))
    await gw.add_station("CP2", security_profile=2)
    if value == "CSR":
        value = quote("-----BEGIN CERTIFICATE REQUEST-----\nMIIB\n-----END CERTIFICATE REQUEST-----\n", safe="")
    # even with a good password: a certificate that cannot be read is not "no certificate"
    answer = await upgrade_status(gw, "CP2", [(HEADER, value), ("X-Forwarded-Proto", "https"), ("Authorization", basic("CP2", PW))])
    assert answer == (403, "certificate invalid")
    # an empty header is "no certificate": Basic auth decides
    await ws_plain(gw, "CP2", headers={HEADER: "", "X-Forwarded-Proto": "https"})
    assert (await connected(gw, "CP2")).security_profile == 2


async def test_of_two_certificate_headers_the_proxys_last_one_counts(make_gateway: MakeGateway, pki: Pki) -> None:
    gw = await make_gateway(**pki.tls_settings(trusted_proxies=("127.0.0.0/8",), client_cert_header=HEADER))
    await gw.add_station("CP3", security_profile=3)
    good, foreign = issue(pki.ca, "CP3"), issue(pki.other, "CP3")
    # the client's own line first (a good certificate it holds no key for), the proxy's last
    injected = [(HEADER, quote(good.pem, safe="")), (HEADER, quote(foreign.pem, safe="")), ("X-Forwarded-Proto", "https")]
    assert await upgrade_status(gw, "CP3", injected) == (403, "certificate invalid")
    ok = [(HEADER, quote(foreign.pem, safe="")), (HEADER, quote(good.pem, safe="")), ("X-Forwarded-Proto", "https")]
    gw.sockets.append(await gw.session.ws_connect(gw.url("CP3"), protocols=P16, headers=multidict.CIMultiDict(ok)))
    assert (await connected(gw, "CP3")).security_profile == 3


async def test_the_same_header_from_an_untrusted_peer_is_ignored(make_gateway: MakeGateway, pki: Pki) -> None:
    gw = await make_gateway(**pki.tls_settings(trusted_proxies=("10.0.0.0/8",), client_cert_header=HEADER))
    await gw.add_station("CP3", security_profile=3)
    await gw.add_station("CP1", security_profile=1)
    # profile 1 rules: a profile-3 station cannot use plain ws, whatever the headers say
    assert (await refused(ws_plain(gw, "CP3", password=None, headers=proxied(issue(pki.ca, "CP3")))))[0] == 403
    # and a profile-1 station still needs its password: the header proves nothing
    assert (await refused(ws_plain(gw, "CP1", password=None, headers=proxied(issue(pki.ca, "CP1")))))[0] == 401
    await ws_plain(gw, "CP1", headers=proxied(issue(pki.ca, "CP1")))
    assert (await connected(gw, "CP1")).security_profile == 1


async def test_x_forwarded_proto_from_a_trusted_proxy_makes_profile_2(make_gateway: MakeGateway, pki: Pki) -> None:
    gw = await make_gateway(trusted_proxies=("127.0.0.0/8",))
    await gw.add_station("CP2", security_profile=2)
    await ws_plain(gw, "CP2", headers={"X-Forwarded-Proto": "https"})
    assert (await connected(gw, "CP2")).security_profile == 2


async def test_x_forwarded_for_from_an_untrusted_peer_is_ignored(make_gateway: MakeGateway) -> None:
    gw = await make_gateway(trusted_proxies=("10.0.0.0/8",))
    await gw.add_station("CP1")
    await ws_plain(gw, "CP1", headers={"X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "https"})
    event = await connected(gw, "CP1")
    assert (event.remote_addr, event.security_profile) == ("127.0.0.1", 1)


async def test_upgrade_limits_count_the_forwarded_address(make_gateway: MakeGateway) -> None:
    gw = await make_gateway(trusted_proxies=("127.0.0.0/8",), upgrade_rate_per_ip=1.0, upgrade_burst_per_ip=2,
                            upgrade_max_wait_s=0.0)
    await gw.add_station("CP1")

    async def upgrade(source: str) -> int:
        resp = await gw.session.get(gw.url("CP1"), headers={"X-Forwarded-For": source})  # not an upgrade: 400
        return resp.status

    assert [await upgrade("203.0.113.7") for _ in range(3)] == [400, 400, 429]
    assert await upgrade("203.0.113.8") == 400   # another source behind the same proxy


# -- /metrics -----------------------------------------------------------------------------

async def test_metrics_have_their_own_listener_on_a_real_bus_and_not_the_ocpp_port(make_gateway: MakeGateway) -> None:
    gw = await make_gateway(bus_url="kafka://127.0.0.1:1", metrics_port=FREE)
    assert gw.svc.metrics_port != 0
    base = f"http://127.0.0.1:{gw.svc.metrics_port}"
    body = await (await gw.session.get(f"{base}/metrics")).text()
    assert "csms_gateway_connections_total" in body
    assert (await gw.session.get(f"{base}/readyz")).status == 200
    assert (await gw.session.get(f"http://127.0.0.1:{gw.port}/metrics")).status == 404


async def test_no_metrics_listener_on_the_in_memory_bus(make_gateway: MakeGateway) -> None:
    gw = await make_gateway(metrics_port=FREE)
    assert gw.svc.metrics_port == 0


async def test_the_metrics_listener_stops_with_the_gateway(make_gateway: MakeGateway) -> None:
    gw = await make_gateway(bus_url="kafka://127.0.0.1:1", metrics_port=FREE)
    port = gw.svc.metrics_port
    await gw.svc.stop()

    async def gone() -> bool:
        try:
            await gw.session.get(f"http://127.0.0.1:{port}/healthz")
        except aiohttp.ClientConnectionError:
            return True
        return False

    assert await eventually(gone, what="the metrics listener to close")
