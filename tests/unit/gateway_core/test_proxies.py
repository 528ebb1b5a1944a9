"""Forwarded headers are believed only from trusted proxies (services/gateway/proxies.py)."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from multidict import CIMultiDict, CIMultiDictProxy

from services.gateway.proxies import (
    Forwarded,
    TrustedProxies,
    client_address,
    client_cert_pem,
    forwarded,
    forwarded_https,
)
from tests.support.certs import issue, make_ca

PROXIES = TrustedProxies.from_cidrs(["10.0.0.0/8", "fd00::/8"])


def headers(*pairs: tuple[str, str]) -> CIMultiDictProxy[str]:
    return CIMultiDictProxy(CIMultiDict(pairs))


# -- trust --------------------------------------------------------------------

def test_nothing_is_trusted_without_proxies() -> None:
    assert not TrustedProxies.from_cidrs([]).trusts("10.0.0.1")
    assert not TrustedProxies.from_cidrs(["", " "])


@pytest.mark.parametrize("address, trusted", [
    ("10.1.2.3", True), ("11.1.2.3", False), ("fd00::1", True), ("2001:db8::1", False),
    ("::ffff:10.1.2.3", True), ("not-an-address", False), ("", False),
])
def test_trusts_addresses_in_the_networks(address: str, trusted: bool) -> None:
    assert PROXIES.trusts(address) is trusted


# -- X-Forwarded-For ------------------------------------------------------------

def test_an_untrusted_peer_is_the_client_whatever_it_claims() -> None:
    assert client_address("203.0.113.7", ["198.51.100.1"], PROXIES) == "203.0.113.7"


def test_a_trusted_peer_gives_the_right_most_untrusted_entry() -> None:
    # the client wrote 1.1.1.1 itself; the proxy appended what it saw
    assert client_address("10.0.0.5", ["1.1.1.1, 203.0.113.7"], PROXIES) == "203.0.113.7"


def test_entries_written_by_trusted_hops_are_skipped() -> None:
    assert client_address("10.0.0.5", ["1.1.1.1, 203.0.113.7, 10.0.0.9"], PROXIES) == "203.0.113.7"


def test_repeated_headers_are_one_list_in_order() -> None:
    assert client_address("10.0.0.5", ["1.1.1.1", "203.0.113.7"], PROXIES) == "203.0.113.7"


def test_a_trusted_peer_without_the_header_is_itself_the_client() -> None:
    assert client_address("10.0.0.5", [], PROXIES) == "10.0.0.5"


def test_when_every_entry_is_trusted_the_left_most_is_the_client() -> None:
    assert client_address("10.0.0.5", ["10.0.0.8, 10.0.0.9"], PROXIES) == "10.0.0.8"


def test_garbage_stops_the_walk_at_the_last_trusted_hop() -> None:
    assert client_address("10.0.0.5", ["203.0.113.7, unknown"], PROXIES) == "10.0.0.5"


@pytest.mark.parametrize("entry, expected", [
    ("203.0.113.7:5555", "203.0.113.7"), ("[2001:db8::1]:443", "2001:db8::1"), ("2001:db8::1", "2001:db8::1"),
    ("::ffff:203.0.113.7", "203.0.113.7"),
])
def test_ports_and_brackets_are_stripped(entry: str, expected: str) -> None:
    assert client_address("10.0.0.5", [entry], PROXIES) == expected


# -- X-Forwarded-Proto ------------------------------------------------------------

def test_https_counts_only_from_a_trusted_peer() -> None:
    assert forwarded_https("10.0.0.5", ["https"], PROXIES)
    assert not forwarded_https("203.0.113.7", ["https"], PROXIES)


@pytest.mark.parametrize("values", [[], ["http"], ["https, http"], ["https", "http"], [""]])
def test_https_needs_every_hop_to_be_https(values: list[str]) -> None:
    assert not forwarded_https("10.0.0.5", values, PROXIES)


def test_https_is_case_insensitive() -> None:
    assert forwarded_https("10.0.0.5", [" HTTPS "], PROXIES)


# -- client-certificate header -------------------------------------------------

@pytest.fixture(scope="module")
def cert_pem() -> str:
    return issue(make_ca(), "CP-1").pem


def test_nginx_escaped_pem_is_decoded(cert_pem: str) -> None:
    assert client_cert_pem(quote(cert_pem, safe="")) == cert_pem.encode()


def test_a_plus_sign_in_the_base64_survives(cert_pem: str) -> None:
    # nginx escapes '+' as %2B; a literal '+' must not become a space either
    raw = "-----BEGIN CERTIFICATE-----\nab+cd\n-----END CERTIFICATE-----\n"
    assert client_cert_pem(quote(raw, safe="")) == raw.encode()
    assert client_cert_pem(raw.strip()) == raw.strip().encode()


def test_envoy_xfcc_cert_field_is_used_right_most_element(cert_pem: str) -> None:
    other = issue(make_ca("Other"), "X").pem
    value = (f'By=spiffe://a;Hash=00;Cert="{quote(other, safe="")}";Subject="CN=X,O=a",'
             f'By=spiffe://b;Hash=11;Cert="{quote(cert_pem, safe="")}";Subject="CN=CP-1"')
    assert client_cert_pem(value) == cert_pem.encode()


@pytest.mark.parametrize("value", [None, "", "  ", "Hash=00;Subject=\"CN=x\""])
def test_no_certificate_is_none(value: str | None) -> None:
    assert client_cert_pem(value) is None


def test_only_the_right_most_xfcc_element_counts(cert_pem: str) -> None:
    # a client's element in front of a right-most one without a certificate is not used
    value = f'Hash=00;Cert="{quote(cert_pem, safe="")}",Hash=11;Subject="CN=x"'
    assert client_cert_pem(value) is None


CSR = "-----BEGIN CERTIFICATE REQUEST-----\nMIIB\n-----END CERTIFICATE REQUEST-----\n"


@pytest.mark.parametrize("value", ["garbage", "%20", "not a certificate", "%2D%2D%2D%2D%2DBEGIN%20KEY",
                                   quote(CSR, safe=""), 'Cert="garbage"', "x" * 60_000])
def test_a_header_that_holds_something_else_is_an_error(value: str) -> None:
    with pytest.raises(ValueError):
        client_cert_pem(value)


# -- the whole view ----------------------------------------------------------------

def test_an_untrusted_peer_gets_none_of_the_headers(cert_pem: str) -> None:
    h = headers(("X-Forwarded-For", "1.1.1.1"), ("X-Forwarded-Proto", "https"), ("X-Client-Cert", quote(cert_pem, safe="")))
    assert forwarded("203.0.113.7", h, PROXIES, "X-Client-Cert") == Forwarded("203.0.113.7")


def test_a_trusted_peer_gets_all_of_them(cert_pem: str) -> None:
    h = headers(("X-Forwarded-For", "203.0.113.7"), ("X-Forwarded-Proto", "https"), ("X-Client-Cert", quote(cert_pem, safe="")))
    assert forwarded("10.0.0.5", h, PROXIES, "X-Client-Cert") == Forwarded("203.0.113.7", True, cert_pem.encode(), True)


def test_the_certificate_header_is_read_only_when_configured(cert_pem: str) -> None:
    h = headers(("X-Client-Cert", quote(cert_pem, safe="")))
    assert forwarded("10.0.0.5", h, PROXIES, "").client_cert is None


def test_of_several_certificate_headers_the_last_one_counts(cert_pem: str) -> None:
    """A proxy that appends its line after the client's: the client's must not win."""
    injected = issue(make_ca("Client's own"), "CP-1").pem
    h = headers(("X-Client-Cert", quote(injected, safe="")), ("X-Client-Cert", quote(cert_pem, safe="")))
    assert forwarded("10.0.0.5", h, PROXIES, "X-Client-Cert").client_cert == cert_pem.encode()
    # the proxy's (last) line is empty: no certificate, whatever the client put in front of it
    h = headers(("X-Client-Cert", quote(injected, safe="")), ("X-Client-Cert", ""))
    fwd = forwarded("10.0.0.5", h, PROXIES, "X-Client-Cert")
    assert fwd.client_cert is None and fwd.client_cert_error == ""


def test_an_unreadable_certificate_header_is_reported(cert_pem: str) -> None:
    fwd = forwarded("10.0.0.5", headers(("X-Client-Cert", "garbage")), PROXIES, "X-Client-Cert")
    assert fwd.client_cert is None and fwd.client_cert_error == "not a PEM certificate"
    # from an untrusted peer the header is not read at all
    assert forwarded("203.0.113.7", headers(("X-Client-Cert", "garbage")), PROXIES, "X-Client-Cert") == Forwarded("203.0.113.7")
