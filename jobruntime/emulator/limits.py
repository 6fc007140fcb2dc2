"""Limits before work, as an ASGI middleware in front of every route.

In order, before any route runs:
1. authentication: a bearer token the control plane knows, or 401 without reading a
   byte of the body (unauthenticated refusals are only counted: ``DenialCounter``);
2. a body limit per route, by declared length and as the body streams in (413);
3. JSON the canonical form can carry: no duplicate keys, no NaN or Infinity, integers
   within +-2^53 (400), so a value is never read one way here and another way when
   it is canonicalised or signed.
Role checks stay with each route (``Context.allow``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

MAX_INT = 2**53 - 1  # I-JSON: what RFC 8785 (and so signing) carries exactly
DEFAULT_LIMIT = 16 * 1024
ROUTE_LIMITS: tuple[tuple[re.Pattern[str], int], ...] = (
    (re.compile(r"^/v1/runs$"), 1536 * 1024),  # a request is a spec of at most 1 MiB
    (re.compile(r"^/v1/runs/[^/]+/approvals$"), 64 * 1024),
    (re.compile(r"^/v1/kms/attest$"), 64 * 1024),  # a report and its certificate chain
    (re.compile(r"^/v1/runs/[^/]+/heartbeats$"), 32 * 1024),
)


class RequestRefused(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def limit_for(path: str) -> int:
    for pattern, limit in ROUTE_LIMITS:
        if pattern.match(path):
            return limit
    return DEFAULT_LIMIT


def check_json(body: bytes) -> None:
    """Refuse what canonical JSON cannot carry faithfully; the route parses it again."""

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        keys = [k for k, _ in items]
        if len(set(keys)) != len(keys):
            raise RequestRefused(400, "request.invalid", "a JSON object repeats a key")
        return dict(items)

    def big(text: str) -> int:
        value = int(text)
        if abs(value) > MAX_INT:
            raise RequestRefused(400, "request.invalid", "an integer is outside +-(2^53 - 1)")
        return value

    def constant(text: str) -> float:
        raise RequestRefused(400, "request.invalid", f"{text} is not JSON")

    try:
        json.loads(body, object_pairs_hook=pairs, parse_int=big, parse_constant=constant)
    except RecursionError:
        raise RequestRefused(400, "request.invalid", "the JSON nests too deep") from None
    except ValueError:
        pass  # not JSON at all: the route's own validation says so in the API's shape


class Gate:
    def __init__(self, app: ASGIApp, known: Callable[[str], bool], count: Callable[[str], None]):
        self.app, self._known, self._count = app, known, count

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            body = await self._admit(scope, receive)
        except RequestRefused as exc:
            await _refuse(send, exc)
            return
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _admit(self, scope: Scope, receive: Receive) -> bytes:
        headers = dict(scope.get("headers", []))
        # 1. Authentication, before the body.
        auth = headers.get(b"authorization", b"").decode("latin-1")
        scheme, _, token = auth.partition(" ")
        if scheme.lower() != "bearer" or not token:
            self._count("missing token")
            raise RequestRefused(401, "auth.missing", "a bearer token is required")
        if not self._known(token.strip()):
            self._count("unknown token")
            raise RequestRefused(401, "auth.invalid", "the bearer token is not valid")
        # 2. The route's body limit.
        limit = limit_for(scope.get("path", ""))
        declared = headers.get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            raise _too_large(limit)
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise _too_large(limit)
            chunks.append(chunk)
            more = bool(message.get("more_body", False))
        body = b"".join(chunks)
        # 3. JSON the canonical form can carry.
        if body:
            check_json(body)
        return body


def _too_large(limit: int) -> RequestRefused:
    return RequestRefused(413, "request.too_large", f"the body is over this route's {limit} bytes")


async def _refuse(send: Send, exc: RequestRefused) -> None:
    data = json.dumps({"error": {"code": exc.code, "message": exc.message}}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": exc.status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(data)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": data})
