"""The customer information fold of the `stations-drivers` stage (OCPP 2.0.1 block N,
ADR 018): one `customer_information` document per request, assembled from

- the CommandResult of CustomerInformation (its `request_json` names the request id, the
  customer and report / clear; the station answered Accepted, Rejected or Invalid);
- CustomerInformationPart events (NotifyCustomerInformation), in any order, any number
  of times (customer_information_documents.py keeps them by seqNo).

Whoever sent the command, its answer is recorded; a gateway outcome (offline, timeout,
not sent) is not. Per batch: one `get_docs` of the requests touched, one versioned
`put_docs`. A result or part that cannot be read is logged, counted
(`csms_customer_information_records_total{outcome="failed"}`) and skipped; the data a
station sends is never logged.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace

import orjson
from prometheus_client import Counter

from services.common import events as ev
from services.common import kinds
from services.common.runtime import Runtime
from services.common.store.port import DocumentStore, DocWrite
from services.stations.drivers.fold import Fold, ce_type
from services.stations.drivers.customer_information_documents import (
    CustomerInformation,
    add_part,
    answer,
    doc_id,
    from_doc,
    status_of,
    to_doc,
)

__all__ = ["COMMAND", "CustomerInformationFold", "build"]

log = logging.getLogger("csms.stations.drivers.customer_information")

COMMAND = "CustomerInformation"

RECORDS = Counter(
    "csms_customer_information_records_total",
    "Events the customer information fold handled, by outcome (applied; failed: could not be read, logged and skipped)",
    ["outcome"],
)


def _is_mine(body: ev.CommandResult) -> bool:
    is_ci = body.command_type == COMMAND or body.ocpp_action == COMMAND
    return is_ci and bool(body.ocpp_action) and body.status not in ("Timeout", "StationOffline")


def _request(body: ev.CommandResult) -> tuple[int, dict[str, object]]:
    value = orjson.loads(body.request_json) if body.request_json else None
    if not isinstance(value, dict):
        raise ValueError("CustomerInformation result without the request sent (request_json)")
    rid = value.get("requestId")
    if not isinstance(rid, int) or isinstance(rid, bool):
        raise ValueError("CustomerInformation request without a requestId")
    return rid, value


class CustomerInformationFold:
    def __init__(self, docs: DocumentStore) -> None:
        self._docs = docs

    async def apply(self, envs: Sequence[ev.Envelope]) -> None:
        mine: list[tuple[ev.Envelope, str]] = []
        for env in envs:
            body = env.body
            try:
                if isinstance(body, ev.CommandResult):
                    if not _is_mine(body):
                        continue
                    rid, _ = _request(body)
                elif isinstance(body, ev.CustomerInformationPart):
                    rid = body.request_id
                else:
                    continue
            except Exception as exc:
                self._failed(env, exc)
                continue
            mine.append((env, doc_id(env.station_id, rid)))
        if not mine:
            return
        ids = sorted({i for _, i in mine})
        held: dict[str, CustomerInformation] = {}
        for i, doc in (await self._docs.get_docs(kinds.CUSTOMER_INFORMATION, ids)).items():
            try:
                held[i] = from_doc(doc)
            except Exception:
                log.exception("customer information document %s unreadable; starting afresh", i)
                sid, _, rid_text = i.rpartition("/")
                held[i] = CustomerInformation(sid, int(rid_text), version=int(doc.get("version") or 0))
        before = dict(held)
        applied = 0
        for env, i in mine:
            body = env.body
            try:
                if isinstance(body, ev.CommandResult):
                    rid, request = _request(body)
                    ci = held.get(i) or CustomerInformation(env.station_id, rid)
                    held[i] = answer(ci, body.status, body.command_id, request, env.received_at)
                    log.info("station=%s customer information request %d answered %s (command %s)",
                             env.station_id, rid, body.status, body.command_id)
                else:
                    assert isinstance(body, ev.CustomerInformationPart)
                    ci = held.get(i) or CustomerInformation(env.station_id, body.request_id)
                    held[i] = add_part(ci, body.seq_no, body.data, body.tbc, body.generated_at, env.received_at)
            except Exception as exc:
                self._failed(env, exc)
                continue
            applied += 1
        if applied:
            RECORDS.labels("applied").inc(applied)
        writes: list[DocWrite] = []
        for i, ci in sorted(held.items()):
            if ci is before.get(i):
                continue
            if status_of(ci) != status_of(before.get(i) or CustomerInformation(ci.station_id, ci.request_id)):
                log.info("station=%s customer information request %d %s (%d parts)",
                         ci.station_id, ci.request_id, status_of(ci), len(ci.parts))
            stored = replace(ci, version=ci.version + 1)
            writes.append(DocWrite(i, to_doc(stored), parent=ci.station_id, version=stored.version))
        if writes:
            await self._docs.put_docs(kinds.CUSTOMER_INFORMATION, writes)

    @staticmethod
    def _failed(env: ev.Envelope, exc: Exception) -> None:
        RECORDS.labels("failed").inc()
        log.error("station=%s %s %s cannot be applied to customer information, skipped: %r",
                  env.station_id, env.type_name, env.event_id, exc)


def build(rt: Runtime) -> Fold:
    fold = CustomerInformationFold(rt.store)
    return Fold("customer_information",
                frozenset({ce_type(ev.CommandResult), ce_type(ev.CustomerInformationPart)}), fold.apply)
