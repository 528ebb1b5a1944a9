"""OIDC bearer tokens: verified against a local JWKS server with keys made in the test."""

from __future__ import annotations

import json
import time
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, AsyncIterator

import jwt
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from services.api.oidc import OidcVerifier, role_from_claims

from .access_harness import access_api
from .builders import Api

ISSUER = "https://idp.example/realms/csms"
AUDIENCE = "csms-api"


class Idp:
    """A JWKS endpoint serving the public halves of the keys it signs with."""

    def __init__(self) -> None:
        self.rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.ec = ec.generate_private_key(ec.SECP256R1())
        self.fetches = 0
        self.url = ""

    def jwks(self) -> dict[str, Any]:
        rsa_jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.rsa.public_key()))
        ec_jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(self.ec.public_key()))
        return {"keys": [{**rsa_jwk, "kid": "rsa-1", "use": "sig", "alg": "RS256"},
                         {**ec_jwk, "kid": "ec-1", "use": "sig", "alg": "ES256"}]}

    async def handle(self, request: web.Request) -> web.Response:
        self.fetches += 1
        return web.json_response(self.jwks())

    def token(self, *, kid: str = "rsa-1", alg: str = "RS256", exp_in: float = 300, **claims: Any) -> str:
        body = {"iss": ISSUER, "aud": AUDIENCE, "sub": "alice", "exp": int(time.time() + exp_in), **claims}
        key = self.rsa if alg == "RS256" else self.ec
        return jwt.encode(body, key, algorithm=alg, headers={"kid": kid})


@asynccontextmanager
async def idp_server() -> AsyncIterator[Idp]:
    idp = Idp()
    app = web.Application()
    app.router.add_get("/certs", idp.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    idp.url = f"http://127.0.0.1:{port}/certs"
    try:
        yield idp
    finally:
        await runner.cleanup()


@asynccontextmanager
async def oidc_api(tmp_path: Path) -> AsyncIterator[tuple[Api, Idp]]:
    async with idp_server() as idp:
        async with access_api(tmp_path, oidc_jwks_url=idp.url, oidc_issuer=ISSUER, oidc_audience=AUDIENCE,
                              oidc_role_claim="realm_access.roles") as api:
            yield api, idp


async def test_a_good_token_is_accepted_with_its_most_privileged_role(tmp_path: Path) -> None:
    async with oidc_api(tmp_path) as (api, idp):
        token = idp.token(realm_access={"roles": ["viewer", "operator", "offline_access"]})
        status, body = await api.get("/api/v1/whoami", key=token)
        assert status == 200 and body == {"actor": "oidc:alice", "role": "operator"}
        token = idp.token(kid="ec-1", alg="ES256", sub="bob", realm_access={"roles": "billing"})
        assert (await api.get("/api/v1/whoami", key=token))[1] == {"actor": "oidc:bob", "role": "billing"}
        assert idp.fetches == 1  # the keys were fetched once and cached


async def test_wrong_issuer_wrong_audience_and_expired_tokens_are_401(tmp_path: Path) -> None:
    async with oidc_api(tmp_path) as (api, idp):
        roles: dict[str, Any] = {"realm_access": {"roles": ["admin"]}}
        for token, why in (
            (idp.token(iss="https://evil.example", **roles), "wrong issuer"),
            (idp.token(aud="someone-else", **roles), "wrong audience"),
            (idp.token(exp_in=-3600, **roles), "token expired"),
        ):
            status, body = await api.get("/api/v1/whoami", key=token)
            assert status == 401 and why in body["error"], body


async def test_an_unknown_kid_refetches_the_keys_at_most_once_a_minute(tmp_path: Path) -> None:
    async with oidc_api(tmp_path) as (api, idp):
        for n in range(3):
            token = idp.token(kid=f"rotated-{n}", realm_access={"roles": ["admin"]})
            status, body = await api.get("/api/v1/whoami", key=token)
            assert status == 401 and "unknown signing key" in body["error"]
        assert idp.fetches == 1


async def test_a_valid_token_without_a_known_role_is_403(tmp_path: Path) -> None:
    async with oidc_api(tmp_path) as (api, idp):
        claim_sets: tuple[dict[str, Any], ...] = ({}, {"realm_access": {"roles": ["superuser"]}})
        for claims in claim_sets:
            status, body = await api.get("/api/v1/whoami", key=idp.token(**claims))
            assert status == 403 and "no known role" in body["error"], body


async def test_a_token_without_exp_or_with_an_hmac_algorithm_is_refused(tmp_path: Path) -> None:
    async with oidc_api(tmp_path) as (api, idp):
        no_exp = jwt.encode({"iss": ISSUER, "aud": AUDIENCE, "sub": "alice", "realm_access": {"roles": ["admin"]}},
                            idp.rsa, algorithm="RS256", headers={"kid": "rsa-1"})
        assert (await api.get("/api/v1/whoami", key=no_exp))[0] == 401
        hs = jwt.encode({"sub": "alice", "exp": int(time.time()) + 60, "realm_access": {"roles": ["admin"]}},
                        "a-shared-secret-long-enough-for-hs256!!", algorithm="HS256", headers={"kid": "rsa-1"})
        status, body = await api.get("/api/v1/whoami", key=hs)
        assert status == 401 and "algorithm" in body["error"]


async def test_without_a_jwks_url_a_jwt_is_just_an_unknown_credential(tmp_path: Path) -> None:
    idp = Idp()
    async with access_api(tmp_path) as api:
        status, body = await api.get("/api/v1/whoami", key=idp.token(realm_access={"roles": ["admin"]}))
        assert status == 401 and "unknown credentials" in body["error"]


async def test_an_unreachable_jwks_url_refuses_without_raising() -> None:
    verifier = OidcVerifier("http://127.0.0.1:9/nothing", role_claim="roles")
    result = await verifier.verify(Idp().token(roles=["admin"]))
    assert result.subject is None and result.reason == "unknown signing key"


def test_the_role_claim_may_be_a_string_a_list_or_nested() -> None:
    assert role_from_claims({"roles": "viewer operator"}, "roles") == "operator"
    assert role_from_claims({"roles": ["installer", "x"]}, "roles") == "installer"
    assert role_from_claims({"a": {"b": ["admin"]}}, "a.b") == "admin"
    assert role_from_claims({"roles": 3}, "roles") is None
    assert role_from_claims({}, "roles") is None
