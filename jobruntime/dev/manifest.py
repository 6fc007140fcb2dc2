"""The YAML ``jobruntime manifest`` renders, read back as the pods a kubelet would start.

Every document that command writes is JSON (``jobruntime.k8s.render.to_yaml``): the
text splits on ``---`` lines and each part parses with :mod:`json`, so the runner
needs no YAML library (PyYAML is a development dependency only). Only what a kubelet
uses to start containers is read: commands, arguments, environment, volume mounts,
volumes, sidecars and their startup probes; the rest (security contexts, resources,
placement) has no local meaning and is checked by the manifest tests instead.

Two shapes are accepted: the SparkApplication (both roles' pod templates, and the
sizes the operator hands Spark) and the plain Pod of ``--policy-input ROLE``, which is
rendered before HOST_DATA exists, so the pods can be measured before approval.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from jobruntime.dev.errors import PodRunnerError
from jobruntime.k8s import layout
from jobruntime.spec.models import POD_ROLES, PodRole

Doc = dict[str, Any]
APPLICATION_KIND = "SparkApplication"


@dataclass(frozen=True)
class EnvVar:
    """A literal value, or a Kubernetes Secret's key (``secret`` is ``(name, key)``)."""

    name: str
    value: str | None = None
    secret: tuple[str, str] | None = None


@dataclass(frozen=True)
class VolumeMount:
    volume: str
    path: str
    read_only: bool = False


@dataclass(frozen=True)
class Probe:
    """An exec probe: run the command until it exits 0, every ``period`` seconds."""

    command: tuple[str, ...]
    period: float
    failures: int
    timeout: float


@dataclass(frozen=True)
class Container:
    name: str
    command: tuple[str, ...]
    """Empty for Spark's container: Spark fills in its command."""
    args: tuple[str, ...]
    env: tuple[EnvVar, ...]
    mounts: tuple[VolumeMount, ...]
    sidecar: bool
    """An init container with ``restartPolicy: Always``: a native sidecar."""
    startup_probe: Probe | None


@dataclass(frozen=True)
class SecretItem:
    secret: str
    key: str
    path: str


@dataclass(frozen=True)
class Volume:
    name: str
    kind: Literal["emptyDir", "secret"]
    items: tuple[SecretItem, ...] = ()
    mode: int = 0o644


@dataclass(frozen=True)
class PodTemplate:
    role: PodRole
    init: tuple[Container, ...]
    containers: tuple[Container, ...]
    volumes: tuple[Volume, ...]

    def volume(self, name: str) -> Volume:
        for v in self.volumes:
            if v.name == name:
                return v
        raise PodRunnerError(f"the {self.role} pod mounts a volume {name!r} it does not declare")


@dataclass(frozen=True)
class Application:
    """The SparkApplication: both pod templates and what the operator hands Spark."""

    run_id: str
    main_file: str
    spark_conf: Mapping[str, str]
    driver: PodTemplate
    executor: PodTemplate
    executors: int
    executor_cores: int
    executor_memory: str
    driver_memory: str

    def template(self, role: PodRole) -> PodTemplate:
        return self.driver if role == "driver" else self.executor


def documents(text: str) -> list[Doc]:
    """The documents of a rendered YAML: ``---`` separated JSON, comment lines before."""
    chunks: list[list[str]] = []
    for line in text.splitlines():
        if line.strip() == "---":
            chunks.append([])
        elif chunks:
            chunks[-1].append(line)
        elif line.strip() and not line.lstrip().startswith("#"):
            raise PodRunnerError("the YAML has text before its first document (---)")
    docs = []
    for i, chunk in enumerate(chunks, 1):
        body = "\n".join(chunk).strip()
        if not body:
            continue
        try:
            doc = json.loads(body)
        except ValueError:
            raise PodRunnerError(
                f"document {i} is not JSON: the runner reads what `jobruntime manifest` writes"
            ) from None
        if not isinstance(doc, dict):
            raise PodRunnerError(f"document {i} is not an object")
        docs.append(doc)
    return docs


def application(text: str) -> Application:
    """The one SparkApplication of a rendered manifest."""
    apps = [d for d in documents(text) if d.get("kind") == APPLICATION_KIND]
    if len(apps) != 1:
        raise PodRunnerError(f"the YAML holds {len(apps)} SparkApplications, not one")
    app = apps[0]
    spec, meta = _obj(app, "spec"), _obj(app, "metadata")
    driver, executor = _obj(spec, "driver"), _obj(spec, "executor")
    return Application(
        run_id=_str(meta, "name"),
        main_file=_str(spec, "mainApplicationFile"),
        spark_conf={str(k): str(v) for k, v in _obj(spec, "sparkConf").items()},
        driver=template(_obj(driver, "template"), "driver"),
        executor=template(_obj(executor, "template"), "executor"),
        executors=_int(executor, "instances"),
        executor_cores=_int(executor, "cores"),
        executor_memory=_str(executor, "memory"),
        driver_memory=_str(driver, "memory"),
    )


