"""The signed documents as plain JSON: the spec, an approval, a cancel order.

The same fields, patterns, bounds and rules as ``models.py`` (both from ``rules.py``),
checked by :mod:`jobruntime.spec.shapes` instead of pydantic, for the pod's sidecars.
Like the models, these parse only bytes whose signature was already checked; they
never coerce (see ``shapes``), so what they accept the models accept too.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from types import MappingProxyType
from typing import Any

from jobruntime.errors import SpecSchemaError
from jobruntime.spec import rules
from jobruntime.spec.codec import load_json
from jobruntime.spec.shapes import (
    AnyOf,
    Boolean,
    Const,
    Field,
    Integer,
    Invalid,
    ListOf,
    MapOf,
    Number,
    OneOf,
    Record,
    Shape,
    Text,
    Timestamp,
)


def text(pattern: str | None = None, **kw: Any) -> Text:
    """A string of a signed document: at most ``MAX_STRING`` characters unless narrower."""
    return Text(pattern, **{"max_length": rules.MAX_STRING, **kw})


NAME = text(rules.NAME)
SHA256_HEX = text(rules.SHA256_HEX)
DIGEST = text(rules.DIGEST)
RUN_ID = text(rules.RUN_ID)
SAFE_INT = Integer(-rules.SAFE_INT, rules.SAFE_INT)
SCALAR = AnyOf((Boolean(), SAFE_INT, Number(), text()))

JOB_MODULE = Record(
    {
        "import_name": Field(text(rules.IMPORT_NAME)),
        "sha256": Field(SHA256_HEX),
        "entry": Field(text(rules.ENTRY), "run"),
    }
)
DATASET = Record(
    {
        "name": Field(NAME),
        "uri": Field(text(min_length=1, max_length=rules.MAX_URI, after=rules.canonical_uri)),
        "key_id": Field(text(rules.DATASET_KEY_ID)),
        "owner": Field(NAME),
    }
)
VALIDITY = Record(
    {"not_before": Field(Timestamp()), "expires": Field(Timestamp())},
    (lambda w: rules.window_ordered(w["not_before"], w["expires"]),),
)
APPROVAL_POLICY = Record(
    {
        "required_owners": Field(ListOf(NAME, 1, rules.MAX_OWNERS)),
        "threshold": Field(Integer(1, rules.MAX_THRESHOLD), 1),
    },
    (lambda p: rules.owners_unique(p["required_owners"]),),
)
WORKLOAD = Record(
    {
        "isolation": Field(OneOf(rules.ISOLATIONS), "pod"),
        "host_data": Field(MapOf(OneOf(rules.POD_ROLES), SHA256_HEX, len(rules.POD_ROLES)), dict),
    },
    (lambda w: rules.workload_consistent(w["isolation"], w["host_data"]),),
)


def _datasets(spec: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [*spec["inputs"], *spec["outputs"]]


JOB_RUN_SPEC = Record(
    {
        "job_id": Field(NAME),
        "workspace": Field(NAME),
        "module": Field(JOB_MODULE),
        "image_digest": Field(DIGEST),
        "parameters": Field(
            MapOf(NAME, AnyOf((SCALAR, ListOf(SCALAR))), rules.MAX_PARAMETERS), dict
        ),
        "inputs": Field(ListOf(DATASET, max_length=rules.MAX_DATASETS), list),
        "outputs": Field(ListOf(DATASET, max_length=rules.MAX_DATASETS), list),
        "workload": Field(WORKLOAD, lambda: {"isolation": "pod", "host_data": {}}),
        "schema_version": Field(Const(1), 1),
        "run_id": Field(RUN_ID),
        "validity": Field(VALIDITY),
        "nonce": Field(SHA256_HEX),
        "approval_policy": Field(APPROVAL_POLICY),
    },
    (
        lambda s: rules.dataset_names_unique([d["name"] for d in _datasets(s)]),
        lambda s: rules.owners_approve(
            (d["owner"] for d in _datasets(s)), s["approval_policy"]["required_owners"]
        ),
    ),
)
APPROVAL = Record(
    {
        "schema_version": Field(Const(1), 1),
        "type": Field(Const("approval"), "approval"),
        "run_id": Field(RUN_ID),
        "spec_digest": Field(DIGEST),
        "owner": Field(NAME),
        "approved_at": Field(Timestamp()),
    }
)
CANCEL_ORDER = Record(
    {
        "schema_version": Field(Const(1), 1),
        "type": Field(Const("cancel"), "cancel"),
        "run_id": Field(RUN_ID),
        "reason": Field(text(max_length=rules.MAX_REASON)),
        "issued_at": Field(Timestamp()),
    }
)


def parse(shape: Record, data: bytes, what: str) -> dict[str, Any]:
    """Limits, then JSON, then the shape: ``codec.parse_model`` without pydantic."""
    value: dict[str, Any] = check(shape, load_json(data, what), what)
    return value


def check(shape: Shape, obj: Any, what: str) -> Any:
    """The value as the shape returns it, or ``SpecSchemaError`` naming field and rule."""
    try:
        return shape.check(obj)
    except Invalid as exc:
        raise SpecSchemaError(f"{what} does not match the schema: {exc}") from None


# --- what the sidecars read, typed -----------------------------------------------------


@dataclass(frozen=True)
class PlainDataset:
    name: str
    uri: str
    key_id: str
    owner: str


@dataclass(frozen=True)
class PlainWindow:
    not_before: datetime
    expires: datetime


@dataclass(frozen=True)
class PlainPolicy:
    required_owners: tuple[str, ...]
    threshold: int


@dataclass(frozen=True)
class PlainSpec:
    """A spec checked against :data:`JOB_RUN_SPEC`; its fields as ``JobRunSpec`` names them."""

    run_id: str
    job_id: str
    workspace: str
    module_import_name: str
    module_sha256: str
    image_digest: str
    parameters: Mapping[str, Any]
    inputs: tuple[PlainDataset, ...]
    outputs: tuple[PlainDataset, ...]
    isolation: str
    host_data: Mapping[str, str]
    validity: PlainWindow
    nonce: str
    approval_policy: PlainPolicy

    def dataset(self, name: str) -> PlainDataset | None:
        for d in (*self.inputs, *self.outputs):
            if d.name == name:
                return d
        return None


@dataclass(frozen=True)
class PlainApproval:
    run_id: str
    spec_digest: str
    owner: str
    approved_at: datetime


@dataclass(frozen=True)
class PlainCancelOrder:
    run_id: str
    reason: str
    issued_at: datetime


def parse_spec(data: bytes, what: str = "spec") -> PlainSpec:
    s = parse(JOB_RUN_SPEC, data, what)
    window, policy = s["validity"], s["approval_policy"]
    return PlainSpec(
        run_id=s["run_id"],
        job_id=s["job_id"],
        workspace=s["workspace"],
        module_import_name=s["module"]["import_name"],
        module_sha256=s["module"]["sha256"],
        image_digest=s["image_digest"],
        parameters=MappingProxyType(s["parameters"]),
        inputs=tuple(PlainDataset(**d) for d in s["inputs"]),
        outputs=tuple(PlainDataset(**d) for d in s["outputs"]),
        isolation=s["workload"]["isolation"],
        host_data=MappingProxyType(s["workload"]["host_data"]),
        validity=PlainWindow(window["not_before"], window["expires"]),
        nonce=s["nonce"],
        approval_policy=PlainPolicy(tuple(policy["required_owners"]), policy["threshold"]),
    )


def parse_approval(data: bytes, what: str = "approval") -> PlainApproval:
    a = parse(APPROVAL, data, what)
    return PlainApproval(a["run_id"], a["spec_digest"], a["owner"], a["approved_at"])


def parse_cancel_order(data: bytes, what: str = "cancel order") -> PlainCancelOrder:
    o = parse(CANCEL_ORDER, data, what)
    return PlainCancelOrder(o["run_id"], o["reason"], o["issued_at"])
