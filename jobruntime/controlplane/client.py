"""HTTP client of the control-plane API, with its wire models (pydantic).

The HTTP itself (deadlines, retries, TLS, limits, typed refusals) is
``transport.Transport``; the pod's sidecars speak the few calls they need over the same
transport without pydantic (``pod.PodClient``, also :attr:`ControlPlaneClient.pod`).
"""

from __future__ import annotations

import base64
import json
from functools import cached_property
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from jobruntime.controlplane.api import (
    ApprovalRequest,
    ApprovalResponse,
    AttestRequest,
    AttestResponse,
    AuditEntry,
    AuditLog,
    CancelRequest,
    Challenge,
    ChallengeRequest,
    ClaimRequest,
    ClaimResponse,
    CreateKeyRequest,
    DatasetRef,
    DatasetVersion,
    EnrolledKey,
    EnrolOwnerKey,
    Health,
    HeartbeatAck,
    KeyInfo,
    KeyList,
    OwnerAccessRequest,
    OwnerAccessResponse,
    OwnerAuditLog,
    PublishVersion,
    ReleasePolicy,
    ReleaseRequest,
    ReleaseResponse,
    RunList,
    RunStatus,
    RunSummary,
    SetPolicyRequest,
    SignedHeartbeat,
    SignedRun,
    SparkSecretRequest,
    SparkSecretResponse,
    SubmitResponse,
    VerifierRefusal,
)
from jobruntime.controlplane.pod import PodClient
from jobruntime.controlplane.transport import Transport, segment
from jobruntime.errors import ControlPlaneError, NotFoundError
from jobruntime.spec.codec import MAX_SPEC_BYTES
from jobruntime.spec.models import JobRunRequest, Workload

M = TypeVar("M", bound=BaseModel)


