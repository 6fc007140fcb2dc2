"""How the service refuses: an HTTP status, a stable code and a one-line message.

The service raises these; the HTTP adapter turns them into the API's error body.
Codes are part of the API (docs/openapi.json, docs/control-plane.md).
"""

from __future__ import annotations


class ServiceError(Exception):
    """A refusal the caller sees, with the status and code the API documents."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class StateConflictError(Exception):
    """A run's state changed under a transition (the caller answers 409)."""
