"""The key agent's typed errors: one code per reason a request is refused.

They travel over the socket as ``{"ok": false, "code", "message"}`` and come back
out of :class:`~jobruntime.keyagent.client.KeyAgentClient` as the same classes, so
a reader in an executor fails with the code the agent chose. Messages name
datasets, paths, pids and uids, never key material.
"""

from __future__ import annotations

from typing import ClassVar

from jobruntime.errors import JobRuntimeError


class KeyAgentError(JobRuntimeError):
    """The key agent refused or failed a request; ``remote_code`` is the agent's code."""

    code: ClassVar[str] = "keyagent.error"
    exit_code: ClassVar[int] = 22

    def __init__(self, message: str, remote_code: str | None = None) -> None:
        super().__init__(message)
        # An error raised by the key source (for example an attestation refusal)
        # keeps its own code when it crosses the socket.
        self.remote_code = remote_code or self.code

    def one_line(self) -> str:
        return f"{self.remote_code}: {self.message}"


class UnsafeDirError(KeyAgentError):
    """The socket's directory is not on a memory-backed filesystem (tmpfs/ramfs)."""

    code = "keyagent.unsafe_dir"


class SocketPathError(KeyAgentError):
    """The socket path is too long, not a socket, or another agent listens on it."""

    code = "keyagent.socket_path"


class PeerRefusedError(KeyAgentError):
    """The process at the other end of the socket runs as another uid."""

    code = "keyagent.peer_refused"


class NotInSpecError(KeyAgentError):
    """The verified spec does not name the dataset asked for."""

    code = "keyagent.not_in_spec"


class NotWritableError(KeyAgentError):
    """The dataset is an input of the spec: wrap, mac and record_version are for outputs only."""

    code = "keyagent.not_writable"


class KeyMismatchError(KeyAgentError):
    """The request names another master key id than the spec gives the dataset."""

    code = "keyagent.key_mismatch"


class UnwrapFailedError(KeyAgentError):
    """A wrapped key does not authenticate under the dataset's master key and key id."""

    code = "keyagent.unwrap_failed"


class NoSuchKeyError(KeyAgentError):
    """The key source has no key for a dataset the spec names."""

    code = "keyagent.no_such_key"


class BadRequestError(KeyAgentError):
    """A request line is not a JSON object with a known op and its fields."""

    code = "keyagent.bad_request"


class RequestTooLargeError(BadRequestError):
    """A request line is longer than the protocol's limit."""

    code = "keyagent.request_too_large"


class KeyAgentUnavailableError(KeyAgentError):
    """No key agent answers at the socket path, or it stopped mid-request."""

    code = "keyagent.unavailable"


class BusyError(KeyAgentUnavailableError):
    """The agent has as many connections open as it serves at once."""

    code = "keyagent.busy"


class KeySourceError(KeyAgentError):
    """The key source failed unexpectedly or returned something that is not a key."""

    code = "keyagent.source_failed"


def error_for(code: str, message: str) -> KeyAgentError:
    """Rebuild a remote error: this module's class for its code, else the base with the code."""
    for cls in _by_code():
        if cls.code == code:
            return cls(message)
    return KeyAgentError(message, remote_code=code)


def _by_code() -> list[type[KeyAgentError]]:
    found: list[type[KeyAgentError]] = []
    stack: list[type[KeyAgentError]] = [KeyAgentError]
    while stack:
        cls = stack.pop()
        found.append(cls)
        stack.extend(cls.__subclasses__())
    return found


class NoRegistryError(KeyAgentError):
    """This agent's key source keeps no record of dataset versions."""

    code = "keyagent.no_registry"