def pod_template(text: str, role: PodRole) -> PodTemplate:
    """A role's pod: from a SparkApplication, or a ``--policy-input`` Pod of that role."""
    docs = documents(text)
    if any(d.get("kind") == APPLICATION_KIND for d in docs):
        return application(text).template(role)
    pods = [
        d
        for d in docs
        if d.get("kind") == "Pod"
        and _obj(_obj(d, "metadata"), "labels").get(layout.ROLE_LABEL) == role
    ]
    if len(pods) != 1:
        raise PodRunnerError(f"the YAML holds no SparkApplication and {len(pods)} {role} Pods")
    return template(pods[0], role)


def template(doc: Doc, role: PodRole) -> PodTemplate:
    if role not in POD_ROLES:
        raise PodRunnerError(f"no pod role {role!r}")
    spec = _obj(doc, "spec")
    return PodTemplate(
        role=role,
        init=tuple(container(c) for c in _list(spec, "initContainers")),
        containers=tuple(container(c) for c in _list(spec, "containers")),
        volumes=tuple(volume(v) for v in _list(spec, "volumes")),
    )


def container(doc: Doc) -> Container:
    name = _str(doc, "name")
    probe = doc.get("startupProbe")
    return Container(
        name=name,
        command=tuple(_strs(doc, "command")),
        args=tuple(_strs(doc, "args")),
        env=tuple(env_var(e, name) for e in _list(doc, "env")),
        mounts=tuple(
            VolumeMount(_str(m, "name"), _str(m, "mountPath"), bool(m.get("readOnly", False)))
            for m in _list(doc, "volumeMounts")
        ),
        sidecar=doc.get("restartPolicy") == "Always",
        startup_probe=None if probe is None else exec_probe(probe, name),
    )


def env_var(doc: Doc, container: str) -> EnvVar:
    name = _str(doc, "name")
    if "value" in doc:
        return EnvVar(name, value=str(doc["value"]))
    ref = _obj(_obj(doc, "valueFrom"), "secretKeyRef") if "valueFrom" in doc else None
    if ref is None:
        raise PodRunnerError(f"{container}: ${name} has neither a value nor a secretKeyRef")
    return EnvVar(name, secret=(_str(ref, "name"), _str(ref, "key")))


def exec_probe(doc: Doc, container: str) -> Probe:
    if "exec" not in doc:
        raise PodRunnerError(f"{container}: only exec startup probes run here")
    return Probe(
        command=tuple(_strs(_obj(doc, "exec"), "command")),
        period=float(doc.get("periodSeconds", 10)),
        failures=int(doc.get("failureThreshold", 3)),
        timeout=float(doc.get("timeoutSeconds", 1)),
    )


def volume(doc: Doc) -> Volume:
    name = _str(doc, "name")
    if "emptyDir" in doc:
        return Volume(name, "emptyDir")
    if "projected" in doc:
        projected = _obj(doc, "projected")
        items = []
        for source in _list(projected, "sources"):
            secret = source.get("secret")
            if not isinstance(secret, dict):
                raise PodRunnerError(f"volume {name}: only Secrets are projected here")
            items += _secret_items(secret, _str(secret, "name"))
        return Volume(name, "secret", tuple(items), int(projected.get("defaultMode", 0o644)))
    if "secret" in doc:
        secret = _obj(doc, "secret")
        items = _secret_items(secret, _str(secret, "secretName"))
        return Volume(name, "secret", tuple(items), int(secret.get("defaultMode", 0o644)))
    kinds = sorted(set(doc) - {"name"})
    raise PodRunnerError(f"volume {name}: {kinds} volumes are not emulated here")


def _secret_items(secret: Doc, name: str) -> list[SecretItem]:
    items = _list(secret, "items")
    if not items:
        raise PodRunnerError(
            f"Secret {name}: list its keys (items); the runner mounts no whole Secret"
        )
    return [SecretItem(name, _str(i, "key"), _str(i, "path")) for i in items]


# --- shape checks: one line naming the field, never a traceback ----------------------


def _obj(doc: Doc, key: str) -> Doc:
    value = doc.get(key, {})
    if not isinstance(value, dict):
        raise PodRunnerError(f"{key} is not an object")
    return value


def _list(doc: Doc, key: str) -> list[Doc]:
    value = doc.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise PodRunnerError(f"{key} is not a list of objects")
    return value


def _strs(doc: Doc, key: str) -> list[str]:
    value = doc.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise PodRunnerError(f"{key} is not a list of strings")
    return value


def _str(doc: Doc, key: str) -> str:
    value = doc.get(key)
    if not isinstance(value, str) or not value:
        raise PodRunnerError(f"{key} is missing or not a string")
    return value


def _int(doc: Doc, key: str) -> int:
    value = doc.get(key)
    if not isinstance(value, int) or isinstance(value, bool):
        raise PodRunnerError(f"{key} is missing or not an integer")
    return value
