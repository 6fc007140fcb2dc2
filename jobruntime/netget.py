"""One plain GET, for endpoints a pod reaches directly: loopback and link-local.

Spark's REST API on the pod's loopback (the heartbeat's progress) and the Azure
instance metadata service (the vTPM's VCEK). ``http.client`` alone: no proxy from the
environment (these must never be proxied), no redirect, no retry, one timeout.
"""

from __future__ import annotations

import http.client
from collections.abc import Mapping
from urllib.parse import urlsplit


class GetError(Exception):
    """No answer, or an answer that is not 2xx (the message says which)."""


def get(
    url: str,
    headers: Mapping[str, str] | None = None,
    *,
    timeout: float = 10.0,
    limit: int = 16 * 1024 * 1024,
) -> bytes:
    """The body of ``GET url`` (http only) if it answers 2xx within ``limit`` bytes."""
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise GetError(f"{url} is not http://host[:port]/path")
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    try:
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    except ValueError as exc:  # a bad port
        raise GetError(f"{url}: {exc}") from None
    try:
        conn.request("GET", target, headers=dict(headers or {}))
        resp = conn.getresponse()
        body = resp.read(limit + 1)
    except (OSError, http.client.HTTPException) as exc:
        raise GetError(f"GET {url} failed: {type(exc).__name__}") from None
    finally:
        conn.close()
    if not 200 <= resp.status < 300:
        raise GetError(f"GET {url} failed: HTTP {resp.status}")
    if len(body) > limit:
        raise GetError(f"GET {url}: answer over {limit} bytes")
    return body