class ControlPlaneClient:
    def __init__(
        self,
        url: str,
        token: str,
        *,
        ca_bundle: Path | None = None,
        timeout: float = 10.0,
        retry_for: float = 30.0,
        backoff: float = 0.2,
    ) -> None:
        self._transport = Transport(
            url,
            token,
            ca_bundle=ca_bundle,
            timeout=timeout,
            retry_for=retry_for,
            backoff=backoff,
        )
        self.url = self._transport.url

    @cached_property
    def pod(self) -> PodClient:
        """The pod's calls (attest, release, heartbeat...) as plain JSON, on this transport."""
        return PodClient(self._transport)

    def close(self) -> None:
        self._transport.close()

    def __enter__(self) -> ControlPlaneClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # --- the API -----------------------------------------------------------------

    def health(self) -> Health:
        return self._call("GET", "/health", Health)

    def submit(self, request: JobRunRequest) -> SubmitResponse:
        body = request.model_dump(mode="json", exclude_none=True)
        # Not idempotent: only a refused connection (nothing sent) is retried.
        return self._call("POST", "/runs", SubmitResponse, body=body, idempotent=False)

    def status(self, run_id: str) -> RunStatus:
        return self._call("GET", f"/runs/{segment(run_id)}", RunStatus)

    def list_runs(self, after: str | None = None, limit: int = 50) -> RunList:
        """One page of the runs this caller may see; ``next`` is the following page's cursor."""
        query = f"?limit={int(limit)}" + (f"&after={segment(after)}" if after else "")
        return self._call("GET", f"/runs{query}", RunList)

    def all_runs(self, limit: int | None = None) -> list[RunSummary]:
        """Every run this caller may see (or the first ``limit``), page by page."""
        found: list[RunSummary] = []
        after: str | None = None
        while limit is None or len(found) < limit:
            page = self.list_runs(after, 200 if limit is None else min(200, limit - len(found)))
            found += page.runs
            after = page.next
            if after is None:
                break
        return found

    def signed_run_bytes(self, run_id: str) -> bytes:
        """The raw body, so the caller can apply its limits before parsing."""
        return self._raw("GET", f"/runs/{segment(run_id)}/spec", limit=4 * MAX_SPEC_BYTES)

    def signed_run(self, run_id: str) -> SignedRun:
        return SignedRun.model_validate_json(self.signed_run_bytes(run_id))

    def approve(self, run_id: str, approval: dict[str, Any]) -> ApprovalResponse:
        body = ApprovalRequest(envelope=approval).model_dump()
        return self._call("POST", f"/runs/{segment(run_id)}/approvals", ApprovalResponse, body=body)

    def claim(self, run_id: str, claim_id: str, session: str) -> dict[str, Any]:
        """Claim with the driver pod's attested ``verifier`` session."""
        body = ClaimRequest(claim_id=claim_id, session=session).model_dump()
        path = f"/runs/{segment(run_id)}/claim"
        return self._call("POST", path, ClaimResponse, body=body).receipt

    def set_workload(self, run_id: str, workload: Workload) -> SubmitResponse:
        """Name the pods' HOST_DATA (or node isolation) before owners approve; re-signs."""
        body = workload.model_dump(mode="json")
        return self._call("POST", f"/runs/{segment(run_id)}/workload", SubmitResponse, body=body)

    def heartbeat(self, run_id: str, signed: SignedHeartbeat) -> HeartbeatAck:
        # Short deadline: the sidecar keeps its own backlog rather than block here.
        return self._call(
            "POST", f"/runs/{segment(run_id)}/heartbeats", HeartbeatAck, body=signed.model_dump()
        )

    def report_refusal(self, run_id: str, refusal: VerifierRefusal) -> RunStatus:
        body = refusal.model_dump(mode="json", exclude_none=True)
        return self._call("POST", f"/runs/{segment(run_id)}/refusals", RunStatus, body=body)

    def cancel(self, run_id: str, reason: str = "cancelled by request") -> RunStatus:
        body = CancelRequest(reason=reason).model_dump()
        return self._call("POST", f"/runs/{segment(run_id)}/cancel", RunStatus, body=body)

    def audit(self) -> AuditLog:
        """The whole log, page by page, cut at the first page's checkpoint.

        The log may grow while it is read: entries past the count the first answer's
        checkpoint names are left for the next read, so log and checkpoint agree. The
        checkpoint's count is read here only to cut; ``verify_log`` checks it.
        """
        first = self._call("GET", "/audit", AuditLog)
        entries, after = list(first.entries), first.next
        while after is not None:
            page = self._call("GET", f"/audit?after={after}", AuditLog)
            entries += page.entries
            after = page.next
        count = _checkpoint_count(first.checkpoint)
        if count is not None:
            entries = entries[:count]
        return AuditLog(entries=entries, checkpoint=first.checkpoint)

    def owner_audit(self) -> list[AuditEntry]:
        """Every entry about the calling owner's organisation, page by page."""
        entries: list[AuditEntry] = []
        after = 0
        while True:
            page = self._call("GET", f"/audit/mine?after={after}", OwnerAuditLog)
            entries += page.entries
            if page.next is None:
                return entries
            after = page.next

    def enrol_owner_key(self, signed: dict[str, Any]) -> EnrolledKey:
        """``signed``: the enrolment's envelope (see ``jobruntime keys enrol``)."""
        body = EnrolOwnerKey(envelope=signed).model_dump()
        return self._call(
            "POST", "/trust-root/owner-keys", EnrolledKey, body=body, idempotent=False
        )

    # --- the KMS -----------------------------------------------------------------

    def create_key(self, key_id: str, policy: ReleasePolicy) -> KeyInfo:
        body = CreateKeyRequest(key_id=key_id, release_policy=policy).model_dump(mode="json")
        return self._call("POST", "/kms/keys", KeyInfo, body=body, idempotent=False)

    def list_keys(self) -> KeyList:
        return self._call("GET", "/kms/keys", KeyList)

    def set_policy(self, key_id: str, policy: ReleasePolicy) -> KeyInfo:
        body = SetPolicyRequest(release_policy=policy).model_dump(mode="json")
        return self._call("PUT", f"/kms/keys/{segment(key_id)}/policy", KeyInfo, body=body)

    def key_info(self, key_id: str) -> KeyInfo:
        return self._call("GET", f"/kms/keys/{segment(key_id)}", KeyInfo)

    def owner_key(self, key_id: str) -> bytes:
        """An owner's own dataset key, wrapped to a fresh ephemeral key; memory only."""
        from jobruntime.keyrelease.jwe import EphemeralKey

        ephemeral = EphemeralKey()
        body = OwnerAccessRequest(public_jwk=ephemeral.public_jwk).model_dump()
        answer = self._call(
            "POST", f"/kms/keys/{segment(key_id)}/owner-access", OwnerAccessResponse, body=body
        )
        return ephemeral.unwrap(answer.jwe)

    def challenge(self, run_id: str) -> Challenge:
        body = ChallengeRequest(run_id=run_id).model_dump()
        return self._call("POST", "/kms/challenge", Challenge, body=body)

    def attest(self, request: AttestRequest) -> AttestResponse:
        # A nonce is single-use: a retried attest would be refused, so do not retry reads.
        body = request.model_dump(mode="json")
        return self._call("POST", "/kms/attest", AttestResponse, body=body, idempotent=False)

    def latest_version(self, ref: DatasetRef) -> DatasetVersion | None:
        try:
            return self._call(
                "POST", "/datasets/latest", DatasetVersion, body=ref.model_dump(exclude_none=True)
            )
        except NotFoundError:
            return None

    def publish_version(self, request: PublishVersion) -> DatasetVersion:
        return self._call(
            "POST", "/datasets/publish", DatasetVersion, body=request.model_dump(exclude_none=True)
        )

    def release(self, session: str, dataset: str) -> ReleaseResponse:
        body = ReleaseRequest(session=session, dataset=dataset).model_dump()
        return self._call("POST", "/kms/release", ReleaseResponse, body=body)

    def spark_secret(self, session: str) -> SparkSecretResponse:
        body = SparkSecretRequest(session=session).model_dump()
        return self._call("POST", "/kms/spark-secret", SparkSecretResponse, body=body)

    # --- plumbing ----------------------------------------------------------------

    def _call(self, method: str, path: str, model: type[M], **kw: Any) -> M:
        data = self._raw(method, path, **kw)
        try:
            return model.model_validate_json(data)
        except ValidationError:
            raise ControlPlaneError(
                f"{method} {path}: the answer is not a {model.__name__}"
            ) from None

    def _raw(
        self,
        method: str,
        path: str,
        *,
        limit: int = 64 * MAX_SPEC_BYTES,
        idempotent: bool = True,
        body: Any = None,
    ) -> bytes:
        return self._transport.call(method, path, limit=limit, idempotent=idempotent, body=body)


def _checkpoint_count(checkpoint: dict[str, Any] | None) -> int | None:
    try:
        payload = json.loads(base64.b64decode(str((checkpoint or {})["payload"])))
        count = payload["count"]
    except (KeyError, TypeError, ValueError):
        return None
    return count if isinstance(count, int) and count >= 0 else None
