"""The pod's calls to the control plane, as plain JSON: what the sidecars need, no pydantic.

Challenge and attest, releases (dataset keys, the Spark secret), dataset versions
and heartbeats. Requests are the JSON of the ``api`` models; each answer is checked
against the shape of its ``api`` model (the same fields, unknown ones refused, the
same types, nothing coerced) before a field is read.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from jobruntime.controlplane.transport import Transport, segment
from jobruntime.errors import ControlPlaneError, JobRuntimeError, NotFoundError
from jobruntime.spec import plain, rules
from jobruntime.spec.codec import canonical, load_json
from jobruntime.spec.shapes import (
    Boolean,
    Field,
    Integer,
    JsonObject,
    Nullable,
    Record,
    Shape,
    Text,
    Timestamp,
)

Purpose = Literal["verifier", "key-agent", "heartbeat"]
"""What an attested session is for; one session per pod and purpose."""
MAX_OUTPUTS = 64
"""Outputs a final heartbeat may name."""

CHALLENGE = Record({"nonce": Field(Text(rules.SHA256_HEX)), "expires_at": Field(Timestamp(False))})
ATTEST_RESPONSE = Record(
    {
        "session": Field(Text()),
        "expires_at": Field(Timestamp(False)),
        "measurement": Field(Text()),
        "evidence_kind": Field(Text()),
    }
)
RELEASE_RESPONSE = Record({"dataset": Field(Text()), "key_id": Field(Text()), "jwe": Field(Text())})
SPARK_SECRET_RESPONSE = Record({"run_id": Field(Text()), "jwe": Field(Text())})
DATASET_VERSION = Record(
    {
        "uri": Field(Text()),
        "key_id": Field(Text()),
        "version": Field(Integer()),
        "manifest_digest": Field(Text()),
        "updated_at": Field(Timestamp(False)),
    }
)
HEARTBEAT_ACK = Record(
    {
        "accepted": Field(Boolean()),
        "run_id": Field(Nullable(Text()), None),
        "cancel": Field(Boolean(), False),
        "reason": Field(Nullable(Text()), None),
        "order": Field(Nullable(JsonObject()), None),
    }
)
OUTPUT_REPORT = Record(
    {
        "dataset": Field(Text(rules.NAME)),
        "version": Field(Integer(ge=1)),
        "manifest_digest": Field(Text(rules.DIGEST)),
    }
)


POD_ANSWER_LIMIT = 64 * 1024


@dataclass(frozen=True)
class Attested:
    """``api.AttestResponse``."""

    session: str
    expires_at: datetime
    measurement: str
    evidence_kind: str


@dataclass(frozen=True)
class Released:
    """``api.ReleaseResponse``: a dataset's key, as JWE to the session's key."""

    dataset: str
    key_id: str
    jwe: str


@dataclass(frozen=True)
class SparkSecret:
    """``api.SparkSecretResponse``."""

    run_id: str
    jwe: str


@dataclass(frozen=True)
class DatasetVersion:
    """``api.DatasetVersion``."""

    uri: str
    key_id: str
    version: int
    manifest_digest: str
    updated_at: datetime


@dataclass(frozen=True)
class HeartbeatAck:
    """``api.HeartbeatAck``; ``order`` is the signed cancel order, unverified here."""

    accepted: bool
    run_id: str | None = None
    cancel: bool = False
    reason: str | None = None
    order: dict[str, Any] | None = None


def publish_statement(run_id: str, dataset: str | None, version: int, digest: str) -> bytes:
    """What a pod signs to publish a dataset version (``api.PublishVersion.statement``)."""
    return canonical(
        {"dataset": dataset, "manifest_digest": digest, "run_id": run_id, "version": version}
    )


class PodClient:
    def __init__(self, transport: Transport) -> None:
        self._http = transport

    @property
    def url(self) -> str:
        return self._http.url

    def close(self) -> None:
        self._http.close()

    def challenge(self, run_id: str) -> str:
        """A one-time nonce for evidence about ``run_id``."""
        body = self._call("POST", "/kms/challenge", CHALLENGE, body={"run_id": run_id})
        nonce: str = body["nonce"]
        return nonce

    def attest(self, request: dict[str, Any]) -> Attested:
        """``request`` is an ``api.AttestRequest`` as JSON."""
        # A nonce is single-use: a retried attest would be refused, so do not retry reads.
        a = self._call("POST", "/kms/attest", ATTEST_RESPONSE, body=request, idempotent=False)
        return Attested(a["session"], a["expires_at"], a["measurement"], a["evidence_kind"])

    def release(self, session: str, dataset: str) -> Released:
        body = {"session": session, "dataset": dataset}
        r = self._call("POST", "/kms/release", RELEASE_RESPONSE, body=body)
        return Released(r["dataset"], r["key_id"], r["jwe"])

    def spark_secret(self, session: str) -> SparkSecret:
        body = {"session": session}
        s = self._call("POST", "/kms/spark-secret", SPARK_SECRET_RESPONSE, body=body)
        return SparkSecret(s["run_id"], s["jwe"])

    def latest_version(self, session: str, dataset: str) -> DatasetVersion | None:
        body = {"session": session, "dataset": dataset}
        try:
            v = self._call("POST", "/datasets/latest", DATASET_VERSION, body=body)
        except NotFoundError:
            return None
        return _version(v)

    def publish_version(
        self, session: str, dataset: str, version: int, digest: str, signature: str
    ) -> DatasetVersion:
        body = {
            "session": session,
            "dataset": dataset,
            "version": version,
            "manifest_digest": digest,
            "signature": signature,
        }
        return _version(self._call("POST", "/datasets/publish", DATASET_VERSION, body=body))

    def heartbeat(self, run_id: str, session: str, jws: str) -> HeartbeatAck:
        # Short deadline: the sidecar keeps its own backlog rather than block here.
        body = {"session": session, "jws": jws}
        a = self._call("POST", f"/runs/{segment(run_id)}/heartbeats", HEARTBEAT_ACK, body=body)
        return HeartbeatAck(a["accepted"], a["run_id"], a["cancel"], a["reason"], a["order"])

    def _call(self, method: str, path: str, shape: Shape, **kw: Any) -> dict[str, Any]:
        what = f"{method} {path}"
        # Answers to a pod are small (sessions, JWEs, acks): a sidecar with a 40 MB
        # budget reads at most this much of one.
        kw.setdefault("limit", POD_ANSWER_LIMIT)
        data = self._http.call(method, path, **kw)
        try:
            answer: dict[str, Any] = plain.check(shape, load_json(data, what), what)
        except JobRuntimeError:
            raise ControlPlaneError(f"{what}: the answer is not the expected shape") from None
        return answer


def _version(v: dict[str, Any]) -> DatasetVersion:
    return DatasetVersion(
        v["uri"], v["key_id"], v["version"], v["manifest_digest"], v["updated_at"]
    )
