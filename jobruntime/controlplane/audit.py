"""The hash-chained, signed audit log: how entries are sealed and how a chain is checked.

Each entry's body (everything but ``hash``, ``keyid`` and ``sig``) is RFC 8785
canonical JSON; ``hash`` is its SHA-256 and the next entry's ``prev_hash``. The
control plane signs the body, so a verifier holding only the trust root can check
order, completeness up to the head, and origin.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from securesystemslib.exceptions import UnverifiedSignatureError
from securesystemslib.signer import Signature

from jobruntime.controlplane.api import AuditEntry
from jobruntime.errors import AuditChainError, JobRuntimeError
from jobruntime.signing import envelope
from jobruntime.signing.keys import SigningKey
from jobruntime.signing.trustroot import TrustRoot
from jobruntime.spec.codec import canonical
from jobruntime.spec.models import AuditCheckpoint, iso

GENESIS = "0" * 64


def body(
    seq: int,
    at: datetime,
    event: str,
    run_id: str | None,
    actor: str,
    details: dict[str, Any],
    prev_hash: str,
) -> dict[str, Any]:
    return {
        "seq": seq,
        "at": at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "event": event,
        "run_id": run_id,
        "actor": actor,
        "details": details,
        "prev_hash": prev_hash,
    }


def seal(entry_body: dict[str, Any], key: SigningKey) -> AuditEntry:
    data = canonical(entry_body)
    sig = key.sign(data)
    return AuditEntry(
        **entry_body,
        hash=hashlib.sha256(data).hexdigest(),
        keyid=key.keyid,
        sig=sig.signature,
    )


def sign_checkpoint(count: int, head: str, key: SigningKey, now: datetime) -> dict[str, Any]:
    point = AuditCheckpoint(count=count, head=head, at=now)
    return envelope.to_json(envelope.sign(canonical(point), envelope.CHECKPOINT_TYPE, [key]))


def verify_checkpoint(obj: Any, trust_root: TrustRoot, now: datetime) -> AuditCheckpoint:
    """The control plane's signature first, then the checkpoint's fields."""
    try:
        return envelope.open_signed(
            obj, envelope.CHECKPOINT_TYPE, AuditCheckpoint, "audit checkpoint", trust_root, now
        )
    except JobRuntimeError as exc:
        raise AuditChainError(f"audit checkpoint refused: {exc.one_line()}") from None


def verify_log(
    entries: Sequence[AuditEntry],
    checkpoint: Any,
    trust_root: TrustRoot,
    now: datetime,
    earlier: AuditCheckpoint | None = None,
) -> AuditCheckpoint:
    """The chain, the signed checkpoint that came with it, and a checkpoint saved before.

    1. Every link and signature (``verify_chain``).
    2. The answer's checkpoint is the control plane's and names exactly this log: an
       exported or served log cut short, or with entries dropped from its end, fails.
    3. The log extends a checkpoint saved earlier: a log rolled back (a database
       restored, entries deleted before a restart) fails even with a fresh checkpoint.
    """
    head = verify_chain(entries, trust_root)
    if checkpoint is None:
        raise AuditChainError("the log carries no signed checkpoint: its end cannot be checked")
    point = verify_checkpoint(checkpoint, trust_root, now)
    if (point.count, point.head) != (len(entries), head):
        raise AuditChainError(
            f"the log has {len(entries)} entries but its checkpoint names {point.count}: "
            "entries were removed from its end"
        )
    if earlier is not None:
        if earlier.count > len(entries):
            raise AuditChainError(
                f"the log has {len(entries)} entries, fewer than the {earlier.count} "
                "a saved checkpoint names: it was rolled back"
            )
        at = entries[earlier.count - 1].hash if earlier.count else GENESIS
        if at != earlier.head:
            raise AuditChainError(
                f"entry {earlier.count} is not the head a saved checkpoint names: rewritten"
            )
    return point


def verify_chain(entries: Sequence[AuditEntry], trust_root: TrustRoot) -> str:
    """Check every link and signature; return the head hash."""
    prev = GENESIS
    role = trust_root.control_plane
    for i, entry in enumerate(entries):
        # 1. Sequence numbers are dense, from 1.
        if entry.seq != i + 1:
            raise AuditChainError(
                f"entry {i + 1} has seq {entry.seq}: entries missing or reordered"
            )
        # 2. Each entry links to the previous one.
        if entry.prev_hash != prev:
            raise AuditChainError(f"entry {entry.seq} does not link to entry {entry.seq - 1}")
        data = canonical(
            body(
                entry.seq,
                entry.at,
                entry.event,
                entry.run_id,
                entry.actor,
                entry.details,
                entry.prev_hash,
            )
        )
        # 3. The stored hash is the hash of the body.
        if hashlib.sha256(data).hexdigest() != entry.hash:
            raise AuditChainError(f"entry {entry.seq} was altered: its hash does not match")
        # 4. A control-plane key, valid when the entry was written, signed it.
        key = trust_root.by_id.get(entry.keyid)
        if key is None or entry.keyid not in role.distinct:
            raise AuditChainError(
                f"entry {entry.seq} is signed by a key that is not a control-plane key"
            )
        if key.revoked or not key.valid_at(entry.at):
            raise AuditChainError(
                f"entry {entry.seq} is signed by a key not valid at {iso(entry.at)}"
            )
        try:
            key.sslib.verify_signature(Signature(entry.keyid, entry.sig), data)
        except UnverifiedSignatureError:
            raise AuditChainError(f"entry {entry.seq} has a bad signature") from None
        prev = entry.hash
    return prev
