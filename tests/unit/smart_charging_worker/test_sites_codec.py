"""csms.sites.v1 records: SiteUpdated bytes, CloudEvents headers, versions."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from services.common import sites_codec
from services.common.sites_codec import (
    decode_site_updated,
    encode_site_updated,
    next_site_version,
    site_change,
    site_headers,
)

UTC = timezone.utc
AT = datetime(2026, 12, 2, 10, 0, 0, 123456, tzinfo=UTC)
SITE = {"id": "S1", "grid_limit_a": 32.5, "phases": 3, "tariff_id": None, "external_limit_a": 12}


def test_a_site_change_survives_the_bytes_with_its_document() -> None:
    change = site_change("S1", SITE, AT, version=7, event_id="e-1")

    back = decode_site_updated(encode_site_updated(change))

    assert back == change
    assert back.site == SITE and back.updated_at == AT and not back.deleted


def test_a_deletion_carries_no_document() -> None:
    change = site_change("S1", None, AT, version=8)

    pb = sites_codec.sites_pb2.SiteUpdated.FromString(encode_site_updated(change))

    assert (pb.deleted, pb.site_json, pb.version) == (True, "", 8)
    assert decode_site_updated(pb.SerializeToString()) == change


def test_the_headers_are_cloudevents_about_the_site() -> None:
    change = site_change("S1", SITE, AT, version=7, event_id="e-1")

    headers = dict(site_headers(change, traceparent="00-abc-def-01"))

    assert headers == {
        "ce_specversion": b"1.0",
        "ce_id": b"e-1",
        "ce_source": b"/csms/api",
        "ce_type": b"csms.sites.v1.SiteUpdated",
        "ce_time": b"2026-12-02T10:00:00.123Z",
        "ce_subject": b"S1",
        "content-type": b"application/protobuf",
        "traceparent": b"00-abc-def-01",
    }


def test_versions_are_the_documents_own_else_microseconds_raised_above_the_last() -> None:
    us = int((AT - datetime(1970, 1, 1, tzinfo=UTC)) / timedelta(microseconds=1))
    assert next_site_version({"version": 42}, AT, previous=10**18) == 42
    assert next_site_version({"version": True}, AT) == us  # not an integer version
    assert next_site_version(None, AT) == us
    assert next_site_version(SITE, AT, previous=us) == us + 1  # same instant, still increasing
    assert next_site_version(SITE, AT - timedelta(seconds=1), previous=us) == us + 1  # clock stepped back


@pytest.mark.parametrize("value", [
    b"\xff\x00garbage",
    sites_codec.sites_pb2.SiteUpdated(site_json="{}").SerializeToString(),  # no site id
    sites_codec.sites_pb2.SiteUpdated(site_id="S", site_json="not json").SerializeToString(),
    sites_codec.sites_pb2.SiteUpdated(site_id="S", site_json="[1, 2]").SerializeToString(),
    sites_codec.sites_pb2.SiteUpdated(site_id="S").SerializeToString(),  # live, no document
])
def test_bytes_that_are_no_usable_site_change_raise_value_error(value: bytes) -> None:
    with pytest.raises(ValueError):
        decode_site_updated(value)
