"""Strict schemas for the rendered documents: the vendored CRD tightened, and Kubernetes' own.

The CRD as published lets unknown fields through (the API server then prunes them
without a word): its pod templates are ``x-kubernetes-preserve-unknown-fields`` and
most objects do not forbid extra properties. Here every object with properties forbids
others, and the templates and ``metadata`` are Kubernetes' ``PodTemplateSpec`` and
``ObjectMeta`` from kubernetes-validate's bundled strict schemas (no network).
"""

from __future__ import annotations

import copy
import functools
import importlib.resources
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml
from referencing import Registry, Resource

CRD = Path(__file__).with_name("crds") / "sparkoperator.k8s.io_sparkapplications.yaml"
K8S_VERSION = "1.33"
"""The oldest Kubernetes the manifests are checked against: native sidecars are GA."""
DEFINITIONS = "https://kubernetes.io/api/_definitions.json"
POD_TEMPLATE_SPEC = f"{DEFINITIONS}#/$defs/io.k8s.api.core.v1.PodTemplateSpec"
OBJECT_META = f"{DEFINITIONS}#/$defs/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"

Schema = dict[str, Any]


@functools.cache
def published_schema() -> Schema:
    """``v1beta2``'s openAPIV3Schema as the CRD publishes it."""
    docs = [d for d in yaml.safe_load_all(CRD.read_text()) if d]
    (crd,) = docs
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1beta2"]
    schema: Schema = version["schema"]["openAPIV3Schema"]
    return schema


def _walk(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


@functools.cache
def tightened_schema() -> Schema:
    schema = copy.deepcopy(published_schema())
    schema["properties"]["metadata"] = {"$ref": OBJECT_META}
    roles = schema["properties"]["spec"]["properties"]
    for role in ("driver", "executor"):
        assert roles[role]["properties"]["template"].get("x-kubernetes-preserve-unknown-fields")
        roles[role]["properties"]["template"] = {"$ref": POD_TEMPLATE_SPEC}
    for node in _walk(schema):
        if node.get("type") == "object" and "properties" in node:
            node.setdefault("additionalProperties", False)
    left = [n for n in _walk(schema) if n.get("x-kubernetes-preserve-unknown-fields")]
    assert left == [], "a part of the schema still accepts anything"
    return schema


@functools.cache
def _definitions() -> Resource[Any]:
    folder = f"v{K8S_VERSION}.0-local-strict"
    ref = importlib.resources.files("kubernetes_validate") / "kubernetes-json-schema" / folder
    contents = json.loads((ref / "_definitions.json").read_text())
    assert contents["$id"] == DEFINITIONS
    return Resource.from_contents(contents)


def crd_errors(doc: dict[str, Any], *, strict: bool = True) -> list[str]:
    """Every violation of the (tightened, or published) CRD schema, as ``path: message``."""
    schema = tightened_schema() if strict else published_schema()
    registry: Registry[Any] = _definitions() @ Registry()
    validator = jsonschema.Draft202012Validator(schema, registry=registry)
    return sorted(
        f"{'.'.join(str(p) for p in e.absolute_path)}: {e.message[:200]}"
        for e in validator.iter_errors(doc)
    )


def validate_k8s(doc: dict[str, Any]) -> None:
    """A core or networking document against Kubernetes' strict schema (raises)."""
    kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def validate_pod_template(template: dict[str, Any], name: str) -> None:
    """A pod template, as the core/v1 PodTemplate that carries one."""
    validate_k8s(
        {
            "apiVersion": "v1",
            "kind": "PodTemplate",
            "metadata": {"name": name},
            "template": template,
        }
    )
