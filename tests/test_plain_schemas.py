"""Each plain-JSON shape (the sidecars' checks) holds to the pydantic model it stands for;
their DSSE holds to securesystemslib's.

The sidecars check the spec, approvals, cancel orders, the trust root, the bundle and
the control plane's answers without pydantic (``jobruntime.spec.shapes``). Two things
keep that as strong as the models:

- the same schema: each shape, described as JSON Schema, is the model's own JSON
  Schema (fields, required ones, types, patterns, bounds, enums), so a field added to
  or changed in a model fails here until its shape follows;
- the same decisions, document by document: every field of a real document is
  removed, joined by an unknown one, or replaced by each of many probe values. The
  shape never accepts what the model refuses, it accepts everything the model accepts
  *as written* (what the model would write back unchanged: what our code signs and
  sends), and where both accept they read the same values. The only documents the
  model accepts and the shape refuses are those the model coerces (``"2"`` for 2,
  ``true`` for 1, a number for a time...).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import BaseModel

from jobruntime.controlplane import api, pod
from jobruntime.signing import dsse, envelope
from jobruntime.signing.keys import ALGORITHMS, Algorithm, SigningKey, sslib_key
from jobruntime.signing.roots import TRUST_ROOT, PlainTrustRoot
from jobruntime.signing.trustroot import Role, TrustedKey, TrustRoot
from jobruntime.spec import models, plain
from jobruntime.spec.shapes import Shape
from jobruntime.verification.bundle import BundleFile, Receipt
from jobruntime.verification.sidecar import BUNDLE_FILE, RECEIPT

NOW = datetime(2025, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)
HEX = "0123456789abcdef" * 4
PROBES: list[Any] = [
    None,
    True,
    False,
    0,
    1,
    2,
    -1,
    17,
    2**53,
    2**53 + 1,
    1.0,
    1.5,
    "",
    "1",
    "true",
    "a",
    "x" * 201,
    "x" * 2049,
    "x" * 4097,
    "run-abcdef",
    "run-ABCDEF",
    HEX,
    HEX[:32],
    "sha256:" + HEX,
    "driver",
    "node",
    "pod",
    "emulated",
    "file:///data/other",
    "file:///data/../other",
    "2025-01-01T00:00:00Z",
    "2025-01-01T00:00:00+01:00",
    "2025-01-01T00:00:00",
    "2025-01-01",
    "2025-01-01T00:00Z",
    "2099-01-01T00:00:00Z",
    [],
    ["a"],
    [1, 2],
    {},
    {"a": 1},
]


# --- the documents ---------------------------------------------------------------------


def spec_doc() -> dict[str, Any]:
    def dataset(name: str, owner: str) -> dict[str, str]:
        return {"name": name, "uri": f"file:///data/{name}", "key_id": f"{owner}/k", "owner": owner}

    spec = models.JobRunSpec.model_validate(
        {
            "job_id": "overlap",
            "workspace": "demo",
            "module": {"import_name": "jobs.overlap", "sha256": HEX},
            "image_digest": "sha256:" + HEX,
            "parameters": {"k": 10, "ratio": 0.5, "on": True, "label": "x", "ks": [1, "a"]},
            "inputs": [dataset("customers_a", "org-a"), dataset("customers_b", "org-b")],
            "outputs": [dataset("overlap", "org-a")],
            "workload": {"isolation": "pod", "host_data": {"driver": HEX, "executor": HEX}},
            "run_id": "run-0f4c2a51-7d1e",
            "validity": {"not_before": NOW, "expires": NOW + timedelta(days=1)},
            "nonce": HEX,
            "approval_policy": {"required_owners": ["org-a", "org-b"], "threshold": 1},
        }
    )
    return spec.model_dump(mode="json")


def approval_doc() -> dict[str, Any]:
    approval = models.Approval(
        run_id="run-0f4c2a51-7d1e", spec_digest="sha256:" + HEX, owner="org-a", approved_at=NOW
    )
    return approval.model_dump(mode="json")


def order_doc() -> dict[str, Any]:
    order = models.CancelOrder(run_id="run-0f4c2a51-7d1e", reason="owner withdrew", issued_at=NOW)
    return order.model_dump(mode="json")


def trust_root_doc() -> dict[str, Any]:
    keys = [SigningKey.generate(a) for a in ("ed25519", "ecdsa-p384", "ecdsa-p256")]
    trusted = [
        TrustedKey(
            keyid=k.keyid,
            public_key_pem=k.public_pem,
            not_before=NOW,
            not_after=NOW + timedelta(days=365),
        )
        for k in keys
    ]
    root = TrustRoot(
        keys=trusted,
        control_plane=Role(keyids=[keys[0].keyid]),
        owners={"org-a": Role(keyids=[keys[1].keyid, keys[2].keyid], threshold=2)},
    )
    return root.model_dump(mode="json")


def bundle_doc() -> dict[str, Any]:
    receipt = Receipt(
        run_id="run-0f4c2a51-7d1e",
        spec_digest="sha256:" + HEX,
        pod_id=HEX[:32],
        role="driver",
        verified_at=NOW,
        verifier_version="0.1.0",
        trust_root_digest="sha256:" + HEX,
        module_path="/opt/jobruntime/jobs/overlap.py",
        module_sha256=HEX,
        image_digest="sha256:" + HEX,
        checks=["1. envelope"],
        claim={"payload": "e30="},
        attestation={"evidence_kind": "emulated"},
    )
    bundle = BundleFile(envelope={"payload": "e30="}, approvals=[{"a": 1}], receipt=receipt)
    return bundle.model_dump(mode="json")


def wire(model: BaseModel) -> dict[str, Any]:
    return model.model_dump(mode="json")


# (pydantic model, plain shape, a document the model wrote, how plain reads it)
CASES: dict[str, tuple[type[BaseModel], Shape, Callable[[], dict[str, Any]]]] = {
    "spec": (models.JobRunSpec, plain.JOB_RUN_SPEC, spec_doc),
    "approval": (models.Approval, plain.APPROVAL, approval_doc),
    "cancel order": (models.CancelOrder, plain.CANCEL_ORDER, order_doc),
    "trust root": (TrustRoot, TRUST_ROOT, trust_root_doc),
    "bundle": (BundleFile, BUNDLE_FILE, bundle_doc),
    "receipt": (Receipt, RECEIPT, lambda: bundle_doc()["receipt"]),
    "challenge": (
        api.Challenge,
        pod.CHALLENGE,
        lambda: wire(api.Challenge(nonce=HEX, expires_at=NOW)),
    ),
    "attest answer": (
        api.AttestResponse,
        pod.ATTEST_RESPONSE,
        lambda: wire(
            api.AttestResponse(
                session="s", expires_at=NOW, measurement=HEX, evidence_kind="emulated"
            )
        ),
    ),
    "release answer": (
        api.ReleaseResponse,
        pod.RELEASE_RESPONSE,
        lambda: wire(api.ReleaseResponse(dataset="overlap", key_id="org-a/k", jwe="a.b.c.d.e")),
    ),
    "spark secret answer": (
        api.SparkSecretResponse,
        pod.SPARK_SECRET_RESPONSE,
        lambda: wire(api.SparkSecretResponse(run_id="run-0f4c2a51-7d1e", jwe="a.b.c.d.e")),
    ),
    "dataset version": (
        api.DatasetVersion,
        pod.DATASET_VERSION,
        lambda: wire(
            api.DatasetVersion(
                uri="file:///data/o",
                key_id="org-a/k",
                version=3,
                manifest_digest="sha256:" + HEX,
                updated_at=NOW,
            )
        ),
    ),
    "heartbeat answer": (
        api.HeartbeatAck,
        pod.HEARTBEAT_ACK,
        lambda: wire(
            api.HeartbeatAck(accepted=True, run_id="r", cancel=True, reason="x", order={"a": 1})
        ),
    ),
    "output report": (
        api.OutputReport,
        pod.OUTPUT_REPORT,
        lambda: wire(
            api.OutputReport(dataset="overlap", version=1, manifest_digest="sha256:" + HEX)
        ),
    ),
}


# --- the same schema -------------------------------------------------------------------


def normalized(schema: Any, defs: dict[str, Any]) -> Any:
    """JSON Schema with references resolved and what does not constrain dropped."""
    if isinstance(schema, list):
        return [normalized(s, defs) for s in schema]
    if not isinstance(schema, dict):
        return schema
    if "$ref" in schema:
        return normalized(defs[schema["$ref"].rsplit("/", 1)[1]], defs)
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key in ("title", "description", "default", "$defs"):
            continue
        if key == "patternProperties":
            ((pattern, values),) = value.items()
            out["additionalProperties"] = normalized(values, defs)
            out["propertyNames"] = {**out.get("propertyNames", {}), "pattern": pattern}
        elif key == "propertyNames":
            names = {k: v for k, v in normalized(value, defs).items() if k != "type"}
            out["propertyNames"] = {**out.get("propertyNames", {}), **names}
        elif key == "properties":
            out[key] = {name: normalized(s, defs) for name, s in value.items()}
        elif key == "anyOf":
            options: list[Any] = []
            for option in normalized(value, defs):
                options += option["anyOf"] if set(option) == {"anyOf"} else [option]
            out[key] = sorted(options, key=lambda o: json.dumps(o, sort_keys=True))
        elif key == "additionalProperties" and value is True:
            continue
        else:
            out[key] = normalized(value, defs)
    if "const" in out or "enum" in out:
        out.pop("type", None)
    if "required" in out:
        out["required"] = sorted(out["required"])
    return out


@pytest.mark.parametrize("name", sorted(CASES))
def test_the_shape_is_the_models_schema(name: str) -> None:
    model, shape, _ = CASES[name]
    schema = model.model_json_schema()
    assert normalized(shape.describe(), {}) == normalized(schema, schema.get("$defs", {}))


# --- the same decisions ----------------------------------------------------------------


def paths(doc: Any, at: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every key and item of ``doc``, outermost first."""
    items = (
        doc.items() if isinstance(doc, dict) else enumerate(doc) if isinstance(doc, list) else []
    )
    for key, value in items:
        yield (*at, key)
        yield from paths(value, (*at, key))


