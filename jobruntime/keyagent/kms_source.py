"""The production key source: the pod's attested ``key-agent`` session with the KMS.

Grants come from the re-verified spec only: inputs may be unwrapped and read,
outputs also wrapped, MACed and published, each under the spec's key id.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from jobruntime.keyagent.source import Grant
from jobruntime.keyrelease.session import AttestedSession


class _Dataset(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def key_id(self) -> str: ...


class _Spec(Protocol):
    """A verified spec: a ``plain.PlainSpec`` (the agent's) or a ``JobRunSpec``."""

    @property
    def inputs(self) -> Sequence[_Dataset]: ...

    @property
    def outputs(self) -> Sequence[_Dataset]: ...


def grants_of(spec: _Spec) -> dict[str, Grant]:
    grants = {d.name: Grant(key_id=d.key_id, writable=False) for d in spec.inputs}
    grants.update({d.name: Grant(key_id=d.key_id, writable=True) for d in spec.outputs})
    return grants


@dataclass(frozen=True)
class KmsKeySource:
    session: AttestedSession
    grants: Mapping[str, Grant]

    def release(self, dataset: str) -> bytes:
        return self.session.release(dataset)

    def latest_version(self, dataset: str) -> tuple[int, str] | None:
        return self.session.latest_version(dataset)

    def record_version(self, dataset: str, version: int, digest: str) -> None:
        self.session.record_version(dataset, version, digest)
