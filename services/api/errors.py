"""API errors: one exception, rendered as JSON by the error middleware.

    ApiError(status, error, details=?, body=?)
      400 validation (details = {field: message}), 401, 404, 409, 503, 504 ...
      422 a query parameter of a cursor-paged or windowed route that cannot be read (station
          history, logs, uptime, device model, firmware campaigns, audit: bad cursor, time,
          limit, type, filter; details name the parameters; services/api/query.py). The
          older unpaged lists (stations, tokens, ...) answer a bad `limit` 400.

Every error answer is a JSON object with at least `"error"` (a sentence for a
human); `details` names offending fields; command answers add `"status"`.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ApiError", "bad_request", "not_found", "conflict", "query_error", "validation_error"]


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        error: str,
        *,
        details: dict[str, str] | None = None,
        body: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(error)
        self.status = status
        self.error = error
        self.details = details
        self.body = body
        self.headers = headers

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = dict(self.body or {})
        out.setdefault("error", self.error)
        if self.details:
            out["details"] = self.details
        return out


def bad_request(error: str, details: dict[str, str] | None = None) -> ApiError:
    return ApiError(400, error, details=details)


def validation_error(details: dict[str, str]) -> ApiError:
    first = next(iter(details.items()))
    return ApiError(400, f"validation failed: {first[0]}: {first[1]}", details=details)


def not_found(what: str, ident: str) -> ApiError:
    return ApiError(404, f"{what} {ident!r} not found")


def conflict(error: str) -> ApiError:
    return ApiError(409, error)


def query_error(details: dict[str, str]) -> ApiError:
    first = next(iter(details.items()))
    return ApiError(422, f"invalid query parameter: {first[0]}: {first[1]}", details=details)
