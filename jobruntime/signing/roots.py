"""The trust root as the checks use it, and its plain-JSON loader for the pod's sidecars.

``trustroot.TrustRoot`` (pydantic) is the trust root as the control plane, the
verifier and the tools make, write and load it. Everything that verifies a
signature takes any :class:`RootLike`, so it works on that model and on
:class:`PlainTrustRoot`, which a sidecar loads from the same file with the same
rules (below, shared with the model) and no pydantic.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from pathlib import Path
from types import MappingProxyType
from typing import Any, Protocol

from jobruntime.errors import JobRuntimeError, TrustRootError
from jobruntime.signing.dsse import PublicKey, verify_signature
from jobruntime.signing.keys import key_id, load_public_pem
from jobruntime.spec import plain, rules
from jobruntime.spec.codec import load_json
from jobruntime.spec.shapes import (
    Boolean,
    Const,
    Field,
    Integer,
    ListOf,
    MapOf,
    Record,
    Text,
    Timestamp,
)

CONTROL_PLANE = "control-plane"


class KeyLike(Protocol):
    @property
    def revoked(self) -> bool: ...

    @property
    def not_before(self) -> datetime: ...

    @property
    def not_after(self) -> datetime: ...

    def valid_at(self, now: datetime) -> bool: ...

    def verifies(self, signature_hex: str, data: bytes) -> bool: ...


class RoleLike(Protocol):
    @property
    def threshold(self) -> int: ...

    @property
    def distinct(self) -> frozenset[str]: ...


class RootLike(Protocol):
    @property
    def by_id(self) -> Mapping[str, KeyLike]: ...

    @property
    def control_plane(self) -> RoleLike: ...

    @property
    def owners(self) -> Mapping[str, RoleLike]: ...

    def owner_of(self, keyid: str) -> str | None: ...


# --- the rules, shared with trustroot.TrustRoot's validators ---------------------------


def checked_key(keyid: str, pem: str, not_before: datetime, not_after: datetime) -> PublicKey:
    """The key's public half; its id must be derived from it and its window ordered."""
    public = load_public_pem(pem)  # KeyFileError if it is no supported public key
    if key_id(public) != keyid:
        raise ValueError(f"keyid {keyid[:16]}… is not the SHA-256 of its public key")
    if not_after <= not_before:
        raise ValueError(f"key {keyid[:16]}… has not_after before not_before")
    return public


def check_roles(keyids: list[str], roles: Iterable[tuple[str, Iterable[str], int]]) -> None:
    """Each key once; every role's keys among them, and enough of them for its threshold."""
    known = set(keyids)
    if len(known) != len(keyids):
        raise ValueError("a key appears twice in keys")
    for name, role_keyids, threshold in roles:
        distinct = frozenset(role_keyids)
        if distinct - known:
            raise ValueError(f"role {name} names keys not in keys")
        if threshold > len(distinct):
            raise ValueError(
                f"role {name} needs {threshold} keys but lists {len(distinct)} distinct"
            )


# --- the plain loader --------------------------------------------------------------------


def _check_key(k: Mapping[str, Any]) -> None:
    checked_key(k["keyid"], k["public_key_pem"], k["not_before"], k["not_after"])


KEYID = Text(rules.SHA256_HEX)
TRUSTED_KEY = Record(
    {
        "keyid": Field(KEYID),
        "public_key_pem": Field(Text()),
        "not_before": Field(Timestamp()),
        "not_after": Field(Timestamp()),
        "revoked": Field(Boolean(), False),
    },
    (_check_key,),
)
ROLE = Record(
    {"keyids": Field(ListOf(KEYID, 1)), "threshold": Field(Integer(ge=1), 1)},
)
TRUST_ROOT = Record(
    {
        "schema_version": Field(Const(1), 1),
        "keys": Field(ListOf(TRUSTED_KEY)),
        "control_plane": Field(ROLE),
        "owners": Field(MapOf(Text(rules.NAME), ROLE), dict),
    },
    (
        lambda r: check_roles(
            [k["keyid"] for k in r["keys"]],
            [
                (name, role["keyids"], role["threshold"])
                for name, role in [(CONTROL_PLANE, r["control_plane"]), *r["owners"].items()]
            ],
        ),
    ),
)


@dataclass(frozen=True)
class PlainKey:
    keyid: str
    public_key: PublicKey = field(repr=False)
    not_before: datetime
    not_after: datetime
    revoked: bool = False

    def valid_at(self, now: datetime) -> bool:
        return self.not_before <= now <= self.not_after

    def verifies(self, signature_hex: str, data: bytes) -> bool:
        return verify_signature(self.public_key, signature_hex, data)


@dataclass(frozen=True)
class PlainRole:
    keyids: tuple[str, ...]
    threshold: int = 1

    @property
    def distinct(self) -> frozenset[str]:
        return frozenset(self.keyids)


@dataclass(frozen=True)
class PlainTrustRoot:
    keys: tuple[PlainKey, ...]
    control_plane: PlainRole
    owners: Mapping[str, PlainRole]

    @cached_property
    def by_id(self) -> Mapping[str, PlainKey]:
        return MappingProxyType({k.keyid: k for k in self.keys})

    def role(self, name: str) -> PlainRole | None:
        return self.control_plane if name == CONTROL_PLANE else self.owners.get(name)

    def owner_of(self, keyid: str) -> str | None:
        for name, role in self.owners.items():
            if keyid in role.distinct:
                return name
        return None

    @classmethod
    def load(cls, path: Path) -> PlainTrustRoot:
        """Read and check ``path`` as ``TrustRoot.load`` does; any failure is a TrustRootError."""
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise TrustRootError(f"cannot read trust root {path}: {exc.strerror}") from None
        try:
            return cls.from_json(load_json(data, f"trust root {path}"), f"trust root {path}")
        except JobRuntimeError as exc:
            raise TrustRootError(exc.message) from None

    @classmethod
    def from_json(cls, obj: Any, what: str = "trust root") -> PlainTrustRoot:
        r = plain.check(TRUST_ROOT, obj, what)

        def role(o: dict[str, Any]) -> PlainRole:
            return PlainRole(tuple(o["keyids"]), o["threshold"])

        keys = tuple(
            PlainKey(
                k["keyid"],
                load_public_pem(k["public_key_pem"]),
                k["not_before"],
                k["not_after"],
                k["revoked"],
            )
            for k in r["keys"]
        )
        owners = {name: role(o) for name, o in r["owners"].items()}
        return cls(keys, role(r["control_plane"]), MappingProxyType(owners))
