"""Bearer-key authentication, health endpoints, JSON errors and metrics."""

from __future__ import annotations

from prometheus_client import REGISTRY

from services.api.auth import check_bearer

from .builders import Api


async def test_a_request_without_a_key_is_refused_with_401_json(api: Api) -> None:
    status, body = await api.get("/api/v1/stations", key=None)
    assert status == 401
    assert "error" in body


async def test_a_request_with_a_wrong_key_is_refused_with_401(api: Api) -> None:
    assert (await api.get("/api/v1/stations", key="wrong"))[0] == 401
    assert (await api.get("/api/v1/stations", headers={"Authorization": "Basic aw=="}, key=None))[0] == 401


async def test_a_request_with_the_key_is_served(api: Api) -> None:
    status, body = await api.get("/api/v1/stations")
    assert status == 200 and body == {"items": []}


async def test_unknown_api_paths_also_need_the_key_and_then_answer_404_json(api: Api) -> None:
    assert (await api.get("/api/v1/nothing-here", key=None))[0] == 401
    status, body = await api.get("/api/v1/nothing-here")
    assert status == 404 and "error" in body


async def test_the_openapi_document_and_health_endpoints_need_no_key(api: Api) -> None:
    assert (await api.get("/api/v1/openapi.json", key=None))[0] == 200
    assert (await api.get("/healthz", key=None))[0] == 200
    status, body = await api.get("/readyz", key=None)
    assert status == 200 and body["status"] == "ready"


async def test_a_wrong_method_is_a_405_json_error(api: Api) -> None:
    status, body = await api.call("PUT", "/api/v1/stations")
    assert status == 405 and "error" in body


async def test_a_body_that_is_not_json_is_a_400(api: Api) -> None:
    status, body = await api.post("/api/v1/stations", raw=b"{not json", headers={"Content-Type": "application/json"})
    assert status == 400 and "JSON" in body["error"]
    status, body = await api.post("/api/v1/stations", [1, 2])
    assert status == 400


async def test_no_configured_key_accepts_nothing() -> None:
    assert not check_bearer("Bearer ", None)
    assert not check_bearer("Bearer x", None)
    assert not check_bearer(None, "k")
    assert check_bearer("Bearer k", "k")
    assert check_bearer("bearer k", "k")


async def test_request_metrics_use_the_route_pattern_not_the_station_id(api: Api) -> None:
    await api.get("/api/v1/stations/SOME-UNIQUE-ID-42")
    labels = {"method": "GET", "route": "/api/v1/stations/{id}", "status": "404"}
    assert (REGISTRY.get_sample_value("csms_api_requests_total", labels) or 0) >= 1
    for metric in REGISTRY.collect():
        for sample in metric.samples:
            assert "SOME-UNIQUE-ID-42" not in str(sample.labels)
