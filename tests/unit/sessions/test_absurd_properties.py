"""Schema-valid but absurd event streams: the sessions domain never raises.

Values like 1e308, NaN, infinities, negative and huge numbers, unparsable text (which
the gateway forwards as `raw_value`), unknown units, year 0001 and year 9999 timestamps,
shuffled and duplicated: `apply` never raises, energy is never negative, the document
round-trips (also through JSON, as the stores keep it) and encodes as a snapshot, and
the facts do not depend on the order of the events.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.common import events as ev
from services.sessions import codec as snapshots
from services.sessions.documents import session_from_doc, session_to_doc
from services.sessions.domain import Plausibility, Session, rebuild

from .builders import NOW, T0, SampleStore, an_envelope

UTC = timezone.utc
TX = "tx-absurd"
YEAR_1 = datetime(1, 1, 1, tzinfo=UTC)
YEAR_9999 = datetime(9999, 12, 31, 23, 59, 59, 999_000, tzinfo=UTC)
INT64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)

station_times = st.one_of(
    st.sampled_from([YEAR_1, datetime(1970, 1, 1, tzinfo=UTC), YEAR_9999, T0]),
    st.integers(min_value=-3 * 86_400, max_value=3 * 86_400).map(lambda s: T0 + timedelta(seconds=s)),
    st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31), timezones=st.just(UTC)),
)
received_times = st.integers(min_value=0, max_value=4 * 86_400).map(lambda s: T0 + timedelta(seconds=s))
values = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([1e308, -1e308, 1e16, 1e15, -5.0, 0.0, -0.0, 5e-324, float(2**62)]),
    st.integers(min_value=-1_000, max_value=10_000_000).map(float),
)
measurands = st.sampled_from([ev.ENERGY_REGISTER, ev.ENERGY_REGISTER, "Power.Active.Import", "Energy.Active.Net", "Bogus.Measurand"])


@st.composite
def samples(draw: st.DrawFn) -> ev.MeterSample:
    raw = draw(st.sampled_from(["", "", "", "NaN", "1e308", "abc", "-inf"]))
    return ev.MeterSample(
        timestamp=draw(station_times),
        value=0.0 if raw else draw(values),
        unit=draw(st.sampled_from(["Wh", "Wh", "kWh", "kwh", "", "W", "Furlongs"])),
        measurand=draw(measurands),
        phase=draw(st.sampled_from(["", "", "L1", "L2-N"])),
        raw_value=raw,
    )


@st.composite
def events(draw: st.DrawFn) -> ev.Envelope:
    kind = draw(st.sampled_from(["started", "updated", "ended", "meter"]))
    some_samples = tuple(draw(st.lists(samples(), max_size=4)))
    where = {"evse_id": draw(st.integers(0, 3)), "connector_id": draw(st.integers(0, 3))}
    seq = 0  # set by `streams`: a station's distinct events have distinct seqNos
    body: ev.Body
    if kind == "started":
        body = ev.TransactionStarted(
            transaction_id=TX, seq_no=seq, samples=some_samples, meter_start_wh=draw(st.none() | INT64),
            id_token=draw(st.sampled_from(["", "TOKEN"])), id_token_status=draw(st.sampled_from(["", "Accepted", "Invalid"])),
            charging_state=draw(st.sampled_from(["", "Charging", "SuspendedEV"])), remote_start_id=draw(st.integers(0, 3)), **where,
        )
    elif kind == "updated":
        body = ev.TransactionUpdated(
            transaction_id=TX, seq_no=seq, samples=some_samples, id_token=draw(st.sampled_from(["", "OTHER"])),
            charging_state=draw(st.sampled_from(["", "Charging", "EVConnected"])), **where,
        )
    elif kind == "ended":
        body = ev.TransactionEnded(
            transaction_id=TX, seq_no=seq, samples=some_samples,
            meter_stop_wh=draw(st.none() | INT64), stop_reason=draw(st.sampled_from(["Local", "local", "??"])), **where,
        )
    else:
        body = ev.MeterValues(transaction_id=TX, samples=some_samples, **where)
    station_time = draw(st.none() | station_times)
    return an_envelope(body, station_time=station_time, received_at=draw(received_times),
                       ocpp_version=draw(st.sampled_from(["1.6", "2.0.1"])))


@st.composite
def streams(draw: st.DrawFn) -> list[ev.Envelope]:
    """Distinct events get distinct seqNos (the same seqNo for other content is a station
    bug where the first one wins, by design); one Ended may carry the 1.6 stop sentinel."""
    out, sentinel = [], draw(st.booleans())
    for i, e in enumerate(draw(st.lists(events(), min_size=1, max_size=8))):
        if isinstance(e.body, ev.MeterValues):
            out.append(e)
            continue
        seq = i
        if sentinel and isinstance(e.body, ev.TransactionEnded):
            seq, sentinel = ev.SEQ_NO_LAST_16, False
        out.append(replace(e, body=replace(e.body, seq_no=seq)))
    return out


def abandoned(sid: str, reason: str, minute: int) -> ev.Envelope:
    body = ev.SessionAbandoned(transaction_id=TX, session_id=sid, reason=reason)
    return an_envelope(body, station_time=T0 + timedelta(minutes=minute), received_at=T0 + timedelta(minutes=minute + 1),
                       gateway_id="sessions")


rules = st.sampled_from([Plausibility(), Plausibility(meter_max_power_kw=22, max_energy_wh=50_000, max_duration=timedelta(hours=1))])


def _run(stream: list[ev.Envelope], r: Plausibility, store: SampleStore | None = None) -> Session | None:
    store = store if store is not None else SampleStore()
    s = None
    for i, e in enumerate(stream):
        s = store.apply(s, e, NOW + timedelta(seconds=i), r)
    return s


def _check(s: Session, store: SampleStore, r: Plausibility) -> None:
    assert isinstance(s.energy_wh, int) and s.energy_wh >= 0
    doc = session_to_doc(s)
    assert session_from_doc(doc) == s
    assert session_from_doc(orjson.loads(orjson.dumps(doc))) == s  # what a store keeps
    snap = snapshots.decode_session(snapshots.encode_session(s))
    assert (snap["energy_wh"], snap["status"], snap["hold"]) == (s.energy_wh, s.status, s.hold)
    judged = store.judged(s, r)
    assert all(not x.raw_value or (x.excluded and x.value == 0.0) for x in judged)
    assert (s.sample_count, s.excluded_count) == (len(judged), sum(x.excluded for x in judged))
    assert rebuild(s, store.samples(s), r) is s


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), stream=streams(), r=rules)
def test_absurd_streams_never_raise_and_the_facts_do_not_depend_on_order(
    data: st.DataObject, stream: list[ev.Envelope], r: Plausibility
) -> None:
    store = SampleStore()
    in_order = _run(stream, r, store)
    assert in_order is not None
    _check(in_order, store, r)
    extra = [abandoned(in_order.id, reason, m) for reason, m in data.draw(st.lists(
        st.tuples(st.sampled_from(["boot", "idle_timeout", "new_transaction"]), st.integers(0, 600)), max_size=2))]
    store = SampleStore()
    with_abandons = _run(stream + extra, r, store)
    assert with_abandons is not None
    _check(with_abandons, store, r)

    duplicates = data.draw(st.lists(st.sampled_from(stream + extra), max_size=len(stream)))
    # an abandon needs its session: keep a session event first, shuffle the rest
    rest = data.draw(st.permutations(stream[1:] + extra + duplicates))
    shuffled = _run([stream[0], *rest], r)
    assert shuffled is not None
    assert replace(shuffled, version=0, updated_at=T0) == replace(with_abandons, version=0, updated_at=T0)
    for e in stream + extra:
        assert store.apply(with_abandons, e, NOW + timedelta(days=1), r) is with_abandons
