"""The OpenAPI document describes every route the API serves."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from services.api.auth import API_PREFIX

from .builders import Api


def _resolve(doc: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = doc
    for part in ref[2:].split("/"):
        node = node[part]
    return node


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [r for v in node.values() for r in _refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


async def test_the_document_is_openapi_3_1_json_served_without_a_key(api: Api) -> None:
    status, doc = await api.get("/api/v1/openapi.json", key=None)
    assert status == 200
    assert doc["openapi"].startswith("3.1")
    assert doc["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"


async def test_every_registered_route_is_in_the_document(api: Api) -> None:
    _, doc = await api.get("/api/v1/openapi.json")
    assert api.service.app is not None
    routes = set()
    for route in api.service.app.router.routes():
        path = route.resource.canonical if route.resource is not None else ""
        if path.startswith(API_PREFIX) and route.method != "HEAD":
            routes.add((path, route.method.lower()))
    assert len(routes) >= 28
    described = {(p, m) for p, item in doc["paths"].items() for m in item if m != "parameters"}
    assert routes <= described, routes - described
    assert described <= routes, described - routes


async def test_every_operation_has_responses_and_its_path_parameters(api: Api) -> None:
    _, doc = await api.get("/api/v1/openapi.json")
    for path, item in doc["paths"].items():
        names = {seg[1:-1] for seg in path.split("/") if seg.startswith("{")}
        for method, op in item.items():
            if method == "parameters":
                continue
            assert op["responses"], (path, method)
            params = item.get("parameters", []) + op.get("parameters", [])
            declared = {p["name"] for p in params if p["in"] == "path"}
            assert declared == names, (path, method)
            if method in ("post", "put", "patch"):
                assert "requestBody" in op, (path, method)
            if path != f"{API_PREFIX}/openapi.json":
                assert "401" in op["responses"], (path, method)


async def test_every_reference_in_the_document_resolves(api: Api) -> None:
    _, doc = await api.get("/api/v1/openapi.json")
    refs = _refs(doc)
    assert refs
    for ref in refs:
        assert _resolve(doc, ref) is not None


def test_routes_are_registered_with_web_paths_not_regexes() -> None:
    # aiohttp's {name} syntax is OpenAPI's: the same strings can be compared directly.
    app = web.Application()
    async def handler(request: web.Request) -> web.Response:
        return web.Response()

    app.router.add_get("/x/{id}", handler)
    assert [r.resource.canonical for r in app.router.routes() if r.resource is not None][0] == "/x/{id}"


def test_every_component_schema_is_a_valid_json_schema_and_operation_ids_are_unique() -> None:
    import jsonschema

    from services.api.openapi import openapi_document

    doc = openapi_document()
    for name, schema in doc["components"]["schemas"].items():
        jsonschema.Draft202012Validator.check_schema(schema)
    ids = [op["operationId"] for item in doc["paths"].values() for m, op in item.items() if m != "parameters"]
    assert len(ids) == len(set(ids)), sorted(i for i in ids if ids.count(i) > 1)
    tags = {t["name"] for t in doc["tags"]}
    used = {tag for item in doc["paths"].values() for m, op in item.items() if m != "parameters" for tag in op["tags"]}
    assert used <= tags, used - tags
