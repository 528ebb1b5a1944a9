"""Dead letters: records a consumer group gave up on (docs/dead-letters.md).

    GET  /api/v1/dead-letters?topic=&group=&limit=&replayed=   list (oldest first)
    POST /api/v1/dead-letters/{id}/replay?topic=                re-publish for its group
                                                                (optional body {"topic": ...})

`topic` names the consumed topic (default csms.events.v1) or its dead-letter topic;
ids are `<partition>-<offset>` in the dead-letter topic. The same operations as
`csms dlq list|replay`, and the only way to reach them in embedded mode (the
in-memory bus lives inside `csms run`).
"""

from __future__ import annotations

import re

from aiohttp import web

from services.api.auth import API_PREFIX
from services.api.context import ctx_of
from services.api.errors import not_found, validation_error
from services.api.validation import query_limit, read_json
from services.common import topics
from services.common.bus import dead_letters

__all__ = ["setup"]

# Kafka's rule for topic names.
_TOPIC_RE = re.compile(r"^[A-Za-z0-9._-]{1,249}$")
_TRUE = ("1", "true", "yes")


def _topic(request: web.Request, default: str = topics.EVENTS) -> str:
    topic = request.query.get("topic") or default
    if not _TOPIC_RE.fullmatch(topic):
        raise validation_error({"topic": "must be a topic name (letters, digits, '.', '_', '-')"})
    return topic


async def list_dead_letters(request: web.Request) -> web.Response:
    topic = _topic(request)
    limit = query_limit(request)
    group = request.query.get("group") or None
    replayed = request.query.get("replayed", "").lower() in _TRUE
    found = await dead_letters.list_dead_letters(
        ctx_of(request).bus, topic, group=group, limit=limit, include_replayed=replayed
    )
    return web.json_response({"items": [dl.to_json() for dl in found]})


async def _body_topic(request: web.Request) -> str:
    """The optional body: nothing, or {"topic": "..."}."""
    if not request.can_read_body:
        return topics.EVENTS
    body = await read_json(request)
    unknown = sorted(set(body) - {"topic"})
    if unknown:
        raise validation_error({unknown[0]: "unknown field (the body may only name the topic)"})
    topic = body.get("topic", topics.EVENTS)
    if not isinstance(topic, str):
        raise validation_error({"topic": "must be a string"})
    return topic


async def replay_dead_letter(request: web.Request) -> web.Response:
    topic = _topic(request, await _body_topic(request))
    dead_letter_id = request.match_info["id"]
    try:
        dead_letters.parse_id(dead_letter_id)
    except ValueError:
        raise validation_error({"id": "must be <partition>-<offset> (from GET /api/v1/dead-letters)"}) from None
    bus = ctx_of(request).bus
    dl = await dead_letters.get_dead_letter(bus, topic, dead_letter_id)
    if dl is None:
        raise not_found(f"dead letter in {dead_letters.dead_letter_topic(topic)}", dead_letter_id)
    return web.json_response(await dead_letters.replay(bus, dl), status=202)


def setup(app: web.Application) -> None:
    app.router.add_get(f"{API_PREFIX}/dead-letters", list_dead_letters)
    app.router.add_post(f"{API_PREFIX}/dead-letters/{{id}}/replay", replay_dead_letter)
