"""``jobruntime manifest``: real signed runs from the emulator, rendered and checked strictly.

Every run here is submitted to the real emulator (``tests/conftest.py``) and verified
against its trust root before it is rendered, as the command does. Golden files:
``JOBRUNTIME_UPDATE_GOLDEN=1`` rewrites them (tests/k8s/README.md).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from jobruntime.cli.main import main
from jobruntime.errors import BadSignatureError
from jobruntime.job.failure import leaky_spark_settings
from jobruntime.k8s import (
    Egress,
    HostDataMissingError,
    ManifestError,
    ManifestOptions,
    PolicyMismatchError,
    Rendered,
    SecretPathError,
    Toleration,
    layout,
    name_workload,
    render,
    render_policy_input,
    verified_run,
)
from jobruntime.signing.keys import SigningKey
from jobruntime.signing.trustroot import Role, TrustedKey, TrustRoot
from jobruntime.sparkconf.check import (
    SECURE_SPARK_CONF,
    SparkSettings,
    effective_conf,
)
from jobruntime.sparkconf.errors import SparkConfError
from jobruntime.sparkconf.spark_home import default_conf_dir
from jobruntime.spec.models import POD_ROLES, PodRole, utcnow
from jobruntime.verification.signed import VerifiedSpec
from tests.conftest import IMAGE, Runs
from tests.k8s.schemas import crd_errors, validate_k8s, validate_pod_template
from tests.tamper import TamperingClient, flip_byte

GOLDEN = Path(__file__).with_name("golden")
UPDATE_ENV = "JOBRUNTIME_UPDATE_GOLDEN"
REPO = "registry.example.com/confidential-spark-runtime"
ZERO_RUN = "run-00000000-0000-0000-0000-000000000000"
ZERO_DIGEST = "sha256:" + "0" * 64
RULES: dict[PodRole, bytes] = {
    "driver": b"package agent_policy\n# the driver pod's policy (golden test stand-in)\n",
    "executor": b"package agent_policy\n# the executor pods' policy (golden test stand-in)\n",
}
POLICIES = {role: base64.b64encode(text).decode() for role, text in RULES.items()}
HOST_DATA = {role: hashlib.sha256(text).hexdigest() for role, text in RULES.items()}
EGRESS = Egress(
    control_plane=("203.0.113.10/32",),
    storage=("198.51.100.0/24",),
    api_server=("192.0.2.1/32",),
)
NET_FLAGS = [
    "--control-plane-cidr",
    "203.0.113.10/32",
    "--storage-cidr",
    "198.51.100.0/24",
    "--api-server-cidr",
    "192.0.2.1/32",
]


# --- runs and renderings ---------------------------------------------------------------


def spark_conf() -> dict[str, str]:
    conf_dir = default_conf_dir()
    return effective_conf(conf_dir, conf_dir / "kubernetes.conf")


def options(**overrides: Any) -> ManifestOptions:
    values: dict[str, Any] = {
        "image_repo": REPO,
        "spark_version": "4.3.0",
        "spark_conf": spark_conf(),
        "egress": EGRESS,
        "executors": 2,
    }
    values.update(overrides)
    return ManifestOptions(**values)


def az_datasets(runs: Runs) -> dict[str, Any]:
    """The fixture's two inputs and one output, in Azure Blob Storage."""
    req = runs.request()
    for d in (*req.inputs, *req.outputs):
        assert d.uri.startswith("file:///data/")
    return {
        "inputs": [
            {**d.model_dump(), "uri": f"az://datasets/{d.owner}/{d.name}"} for d in req.inputs
        ],
        "outputs": [
            {**d.model_dump(), "uri": f"az://datasets/{d.owner}/{d.name}"} for d in req.outputs
        ],
    }


def trust(runs: Runs) -> TrustRoot:
    return TrustRoot.load(runs.emu.trust_root)


def node_run(runs: Runs) -> VerifiedSpec:
    run_id = runs.submit(**az_datasets(runs), workload={"isolation": "node"})
    with runs.emu.client("operator") as c:
        return verified_run(c, run_id, trust(runs))


def pod_run(runs: Runs) -> VerifiedSpec:
    """A pod-isolation run whose spec names the golden policies' HOST_DATA."""
    run_id = runs.submit(**az_datasets(runs), workload={"isolation": "pod"})
    with runs.emu.client("operator") as c:
        return name_workload(c, run_id, trust(runs), HOST_DATA)


