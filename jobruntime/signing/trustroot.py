"""The pinned trust root: which keys may sign specs and approvals, and until when.

It is baked into the image, so it is the one thing the verifier trusts without
checking it against anything else. Key ids are recomputed from the PEMs on load.
The pod's sidecars load the same file without pydantic (``roots.PlainTrustRoot``);
both take their rules from ``roots``, and :meth:`TrustRoot.load` applies the plain
check too, so every container of a pod accepts exactly the same trust roots.
"""

from __future__ import annotations

from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from jobruntime.errors import JobRuntimeError, TrustRootError
from jobruntime.signing.dsse import PublicKey, verify_signature
from jobruntime.signing.keys import load_public_pem, sslib_key
from jobruntime.signing.roots import CONTROL_PLANE as CONTROL_PLANE
from jobruntime.signing.roots import PlainTrustRoot, check_roles, checked_key
from jobruntime.spec.codec import canonical, load_json, parse_model, sha256_digest
from jobruntime.spec.models import KeyId, Name, UtcDatetime

if TYPE_CHECKING:
    from securesystemslib.signer import SSlibKey


class TrustedKey(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    keyid: KeyId
    public_key_pem: str
    not_before: UtcDatetime
    not_after: UtcDatetime
    revoked: bool = False

    @model_validator(mode="after")
    def _derived_id(self) -> TrustedKey:
        checked_key(self.keyid, self.public_key_pem, self.not_before, self.not_after)
        return self

    @cached_property
    def public_key(self) -> PublicKey:
        return load_public_pem(self.public_key_pem)

    @cached_property
    def sslib(self) -> SSlibKey:
        return sslib_key(self.public_key)

    def valid_at(self, now: datetime) -> bool:
        return self.not_before <= now <= self.not_after

    def verifies(self, signature_hex: str, data: bytes) -> bool:
        return verify_signature(self.public_key, signature_hex, data)


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
        check_roles(
            [k.keyid for k in self.keys],
            [
                (name, role.keyids, role.threshold)
                for name, role in [(CONTROL_PLANE, self.control_plane), *self.owners.items()]
            ],
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
        what = f"trust root {path}"
        try:
            root = parse_model(cls, data, what)
            PlainTrustRoot.from_json(load_json(data, what), what)  # what the sidecars load
        except JobRuntimeError as exc:
            raise TrustRootError(exc.message) from None
        return root

    def to_json(self) -> str:
        return self.model_dump_json(indent=2)
