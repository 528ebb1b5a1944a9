"""The certificates processor on the memory bus and the in-memory store: CSR events in,
`certificate` documents and CertificateSigned / TriggerMessage commands out."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from services.certificates import wiring
from services.certificates.documents import Certificate, Certificates
from services.common import codec, pki, topics
from services.common import events as ev
from services.common.runtime import Runtime
from tests.support.clock import FixedClock
from tests.support.runtime import a_runtime, running
from tests.support.waiting import eventually
from tests.unit.certificates.builders import csr_pem, ec_key, new_ca_dir, rsa_key

STATION = "CS-1"


@dataclass
class World:
    rt: Runtime
    clock: FixedClock
    wired: wiring.CertificatesProcessor

    @property
    def certificates(self) -> Certificates:
        return self.wired.handler.certificates

    async def publish(self, body: ev.Body, *, station_id: str = STATION, event_id: str | None = None) -> ev.Envelope:
        env = ev.Envelope(
            event_id=event_id or str(uuid.uuid4()), station_id=station_id, received_at=self.clock(), body=body,
            gateway_id="gateway-0", ocpp_version="2.0.1", action=type(body).__name__,
        )
        await self.rt.bus.publish(topics.EVENTS, station_id, codec.encode_event(env), codec.event_headers(env))
        await self.settled()
        return env

    async def settled(self) -> None:
        lag = self.rt.bus.lag  # type: ignore[attr-defined]
        await eventually(lambda: lag(wiring.GROUP, topics.EVENTS) == 0, what="the certificates processor consumed csms.events.v1")

    async def commands(self) -> list[codec.Command]:
        records = await self.rt.bus.read(topics.COMMANDS)  # type: ignore[attr-defined]
        return [codec.decode_command(r.value) for r in records]

    async def csr(self, *, station_id: str = STATION, certificate_type: str = "ChargingStationCertificate",
                  pem: str | None = None, event_id: str | None = None) -> ev.Envelope:
        body = ev.CertificateSigningRequest(csr=pem or csr_pem(station_id, ec_key()), certificate_type=certificate_type,
                                            status="Accepted")
        return await self.publish(body, station_id=station_id, event_id=event_id)

    async def answer(self, cert: Certificate, status: str) -> None:
        await self.publish(ev.CommandResult(command_id=cert.command_id, command_type="CertificateSigned", status=status))

    async def only(self, station_id: str = STATION) -> list[Certificate]:
        return await self.certificates.of_station(station_id)


@asynccontextmanager
async def world(tmp_path: Path, *, ca: bool = True, **settings: Any) -> AsyncIterator[World]:
    clock = FixedClock()
    if ca:
        settings["ca_dir"] = str(new_ca_dir(tmp_path))
    rt = a_runtime(clock=clock, **settings)
    async with running(rt):
        await rt.store.claim_station(STATION, "gateway-0")
        wired = wiring.wire(rt)
        await wired.processor.start()
        try:
            yield World(rt, clock, wired)
        finally:
            await wired.processor.stop()


async def test_a_csr_is_signed_stored_and_sent_as_certificate_signed(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        await w.csr()
        [cert] = await w.only()
        assert cert.status == "issued" and cert.certificate_type == "ChargingStationCertificate"
        assert cert.command_id == f"cert-{cert.serial}" and cert.command_status == "Sent"
        leaf = pki.load_certificate(cert.pem.encode())
        assert pki.serial_hex(leaf) == cert.serial and pki.certificate_identity(leaf) == STATION
        doc = await w.rt.store.get_doc("certificate", cert.serial)
        assert doc is not None and doc["station_id"] == STATION and doc["not_after"].endswith("Z")
        [cmd] = (await w.commands())
        assert (cmd.command_type, cmd.command_id, cmd.station_id, cmd.issuer) == (
            "CertificateSigned", cert.command_id, STATION, "certificates")
        params = json.loads(cmd.params_json)
        assert params["certificate_type"] == "ChargingStationCertificate"
        chain = pki.load_certificates(params["certificate_chain"].encode())
        assert chain[0] == leaf and len(chain) == 2


async def test_a_redelivered_csr_event_signs_nothing_new(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        env = await w.csr()
        assert isinstance(env.body, ev.CertificateSigningRequest)
        await w.csr(pem=env.body.csr, event_id=env.event_id)
        assert len(await w.only()) == 1
        assert len((await w.commands())) == 1


async def test_the_station_answer_installs_and_supersedes_the_previous_certificate(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        await w.csr()
        [first] = await w.only()
        await w.answer(first, "Accepted")
        [first] = await w.only()
        assert (first.status, first.command_status) == ("installed", "Accepted")

        w.clock.advance(timedelta(days=300))
        await w.csr(pem=csr_pem(STATION, rsa_key()))
        second, first_again = await w.only()
        assert second.status == "issued" and first_again.status == "installed"
        await w.answer(second, "Accepted")
        second, first_again = await w.only()
        assert second.status == "installed" and first_again.status == "superseded"

        w.clock.advance(timedelta(days=1))
        await w.csr()
        third = (await w.only())[0]
        await w.answer(third, "Rejected")
        third, second, _ = await w.only()
        assert (third.status, third.command_status) == ("rejected", "Rejected")
        assert second.status == "installed"


async def test_a_revoked_certificate_stays_revoked_whatever_the_station_answers(tmp_path: Path) -> None:
    from services.certificates.documents import revoked

    async with world(tmp_path) as w:
        await w.csr()
        [cert] = await w.only()
        assert await w.certificates.put(revoked(cert, reason="compromised", now=w.clock())) is not None
        await w.answer(cert, "Accepted")
        [after] = await w.only()
        assert after.status == "revoked" and after.command_status == "Accepted" and after.revocation_reason == "compromised"


async def test_invalid_csrs_and_unsigned_types_write_nothing(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        await w.csr(pem=csr_pem("CS-OTHER"))                      # CN is another station
        await w.csr(pem=csr_pem(STATION, rsa_key(1024)))           # weak key
        await w.csr(pem="garbage")
        await w.csr(certificate_type="V2GCertificate")             # not this CA's
        await w.publish(ev.CertificateSigningRequest(csr=csr_pem(STATION), certificate_type="", status="Rejected"))
        assert await w.only() == [] and (await w.commands()) == []
        # 1.6 sends no type: signed as the charging station certificate
        await w.csr(certificate_type="")
        [cert] = await w.only()
        assert cert.certificate_type == "ChargingStationCertificate"


async def test_a_station_that_is_offline_gets_its_certificate_marked_offline(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        await w.csr(station_id="CS-AWAY", pem=csr_pem("CS-AWAY"))
        [cert] = await w.only("CS-AWAY")
        assert (cert.status, cert.command_status) == ("issued", "StationOffline")
        assert (await w.commands()) == []


async def test_without_a_ca_nothing_is_signed(tmp_path: Path) -> None:
    async with world(tmp_path, ca=False) as w:
        await w.csr()
        assert await w.only() == [] and (await w.commands()) == []


async def test_renewal_triggers_once_a_day_within_the_margin_then_expires(tmp_path: Path) -> None:
    async with world(tmp_path, cert_validity_days=60, cert_renew_before_days=30) as w:
        await w.csr()
        [cert] = await w.only()
        await w.answer(cert, "Accepted")
        renew = w.wired.renewer.run

        await renew()
        assert [c.command_type for c in (await w.commands())] == ["CertificateSigned"]  # not within the margin yet

        w.clock.set(cert.not_after - timedelta(days=10))
        await renew()
        await renew()  # the same day: asked already
        triggers = [c for c in (await w.commands()) if c.command_type == "TriggerMessage"]
        assert len(triggers) == 1
        assert json.loads(triggers[0].params_json) == {"requested_message": "SignChargingStationCertificate"}
        [cert] = await w.only()
        assert cert.renew_requested_at == w.clock()

        w.clock.advance(timedelta(days=1, seconds=1))
        await renew()
        assert len([c for c in (await w.commands()) if c.command_type == "TriggerMessage"]) == 2

        w.clock.set(cert.not_after + timedelta(seconds=1))
        await renew()
        [cert] = await w.only()
        assert cert.status == "expired"
        assert len([c for c in (await w.commands()) if c.command_type == "TriggerMessage"]) == 2


async def test_renewal_waits_for_an_offline_station_to_connect(tmp_path: Path) -> None:
    async with world(tmp_path, cert_validity_days=60, cert_renew_before_days=30) as w:
        await w.csr()
        [cert] = await w.only()
        await w.answer(cert, "Accepted")
        owner = await w.rt.store.get_owner(STATION)
        assert owner is not None
        await w.rt.store.release_station(STATION, owner.gateway_id, owner.epoch)
        w.clock.set(cert.not_after - timedelta(days=10))
        await w.wired.renewer.run()
        [cert] = await w.only()
        assert cert.renew_requested_at is None
        assert [c.command_type for c in (await w.commands())] == ["CertificateSigned"]
        await w.rt.store.claim_station(STATION, "gateway-0")
        await w.wired.renewer.run()
        assert [c.command_type for c in (await w.commands())] == ["CertificateSigned", "TriggerMessage"]