def normalized(rendered: Rendered, verified: VerifiedSpec) -> str:
    """The YAML with the emulator's fresh run id and spec digest replaced by zeros."""
    return rendered.yaml().replace(verified.run_id, ZERO_RUN).replace(verified.digest, ZERO_DIGEST)


def documents(rendered: Rendered) -> dict[str, dict[str, Any]]:
    return {f"{d['kind']}/{d['metadata']['name']}": d for d in rendered.documents}


def app_of(rendered: Rendered) -> dict[str, Any]:
    (app,) = [d for d in rendered.documents if d["kind"] == "SparkApplication"]
    return app


def templates(rendered: Rendered) -> dict[PodRole, dict[str, Any]]:
    spec = app_of(rendered)["spec"]
    return {role: spec[role]["template"] for role in POD_ROLES}


def containers(template: dict[str, Any]) -> list[dict[str, Any]]:
    return [*template["spec"]["initContainers"], *template["spec"]["containers"]]


def by_name(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in containers(template)}


@pytest.fixture
def rendered_pod(runs: Runs) -> tuple[VerifiedSpec, Rendered]:
    verified = pod_run(runs)
    return verified, render(verified, options(cc_policies=POLICIES))


@pytest.fixture
def rendered_node(runs: Runs) -> tuple[VerifiedSpec, Rendered]:
    verified = node_run(runs)
    return verified, render(verified, options())


@pytest.fixture(params=["pod", "node"])
def rendered(
    request: pytest.FixtureRequest, runs: Runs
) -> Iterator[tuple[str, VerifiedSpec, Rendered]]:
    if request.param == "pod":
        verified = pod_run(runs)
        yield "pod", verified, render(verified, options(cc_policies=POLICIES))
    else:
        verified = node_run(runs)
        yield "node", verified, render(verified, options())


# --- golden files and schemas --------------------------------------------------------


def test_golden_manifests(rendered: tuple[str, VerifiedSpec, Rendered]) -> None:
    """Deterministic: the same run and options give these bytes (2 executors, 2 inputs)."""
    isolation, verified, out = rendered
    assert len(verified.spec.inputs) == 2
    assert app_of(out)["spec"]["executor"]["instances"] == 2
    path = GOLDEN / f"{isolation}-isolation.yaml"
    text = normalized(out, verified)
    if os.environ.get(UPDATE_ENV) == "1":
        path.write_text(text)
    assert path.read_text() == text, f"rendering changed: {UPDATE_ENV}=1 refreshes {path.name}"
    assert render(verified, out_options(isolation)).yaml() == out.yaml()


def out_options(isolation: str) -> ManifestOptions:
    return options(cc_policies=POLICIES) if isolation == "pod" else options()


def test_the_yaml_reads_back_as_the_documents(rendered: tuple[str, VerifiedSpec, Rendered]) -> None:
    """JSON documents under a comment block: any YAML reader (kubectl's too) gets them back."""
    _, _, out = rendered
    assert [d for d in yaml.safe_load_all(out.yaml()) if d is not None] == out.documents


def test_the_spark_application_passes_the_tightened_crd(
    rendered: tuple[str, VerifiedSpec, Rendered],
) -> None:
    _, _, out = rendered
    assert crd_errors(app_of(out)) == []


def test_the_tightened_crd_rejects_what_the_published_one_lets_through(
    rendered_pod: tuple[VerifiedSpec, Rendered],
) -> None:
    """Unknown fields are pruned silently by the API server: here they fail."""
    _, out = rendered_pod
    app = json.loads(json.dumps(app_of(out)))
    app["spec"]["driver"]["sidecarz"] = []
    app["spec"]["executor"]["template"]["spec"]["containers"][0]["securityContextt"] = {}
    app["spec"]["driver"]["template"]["spec"]["bogus"] = True
    app["metadata"]["labelz"] = {}
    assert crd_errors(app, strict=False) == []
    errors = crd_errors(app)
    assert len(errors) == 4, errors
    for field in ("sidecarz", "securityContextt", "bogus", "labelz"):
        assert any(field in e for e in errors), (field, errors)


def test_the_pod_templates_and_policies_pass_kubernetes_schemas(
    rendered: tuple[str, VerifiedSpec, Rendered],
) -> None:
    _, _, out = rendered
    for role, t in templates(out).items():
        validate_pod_template(t, f"{role}-template")
    for doc in out.documents:
        if doc["kind"] == "NetworkPolicy":
            validate_k8s(doc)
    broken = json.loads(json.dumps(templates(out)["driver"]))
    broken["spec"]["initContainers"][1]["restartPolicyy"] = "Always"
    with pytest.raises(Exception, match="restartPolicyy"):
        validate_pod_template(broken, "broken")


