"""The certificates processor (`csms certificates`, ADR 017) on Kafka + Cassandra: a
station's CSR on csms.events.v1 becomes a `certificate` document and a CertificateSigned
command on the owning gateway's partition of csms.commands.v1; the same event again signs
nothing new; the station's Accepted installs it."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from services.certificates.ca import init_ca
from services.common import codec, pki
from services.common import events as ev
from services.common.bus.kafka import KafkaBus
from services.common.store.cassandra import CassandraStore
from services.common.timeutil import utcnow
from tests.integration.conftest import new_cluster
from tests.support.waiting import eventually
from tests.unit.certificates.builders import csr_pem

pytestmark = pytest.mark.infra


async def test_a_csr_is_signed_sent_and_installed(tmp_path: Path) -> None:
    ca_dir = tmp_path / "ca"
    ca_cert = init_ca(ca_dir, cn="IT CA")
    cluster = new_cluster(tmp_path, roles=("certificates",), extra_env={"CSMS_CA_DIR": str(ca_dir)})
    prefix, store_url, bus_url = (
        cluster.env["CSMS_TOPIC_PREFIX"], cluster.env["CSMS_STORE_URL"], cluster.env["CSMS_BUS_URL"]
    )
    station = f"ST{uuid.uuid4().hex[:8]}"

    def env(body: ev.Body, event_id: str | None = None) -> ev.Envelope:
        return ev.Envelope(event_id=event_id or str(uuid.uuid4()), station_id=station, received_at=utcnow(), body=body,
                           gateway_id="gateway-1", ocpp_version="2.0.1", action=type(body).__name__)

    bus = KafkaBus(bus_url)
    store = CassandraStore(store_url)
    await bus.start()
    await store.start()
    try:
        await store.claim_station(station, "gateway-1")
        events_topic, commands_topic = prefix + "csms.events.v1", prefix + "csms.commands.v1"
        csr = env(ev.CertificateSigningRequest(csr=csr_pem(station), certificate_type="ChargingStationCertificate",
                                               status="Accepted"))
        await bus.publish(events_topic, station, codec.encode_event(csr), codec.event_headers(csr))

        async def issued() -> list[dict[str, object]]:
            return await store.list_docs("certificate", parent=station)

        [doc] = await eventually(issued, 90, what="the station's certificate document")
        serial = str(doc["serial"])
        leaf = pki.load_certificate(str(doc["pem"]).encode())
        assert pki.certificate_identity(leaf) == station and pki.verify_chain(leaf, [ca_cert], utcnow()) is None

        async def sent() -> list[codec.Command]:
            records = await bus.read(commands_topic, partition=1)
            cmds = [codec.decode_command(r.value) for r in records if r.key == station.encode()]
            return [c for c in cmds if c.command_type == "CertificateSigned"]

        [cmd] = await eventually(sent, 60, what="the CertificateSigned command on gateway-1's partition")
        assert cmd.command_id == f"cert-{serial}" and cmd.target_gateway_id == "gateway-1"
        assert pki.load_certificates(json.loads(cmd.params_json)["certificate_chain"].encode())[0] == leaf

        # the same event again (a redelivery), then the station's answer
        await bus.publish(events_topic, station, codec.encode_event(csr), codec.event_headers(csr))
        answer = env(ev.CommandResult(command_id=cmd.command_id, command_type="CertificateSigned", status="Accepted"))
        await bus.publish(events_topic, station, codec.encode_event(answer), codec.event_headers(answer))

        async def installed() -> dict[str, object] | None:
            got = await store.get_doc("certificate", serial)
            return got if got is not None and got["status"] == "installed" else None

        await eventually(installed, 60, what="the certificate installed")
        assert len(await store.list_docs("certificate", parent=station)) == 1
        assert len(await sent()) == 1
    finally:
        await bus.close()
        await store.close()
        cluster.stop_all()
    log = cluster.procs["certificates"].log()
    assert "Traceback" not in log, log[-6000:]
