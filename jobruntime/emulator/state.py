"""The emulator's state directory: its signing key, dev owner keys, tokens, trust root.

``init_state`` makes a fresh directory; everything the emulator needs to come back
after a restart lives here (the SQLite database beside these files).
"""

from __future__ import annotations

import json
import secrets
from datetime import timedelta
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from jobruntime.attestation.emulated import EmulatedTee
from jobruntime.attestation.providers.emulated import EMULATED_MEASUREMENT, save_tee

__all__ = ["EMULATED_MEASUREMENT"]  # re-exported: dev release policies name it
from jobruntime.controlplane.api import Role
from jobruntime.controlplane.service.principals import Principal, token_digest
from jobruntime.errors import ConfigError
from jobruntime.signing.keys import Algorithm, SigningKey, write_private
from jobruntime.signing.trustroot import Role as TrustRole
from jobruntime.signing.trustroot import TrustedKey, TrustRoot
from jobruntime.spec.models import utcnow

CONTROL_PLANE_KEY = "control-plane.key"
TOKENS = "tokens.json"
TRUST_ROOT = "trust-root.json"
DATABASE = "emulator.db"
URL_FILE = "emulator.url"
TEE_DIR = "tee"
KEY_LIFETIME = timedelta(days=365)


class PrincipalEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    role: Role
    org: str | None = None
    token: str


class TokensFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    principals: list[PrincipalEntry]

    def token(self, name: str) -> str:
        for p in self.principals:
            if p.name == name:
                return p.token
        raise ConfigError(f"no principal named {name} in the tokens file")


def owner_key_path(state_dir: Path, owner: str) -> Path:
    return state_dir / "owners" / f"{owner}.key"


def trusted(key: SigningKey) -> TrustedKey:
    now = utcnow()
    return TrustedKey(
        keyid=key.keyid,
        public_key_pem=key.public_pem,
        not_before=now - timedelta(minutes=5),
        not_after=now + KEY_LIFETIME,
    )


def init_state(state_dir: Path, owners: list[str], algorithm: Algorithm = "ed25519") -> None:
    """Create keys, tokens and the trust root; refuse to overwrite an existing state."""
    if (state_dir / TOKENS).exists():
        raise ConfigError(f"{state_dir} already holds an emulator state")
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    state_dir.chmod(0o700)
    cp = SigningKey.generate(algorithm)
    cp.save(state_dir / CONTROL_PLANE_KEY)
    keys = [trusted(cp)]
    owner_roles: dict[str, TrustRole] = {}
    for owner in owners:
        k = SigningKey.generate(algorithm)
        k.save(owner_key_path(state_dir, owner))
        keys.append(trusted(k))
        owner_roles[owner] = TrustRole(keyids=[k.keyid], threshold=1)
    # One emulated chip per state: the KMS trusts its root, local pods sign with it.
    save_tee(EmulatedTee.create(), state_dir / TEE_DIR)
    root = TrustRoot(keys=keys, control_plane=TrustRole(keyids=[cp.keyid]), owners=owner_roles)
    (state_dir / TRUST_ROOT).write_text(root.to_json())
    entries = [
        PrincipalEntry(name=r.value, role=r, token=secrets.token_urlsafe(32))
        for r in (Role.SUBMITTER, Role.OPERATOR, Role.VERIFIER)
    ] + [
        PrincipalEntry(name=f"owner:{o}", role=Role.OWNER, org=o, token=secrets.token_urlsafe(32))
        for o in owners
    ]
    write_private(
        state_dir / TOKENS, TokensFile(principals=entries).model_dump_json(indent=2).encode()
    )


def load_tokens(state_dir: Path) -> TokensFile:
    try:
        return TokensFile.model_validate(json.loads((state_dir / TOKENS).read_text()))
    except (OSError, ValueError):
        raise ConfigError(f"cannot read the tokens file in {state_dir}") from None


def principals(tokens: TokensFile) -> dict[str, Principal]:
    """Token digest -> principal; the emulator never keeps raw tokens in memory maps."""
    return {token_digest(p.token): Principal(p.name, p.role, p.org) for p in tokens.principals}