# --- security properties ---------------------------------------------------------------


def test_every_container_is_locked_down(rendered: tuple[str, VerifiedSpec, Rendered]) -> None:
    _, verified, out = rendered
    for role, t in templates(out).items():
        pod = t["spec"]["securityContext"]
        assert pod["runAsNonRoot"] is True
        assert (pod["runAsUser"], pod["runAsGroup"], pod["fsGroup"]) == (185, 185, 185)
        assert pod["seccompProfile"] == {"type": "RuntimeDefault"}
        assert t["spec"]["restartPolicy"] == "Never"
        assert t["spec"]["enableServiceLinks"] is False
        for c in containers(t):
            where = f"{role}/{c['name']}"
            sc = c["securityContext"]
            assert sc["runAsNonRoot"] is True, where
            assert (sc["runAsUser"], sc["runAsGroup"]) == (185, 185), where
            assert sc["capabilities"] == {"drop": ["ALL"]}, where
            assert sc["seccompProfile"] == {"type": "RuntimeDefault"}, where
            assert sc["allowPrivilegeEscalation"] is False, where
            assert sc["readOnlyRootFilesystem"] is True, where
            assert sc["privileged"] is False, where
            assert c["terminationMessagePolicy"] == "FallbackToLogsOnError", where
            assert c["image"] == f"{REPO}@{verified.spec.image_digest}", where
    assert app_of(out)["spec"]["image"] == f"{REPO}@{IMAGE}"
    assert app_of(out)["spec"]["restartPolicy"] == {"type": "Never"}


def test_only_the_driver_gets_a_service_account_token(
    rendered: tuple[str, VerifiedSpec, Rendered],
) -> None:
    _, _, out = rendered
    t = templates(out)
    assert t["driver"]["spec"]["automountServiceAccountToken"] is True
    assert t["driver"]["spec"]["serviceAccountName"] == "spark-operator-spark"
    assert app_of(out)["spec"]["driver"]["serviceAccount"] == "spark-operator-spark"
    assert t["executor"]["spec"]["automountServiceAccountToken"] is False
    assert "serviceAccountName" not in t["executor"]["spec"]


def test_the_pods_are_the_runs_sidecars_and_verifier(
    rendered: tuple[str, VerifiedSpec, Rendered],
) -> None:
    _, verified, out = rendered
    t = templates(out)
    assert [c["name"] for c in t["driver"]["spec"]["initContainers"]] == [
        "job-verifier",
        "key-agent",
        "heartbeat",
    ]
    assert [c["name"] for c in t["executor"]["spec"]["initContainers"]] == [
        "job-verifier",
        "key-agent",
    ]
    assert [c["name"] for c in t["driver"]["spec"]["containers"]] == ["spark-kubernetes-driver"]
    assert [c["name"] for c in t["executor"]["spec"]["containers"]] == ["spark-kubernetes-executor"]
    for role, tmpl in t.items():
        named = by_name(tmpl)
        verifier = named["job-verifier"]
        assert "restartPolicy" not in verifier  # a plain init container: runs to completion
        assert verifier["command"] == ["/opt/jobruntime/venv/bin/job-verifier"]
        args = verifier["args"]
        assert args[args.index("--mode") + 1] == role
        assert args[args.index("--run-id") + 1] == verified.run_id
        assert args[args.index("--image-digest") + 1] == verified.spec.image_digest
        assert args[args.index("--output-dir") + 1] == "/run/jobruntime"
        agent = named["key-agent"]
        assert agent["restartPolicy"] == "Always"  # native sidecar
        assert agent["startupProbe"]["exec"]["command"] == [
            "/usr/bin/test",
            "-S",
            "/run/jobruntime/agent/agent.sock",
        ]
        assert agent["args"][agent["args"].index("--socket") + 1] == layout.SOCKET
        spark = tmpl["spec"]["containers"][0]
        assert {"name": "JOB_KEYAGENT_SOCKET", "value": layout.SOCKET} in spark["env"]
    assert by_name(t["driver"])["heartbeat"]["restartPolicy"] == "Always"
    # No dev-mode anchors: the trust root, module and control plane come from the image.
    text = out.yaml()
    for flag in ("--trust-root", "--control-plane-url", "--module", "JOBRUNTIME_DEV", "--tee"):
        assert flag not in text