def edited(doc: Any, at: tuple[Any, ...], change: Callable[[Any, Any], None]) -> Any:
    """A copy of ``doc`` with ``change(parent, key)`` applied where ``at`` leads."""
    out = copy.deepcopy(doc)
    parent = out
    for key in at[:-1]:
        parent = parent[key]
    change(parent, at[-1])
    return out


def replace_with(probe: Any) -> Callable[[Any, Any], None]:
    def change(parent: Any, key: Any) -> None:
        parent[key] = probe

    return change


def remove(parent: Any, key: Any) -> None:
    if isinstance(parent, dict):
        del parent[key]


def add_unknown(parent: Any, key: Any) -> None:
    if isinstance(parent[key], dict):
        parent[key]["unknown"] = 1


def variants(doc: dict[str, Any]) -> Iterator[Any]:
    """``doc``, then each field removed, joined by an unknown one, or replaced by each probe."""
    yield doc
    yield {**doc, "unknown": 1}
    for at in paths(doc):
        for probe in PROBES:
            yield edited(doc, at, replace_with(probe))
        yield edited(doc, at, remove)
        yield edited(doc, at, add_unknown)


def as_json(value: Any) -> Any:
    """What the plain check read, written as pydantic writes it (times in UTC as ``Z``)."""
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, dict):
        return {k: as_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [as_json(v) for v in value]
    return value


def decide(model: type[BaseModel], shape: Shape, doc: Any) -> tuple[Any, Any, bool]:
    """(the model's reading or None, the shape's reading or None, doc is as the model writes)."""
    try:
        read = model.model_validate(doc)
    except Exception:  # ValidationError, or a validator's own error (a trust root's PEM)
        by_model, as_written = None, False
    else:
        by_model = read.model_dump(mode="json")
        written = read.model_dump(mode="json", exclude_unset=True)
        as_written = json.dumps(written, sort_keys=True) == json.dumps(doc, sort_keys=True)
    try:
        by_shape = plain.check(shape, doc, "document")
        if shape is TRUST_ROOT:
            PlainTrustRoot.from_json(doc)
    except Exception:
        by_shape = None
    return by_model, by_shape, as_written


@pytest.mark.parametrize("name", sorted(CASES))
def test_the_shape_decides_as_the_model_does(name: str) -> None:
    model, shape, make = CASES[name]
    doc = make()
    tried = refused = coerced = 0
    for variant in variants(doc):
        tried += 1
        by_model, by_shape, as_written = decide(model, shape, variant)
        shown = json.dumps(variant, sort_keys=True)[:300]
        if by_shape is not None:
            assert by_model is not None, f"{name}: only the shape accepts {shown}"
            assert as_json(by_shape) == by_model, f"{name}: read differently: {shown}"
        elif by_model is not None:
            assert not as_written, f"{name}: the shape refuses what the model wrote: {shown}"
            coerced += 1
        else:
            refused += 1
    assert decide(model, shape, doc)[1] is not None
    assert tried > len(PROBES) and refused > tried // 4, (tried, refused, coerced)


# --- DSSE without securesystemslib -----------------------------------------------------


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_dsse_reads_writes_and_verifies_as_securesystemslib_does(algorithm: Algorithm) -> None:
    """``signing.dsse`` (what the sidecars verify with) and securesystemslib agree on the
    wire form, the signed bytes and every signature, both ways."""
    from securesystemslib.dsse import Envelope as TheirEnvelope
    from securesystemslib.exceptions import UnverifiedSignatureError
    from securesystemslib.signer import Signature

    key = SigningKey.generate(algorithm)
    theirs = TheirEnvelope(b'{"a":1}', envelope.SPEC_TYPE, {})
    theirs.signatures[key.keyid] = key.sign(theirs.pae())
    ours = dsse.Envelope.from_dict(theirs.to_dict())
    assert ours.to_dict() == theirs.to_dict() and ours.pae() == theirs.pae()
    sig = ours.signatures[key.keyid].signature
    assert dsse.verify_signature(key.public_key, sig, ours.pae())
    assert not dsse.verify_signature(key.public_key, sig, ours.pae() + b" ")
    assert not dsse.verify_signature(SigningKey.generate(algorithm).public_key, sig, ours.pae())
    # And securesystemslib verifies what ours signs (and refuses it over other bytes).
    mine = envelope.sign(b'{"b":2}', envelope.SPEC_TYPE, [key])
    read = TheirEnvelope.from_dict(mine.to_dict())
    sslib = sslib_key(key.public_key)
    signed = Signature(key.keyid, mine.signatures[key.keyid].signature)
    sslib.verify_signature(signed, read.pae())
    with pytest.raises(UnverifiedSignatureError):
        sslib.verify_signature(signed, theirs.pae())
