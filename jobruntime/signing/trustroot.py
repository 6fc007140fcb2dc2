"""The pinned trust root: which keys may sign specs and approvals, and until when.

It is baked into the image, so it is the one thing the verifier trusts without
checking it against anything else. Key ids are recomputed from the PEMs on load.
"""

from __future__ import annotations

from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from securesystemslib.signer import SSlibKey

from jobruntime.errors import JobRuntimeError, TrustRootError
from jobruntime.signing.keys import key_id, load_public_pem, sslib_key
from jobruntime.spec.codec import canonical, parse_model, sha256_digest
from jobruntime.spec.models import KeyId, Name, UtcDatetime

CONTROL_PLANE = "control-plane"


class TrustedKey(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    keyid: KeyId
    public_key_pem: str
    not_before: UtcDatetime
    not_after: UtcDatetime
    revoked: bool = False

    @model_validator(mode="after")
    def _derived_id(self) -> TrustedKey:
        if key_id(load_public_pem(self.public_key_pem)) != self.keyid:
            raise ValueError(f"keyid {self.keyid[:16]}… is not the SHA-256 of its public key")
        if self.not_after <= self.not_before:
            raise ValueError(f"key {self.keyid[:16]}… has not_after before not_before")
        return self

    @cached_property
    def sslib(self) -> SSlibKey:
        return sslib_key(load_public_pem(self.public_key_pem))

    def valid_at(self, now: datetime) -> bool:
        return self.not_before <= now <= self.not_after


class Role(BaseModel):
    """Keys that may act for one principal, and how many distinct ones must agree."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    keyids: Annotated[list[KeyId], Field(min_length=1)]
    threshold: Annotated[int, Field(ge=1)] = 1

    @property
    def distinct(self) -> frozenset[str]:
        return frozenset(self.keyids)


class TrustRoot(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: Literal[1] = 1
    keys: list[TrustedKey]
    control_plane: Role
    owners: dict[Name, Role] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _consistent(self) -> TrustRoot:
        known = {k.keyid for k in self.keys}
        if len(known) != len(self.keys):
            raise ValueError("a key appears twice in keys")
        for name, role in [(CONTROL_PLANE, self.control_plane), *self.owners.items()]:
            unknown = role.distinct - known
            if unknown:
                raise ValueError(f"role {name} names keys not in keys")
            if role.threshold > len(role.distinct):
                raise ValueError(
                    f"role {name} needs {role.threshold} keys but lists "
                    f"{len(role.distinct)} distinct"
                )
        return self

    @cached_property
    def by_id(self) -> dict[str, TrustedKey]:
        return {k.keyid: k for k in self.keys}

    def role(self, name: str) -> Role | None:
        return self.control_plane if name == CONTROL_PLANE else self.owners.get(name)

    def owner_of(self, keyid: str) -> str | None:
        for name, role in self.owners.items():
            if keyid in role.distinct:
                return name
        return None

    @property
    def digest(self) -> str:
        return sha256_digest(canonical(self))

    @classmethod
    def load(cls, path: Path) -> TrustRoot:
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise TrustRootError(f"cannot read trust root {path}: {exc.strerror}") from None
        try:
            return parse_model(cls, data, f"trust root {path}")
        except JobRuntimeError as exc:
            raise TrustRootError(exc.message) from None

    def to_json(self) -> str:
        return self.model_dump_json(indent=2)