def test_the_volumes_are_the_only_writable_paths(
    rendered: tuple[str, VerifiedSpec, Rendered],
) -> None:
    _, _, out = rendered
    for t in templates(out).values():
        volumes = {v["name"]: v for v in t["spec"]["volumes"]}
        assert volumes["jobruntime-run"]["emptyDir"]["medium"] == "Memory"
        assert volumes["tmp"]["emptyDir"].get("medium") is None
        assert "emptyDir" in volumes["spark-local-dir-1"]
        for c in containers(t):
            mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
            assert mounts["/run/jobruntime"] == "jobruntime-run"
            assert mounts["/tmp"] == "tmp"
        spark = t["spec"]["containers"][0]
        spark_mounts = {m["mountPath"]: m["name"] for m in spark["volumeMounts"]}
        # Spark takes a template mount named spark-local-dir-* as its local directory.
        assert spark_mounts["/var/data/spark-local-dir-1"] == "spark-local-dir-1"
        assert spark_mounts["/opt/spark/work-dir"] == "spark-work-dir"


def test_secrets_are_referenced_by_name_and_never_inlined(
    runs: Runs, rendered: tuple[str, VerifiedSpec, Rendered]
) -> None:
    _, _, out = rendered
    text = out.yaml()
    for principal in ("verifier", "operator", "submitter"):
        assert runs.emu.token(principal) not in text
    for role, t in templates(out).items():
        token = next(v for v in t["spec"]["volumes"] if v["name"] == "jobruntime-token")
        (source,) = token["projected"]["sources"]
        assert source["secret"]["name"] == "jobruntime-verifier-token"
        assert token["projected"]["defaultMode"] == 0o440
        for c in containers(t):
            reads_token = any(m["name"] == "jobruntime-token" for m in c["volumeMounts"])
            is_spark = c["name"].startswith("spark-kubernetes-")
            assert reads_token != is_spark, f"{role}/{c['name']}"  # never the job's container
            for m in c["volumeMounts"]:
                if m["name"] == "jobruntime-token":
                    assert m["readOnly"] is True
            for var in c.get("env", []):
                if "CONNECTION" in var["name"] or "TOKEN" in var["name"]:
                    assert "value" not in var, var
                    assert var["valueFrom"]["secretKeyRef"]["name"].startswith("jobruntime-")
        spark = t["spec"]["containers"][0]
        assert {
            "name": "JOBRUNTIME_AZURE_CONNECTION_STRING",
            "valueFrom": {
                "secretKeyRef": {"name": "jobruntime-storage", "key": "connection-string"}
            },
        } in spark["env"]
    assert not any(d["kind"] == "Secret" for d in out.documents)
    assert "kubectl -n jobruntime create secret generic jobruntime-verifier-token" in text


def test_the_heartbeat_reads_service_bus_from_a_secret(runs: Runs) -> None:
    out = render(
        node_run(runs),
        options(
            heartbeat_transport="servicebus",
            egress=replace(EGRESS, servicebus=("198.51.100.200/32",)),
        ),
    )
    hb = by_name(templates(out)["driver"])["heartbeat"]
    assert hb["env"] == [
        {
            "name": "JOB_SERVICEBUS_CONNECTION",
            "valueFrom": {
                "secretKeyRef": {"name": "jobruntime-servicebus", "key": "connection-string"}
            },
        }
    ]
    assert hb["args"][hb["args"].index("--transport") + 1] == "servicebus"
    driver_policy = documents(out)[f"NetworkPolicy/{out.documents[0]['metadata']['name']}-driver"]
    ports = [r["ports"] for r in driver_policy["spec"]["egress"]]
    assert [{"protocol": "TCP", "port": 5671}, {"protocol": "TCP", "port": 443}] in ports


def test_labels_carry_the_run_id(rendered: tuple[str, VerifiedSpec, Rendered]) -> None:
    _, verified, out = rendered
    run_id = verified.run_id
    for doc in out.documents:
        assert doc["metadata"]["labels"][layout.RUN_LABEL] == run_id
        assert doc["metadata"]["namespace"] == "jobruntime"
    app = app_of(out)
    assert app["metadata"]["name"] == run_id
    assert app["metadata"]["annotations"][layout.SPEC_DIGEST_ANNOTATION] == verified.digest
    for role, t in templates(out).items():
        assert t["metadata"]["labels"][layout.RUN_LABEL] == run_id
        assert t["metadata"]["labels"][layout.ROLE_LABEL] == role


