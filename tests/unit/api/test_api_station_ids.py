"""Every station id the API registers is one the gateway lets connect."""

from __future__ import annotations

import string

from hypothesis import given, strategies as st

from services.api.validation import check_station_id
from services.gateway.auth import valid_station_id

_ALPHABET = string.ascii_letters + string.digits + "._-:/%*+=@ \x00"


@given(st.text(alphabet=_ALPHABET, max_size=60))
def test_an_id_the_api_accepts_is_accepted_by_the_gateway(station_id: str) -> None:
    if check_station_id(station_id) is None:
        assert valid_station_id(station_id)


@given(st.text(alphabet=string.ascii_letters + string.digits + "_-", min_size=1, max_size=48))
def test_plain_ids_up_to_48_characters_are_accepted(station_id: str) -> None:
    assert check_station_id(station_id) is None