def test_pod_isolation_runs_in_confidential_containers_with_the_approved_policies(
    rendered_pod: tuple[VerifiedSpec, Rendered],
) -> None:
    verified, out = rendered_pod
    assert verified.spec.workload.host_data == HOST_DATA
    for role, t in templates(out).items():
        assert t["spec"]["runtimeClassName"] == "kata-cc-isolation"
        assert "nodeSelector" not in t["spec"] and "tolerations" not in t["spec"]
        policy = t["metadata"]["annotations"][layout.CC_POLICY_ANNOTATION]
        assert hashlib.sha256(base64.b64decode(policy)).hexdigest() == HOST_DATA[role]
    assert out.warnings == []
    assert any("Isolation: pod" in line for line in out.header)


def test_a_runtime_class_of_ones_own(runs: Runs) -> None:
    out = render(pod_run(runs), options(cc_policies=POLICIES, runtime_class="kata-qemu-snp"))
    assert {t["spec"]["runtimeClassName"] for t in templates(out).values()} == {"kata-qemu-snp"}


def test_node_isolation_goes_to_the_pool_and_warns(
    rendered_node: tuple[VerifiedSpec, Rendered],
) -> None:
    _, out = rendered_node
    for t in templates(out).values():
        spec = t["spec"]
        assert "runtimeClassName" not in spec
        assert spec["nodeSelector"] == {"jobruntime.io/confidential-node": "sev-snp"}
        terms = spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
        assert terms["nodeSelectorTerms"] == [
            {
                "matchExpressions": [
                    {
                        "key": "jobruntime.io/confidential-node",
                        "operator": "In",
                        "values": ["sev-snp"],
                    }
                ]
            }
        ]
        assert spec["tolerations"] == [
            {
                "key": "jobruntime.io/confidential-node",
                "operator": "Equal",
                "value": "sev-snp",
                "effect": "NoSchedule",
            }
        ]
    (warning,) = out.warnings
    assert "NOT from whoever controls this Kubernetes cluster" in warning
    assert any(line.startswith("WARNING: node isolation") for line in out.header)
    assert "WARNING: node isolation" in out.yaml()


def test_node_placement_is_configurable(runs: Runs) -> None:
    out = render(
        node_run(runs),
        options(
            node_selector={"kubernetes.azure.com/agentpool": "cvmpool"},
            tolerations=(Toleration("sku", "cvm", "NoExecute"),),
        ),
    )
    spec = templates(out)["executor"]["spec"]
    assert spec["nodeSelector"] == {"kubernetes.azure.com/agentpool": "cvmpool"}
    assert spec["tolerations"] == [
        {"key": "sku", "operator": "Equal", "value": "cvm", "effect": "NoExecute"}
    ]
    assert crd_errors(app_of(out)) == []


def test_the_spark_conf_travels_in_the_application_and_passes_conf_check(
    rendered: tuple[str, VerifiedSpec, Rendered],
) -> None:
    _, _, out = rendered
    conf = app_of(out)["spec"]["sparkConf"]
    # Everything of spark-conf/, plus the JVMs loading the image's quiet log4j2 rules
    # (Spark's ConfigMap replaces /opt/spark/conf in the pods).
    logging = "-Dlog4j2.configurationFile=file:/opt/jobruntime/conf/log4j2.properties"
    assert leaky_spark_settings(conf) == []  # what the driver checks before the job
    for role in ("driver", "executor"):
        assert conf.pop(f"spark.{role}.extraJavaOptions").split()[-1] == logging
    assert conf == dict(sorted(spark_conf().items()))
    SECURE_SPARK_CONF.verify(SparkSettings({**conf, "spark.master": "k8s://https://10.0.0.1"}))
    secret = conf["spark.authenticate.secret.driver.file"]
    assert secret == conf["spark.authenticate.secret.executor.file"]
    assert Path(secret).parent == Path("/run/jobruntime/agent")  # the agent's own 0700 dir
    for t in templates(out).values():
        agent = by_name(t)["key-agent"]["args"]
        assert agent[agent.index("--spark-secret-file") + 1] == secret
        assert not any("_SPARK_AUTH_SECRET" in json.dumps(c) for c in containers(t))


@pytest.mark.parametrize(
    "path",
    [
        "/run/jobruntime/spark-auth-secret",  # the kubelet's world-writable volume root
        "/tmp/spark-auth-secret",  # not the memory volume
        "/run/jobruntime/agent/../../tmp/spark-auth-secret",
    ],
)
def test_a_secret_file_the_agent_cannot_write_is_refused(runs: Runs, path: str) -> None:
    conf = {
        **spark_conf(),
        "spark.authenticate.secret.driver.file": path,
        "spark.authenticate.secret.executor.file": path,
    }
    with pytest.raises(SecretPathError) as info:
        render(node_run(runs), options(spark_conf=conf))
    assert info.value.code == "manifest.secret_path" and info.value.exit_code == 32


def test_a_weakened_spark_conf_is_refused(runs: Runs) -> None:
    conf = {**spark_conf(), "spark.network.crypto.cipher": "AES/CTR/NoPadding"}
    with pytest.raises(SparkConfError) as info:
        render(node_run(runs), options(spark_conf=conf))
    assert info.value.code == "sparkconf.cipher"


# --- the NetworkPolicy -----------------------------------------------------------------


def test_the_network_policy_closes_egress_to_what_the_run_needs(
    rendered: tuple[str, VerifiedSpec, Rendered],
) -> None:
    _, verified, out = rendered
    docs = documents(out)
    run_id = verified.run_id
    pods = docs[f"NetworkPolicy/{run_id}-pods"]["spec"]
    assert pods["podSelector"] == {"matchLabels": {layout.RUN_LABEL: run_id}}
    assert pods["policyTypes"] == ["Ingress", "Egress"]
    same_run = {"podSelector": {"matchLabels": {layout.RUN_LABEL: run_id}}}
    assert pods["ingress"] == [{"from": [same_run]}]
    egress = pods["egress"]
    assert egress[0] == {"to": [same_run]}
    assert egress[1]["ports"] == [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]
    blocks = [[p["ipBlock"]["cidr"] for p in rule["to"]] for rule in egress[2:]]
    assert blocks == [["203.0.113.10/32"], ["198.51.100.0/24"]]
    driver = docs[f"NetworkPolicy/{run_id}-driver"]["spec"]
    assert driver["podSelector"]["matchLabels"][layout.ROLE_LABEL] == "driver"
    assert driver["policyTypes"] == ["Egress"]
    assert driver["egress"] == [
        {"to": [{"ipBlock": {"cidr": "192.0.2.1/32"}}], "ports": [{"protocol": "TCP", "port": 443}]}
    ]
    for rule in egress:  # nothing reaches 0.0.0.0/0
        for peer in rule["to"]:
            assert peer.get("ipBlock", {}).get("cidr") != "0.0.0.0/0"


@pytest.mark.parametrize(
    ("egress", "missing"),
    [
        (replace(EGRESS, control_plane=()), "--control-plane-cidr"),
        (replace(EGRESS, storage=()), "--storage-cidr"),
        (replace(EGRESS, api_server=()), "--api-server-cidr"),
    ],
)
def test_an_egress_the_run_needs_must_be_given(runs: Runs, egress: Egress, missing: str) -> None:
    verified = node_run(runs)
    with pytest.raises(Exception, match=missing) as info:
        render(verified, options(egress=egress))
    assert getattr(info.value, "code", None) == "config.invalid"


def test_storage_egress_is_needed_only_for_azure_datasets(runs: Runs) -> None:
    run_id = runs.submit(workload={"isolation": "node"})  # file:// datasets
    with runs.emu.client("operator") as c:
        verified = verified_run(c, run_id, trust(runs))
    out = render(verified, options(egress=replace(EGRESS, storage=())))
    spark = templates(out)["driver"]["spec"]["containers"][0]
    assert all("CONNECTION" not in v["name"] for v in spark["env"])
    assert any("file://" in w for w in out.warnings)


# --- refusals ---------------------------------------------------------------------------


def test_a_forged_spec_is_refused_with_its_code(runs: Runs) -> None:
    run_id = runs.submit(**az_datasets(runs), workload={"isolation": "node"})
    token = runs.emu.token("operator")
    with (
        TamperingClient(runs.emu.url, token, spec=flip_byte) as client,
        pytest.raises(BadSignatureError) as info,
    ):
        verified_run(client, run_id, trust(runs))
    assert info.value.code == "signature.invalid"
    assert info.value.exit_code == 11


def test_a_spec_signed_by_another_key_is_refused_by_the_command(
    runs: Runs, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The command checks against the trust root it is given, not the control plane's word."""
    run_id = runs.submit(**az_datasets(runs), workload={"isolation": "node"})
    root, other, now = trust(runs), SigningKey.generate(), utcnow()
    foreign = TrustedKey(
        keyid=other.keyid,
        public_key_pem=other.public_pem,
        not_before=now - timedelta(days=1),
        not_after=now + timedelta(days=1),
    )
    owner_ids = {k for r in root.owners.values() for k in r.keyids}
    swapped = TrustRoot(
        keys=[k for k in root.keys if k.keyid in owner_ids] + [foreign],
        control_plane=Role(keyids=[other.keyid]),
        owners=dict(root.owners),
    )
    (tmp_path / "other-root.json").write_text(swapped.to_json())
    code = cli(runs, run_id, "--trust-root", str(tmp_path / "other-root.json"))
    captured = capsys.readouterr()
    assert code == 11, captured.err
    assert captured.err.startswith("jobruntime: signature.")
    assert captured.out == ""


def test_pod_isolation_without_host_data_is_refused(runs: Runs) -> None:
    run_id = runs.submit(**az_datasets(runs), workload={"isolation": "pod"})
    with runs.emu.client("operator") as c:
        verified = verified_run(c, run_id, trust(runs))
    with pytest.raises(HostDataMissingError) as info:
        render(verified, options(cc_policies=POLICIES))
    assert info.value.code == "manifest.host_data_missing"
    assert info.value.exit_code == 32
    assert "driver and executor" in info.value.message


def test_pod_isolation_with_host_data_for_one_role_only_is_refused(runs: Runs) -> None:
    run_id = runs.submit(
        **az_datasets(runs),
        workload={"isolation": "pod", "host_data": {"driver": HOST_DATA["driver"]}},
    )
    with runs.emu.client("operator") as c:
        verified = verified_run(c, run_id, trust(runs))
    with pytest.raises(HostDataMissingError, match="for executor"):
        render(verified, options())


def test_a_policy_that_is_not_the_approved_one_is_refused(runs: Runs) -> None:
    verified = pod_run(runs)
    other = base64.b64encode(b"package agent_policy\ndefault ExecProcessRequest := true\n")
    with pytest.raises(PolicyMismatchError) as info:
        render(verified, options(cc_policies={**POLICIES, "executor": other.decode()}))
    assert info.value.code == "manifest.policy_mismatch"
    assert HOST_DATA["executor"] in info.value.message


def test_pod_isolation_without_policies_renders_with_a_warning(runs: Runs) -> None:
    out = render(pod_run(runs), options())
    assert any("no pod policy" in w for w in out.warnings)
    assert all("annotations" not in t["metadata"] for t in templates(out).values())


# --- the command ---------------------------------------------------------------------


def cli(runs: Runs, run_id: str, *extra: str) -> int:
    return main(
        [
            "manifest",
            run_id,
            "--emulator-state",
            str(runs.emu.state),
            "--image-repo",
            REPO,
            "--conf-dir",
            str(default_conf_dir()),
            *NET_FLAGS,
            *extra,
        ]
    )


def test_the_command_names_host_data_then_renders_after_approval(
    runs: Runs, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Policy input, HOST_DATA named from the policies, owners approve, then the manifest."""
    run_id = runs.submit(**az_datasets(runs), workload={"isolation": "pod"})
    # 1. The pods to measure, before any HOST_DATA exists.
    for role in POD_ROLES:
        out = tmp_path / f"{role}-pod.yaml"
        assert cli(runs, run_id, "--policy-input", role, "-o", str(out)) == 0
        (pod,) = [d for d in yaml.safe_load_all(out.read_text()) if d]
        assert pod["kind"] == "Pod"
        assert pod["metadata"]["labels"][layout.ROLE_LABEL] == role
        assert "annotations" not in pod["metadata"]
        validate_k8s(pod)
    # 2. The operator's policies name HOST_DATA in the spec, before approval.
    for role, policy in POLICIES.items():
        (tmp_path / f"{role}.policy").write_text(policy + "\n")
    flags = [f"--cc-policy={r}={tmp_path / f'{r}.policy'}" for r in POLICIES]
    capsys.readouterr()
    assert cli(runs, run_id, *flags, "--set-workload") == 0, capsys.readouterr().err
    said = capsys.readouterr().out
    assert f"driver={HOST_DATA['driver']}" in said and "owners approve" in said
    assert runs.signed(run_id).spec.workload.host_data == HOST_DATA
    # 3. Before approval it renders, and says the pods will refuse to start.
    assert cli(runs, run_id, *flags) == 0
    captured = capsys.readouterr()
    assert "not approved yet" in captured.err
    assert [d["kind"] for d in yaml.safe_load_all(captured.out) if d] == [
        "SparkApplication",
        "NetworkPolicy",
        "NetworkPolicy",
    ]
    # 4. Approved: the manifest, to a file; HOST_DATA can no longer change.
    runs.approve(run_id)
    assert cli(runs, run_id, *flags, "-o", str(tmp_path / "app.yaml")) == 0
    err = capsys.readouterr().err
    assert "not approved" not in err and "WARNING" not in err
    (app, *_) = [d for d in yaml.safe_load_all((tmp_path / "app.yaml").read_text()) if d]
    assert crd_errors(app) == []
    assert (
        cli(
            runs,
            run_id,
            "--host-data",
            f"driver={'1' * 64}",
            "--host-data",
            f"executor={'2' * 64}",
            "--set-workload",
        )
        == 20
    )
    err = capsys.readouterr().err
    assert err.startswith("jobruntime: controlplane.refused: ") and "already has approvals" in err


def test_set_workload_refuses_what_it_cannot_name(
    runs: Runs, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pod = runs.submit(**az_datasets(runs), workload={"isolation": "pod"})
    node = runs.submit(**az_datasets(runs), workload={"isolation": "node"})
    (tmp_path / "driver.policy").write_text(POLICIES["driver"])
    driver = f"--cc-policy=driver={tmp_path / 'driver.policy'}"
    # A --host-data that is not the digest of the policy given for the same role.
    other = f"--host-data=driver={'3' * 64}"
    executor = f"--host-data=executor={HOST_DATA['executor']}"
    assert cli(runs, pod, driver, other, executor, "--set-workload") == 32
    assert "manifest.policy_mismatch" in capsys.readouterr().err
    # Only one role named.
    assert cli(runs, pod, driver, "--set-workload") == 32
    assert "manifest.host_data_missing" in capsys.readouterr().err
    # Node isolation has no pods to name.
    assert cli(runs, node, driver, executor, "--set-workload") == 32
    assert "node isolation" in capsys.readouterr().err
    assert runs.signed(pod).spec.workload.host_data == {}


def test_the_command_refuses_pod_isolation_without_host_data(
    runs: Runs, capsys: pytest.CaptureFixture[str]
) -> None:
    run_id = runs.submit(**az_datasets(runs), workload={"isolation": "pod"})
    assert cli(runs, run_id) == 32
    err = capsys.readouterr().err
    assert err.startswith("jobruntime: manifest.host_data_missing: ")
    assert "Traceback" not in err


def test_the_command_warns_that_node_isolation_trusts_the_clusters_admins(
    runs: Runs, capsys: pytest.CaptureFixture[str]
) -> None:
    run_id = runs.submit(**az_datasets(runs), workload={"isolation": "node"})
    runs.approve(run_id)
    assert cli(runs, run_id) == 0
    captured = capsys.readouterr()
    assert "WARNING: node isolation" in captured.err
    assert "NOT from whoever controls this Kubernetes cluster" in captured.err
    assert captured.out.startswith("# Rendered by `jobruntime manifest")


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--control-plane-cidr", "cp.example.com"], "not host names"),
        (["--image-repo", f"{REPO}:1.0"], "no tag"),
        (["--host-data", "driver=00"], "--host-data is for --set-workload"),
        (["--toleration", "a=b"], "KEY=VALUE:EFFECT"),
    ],
)
def test_bad_options_are_one_line_config_errors(
    runs: Runs, capsys: pytest.CaptureFixture[str], flags: list[str], message: str
) -> None:
    run_id = runs.submit(**az_datasets(runs), workload={"isolation": "node"})
    assert cli(runs, run_id, *flags) == 2
    err = capsys.readouterr().err
    assert err.startswith("jobruntime: config.invalid: ") and message in err, err


def test_policy_input_is_the_pod_as_rendered_for_apply(runs: Runs) -> None:
    """What katapolicygen measures is exactly the template that goes into the manifest."""
    verified = pod_run(runs)
    full = templates(render(verified, options(cc_policies=POLICIES)))
    for role in POD_ROLES:
        (pod,) = render_policy_input(verified, options(cc_policies=POLICIES), role).documents
        assert pod["spec"] == full[role]["spec"]
        assert pod["metadata"]["labels"] == full[role]["metadata"]["labels"]


def test_policy_input_is_for_pod_isolation_only(runs: Runs) -> None:
    with pytest.raises(ManifestError, match="node isolation") as info:
        render_policy_input(node_run(runs), options(), "driver")
    assert info.value.code == "manifest.invalid"
