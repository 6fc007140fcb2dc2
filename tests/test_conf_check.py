"""``jobruntime conf check`` and the driver's check: spark-conf/'s guarantees, enforced.

Without Spark: every weakening is refused with its own code (exit 31), the shipped
``spark-conf/`` passes (with ``kubernetes.conf`` in Kubernetes mode too), the CLI prints
one line per refusal and no traceback, the properties reader follows Java's rules and the
redaction patterns catch this project's secrets. With a real ``spark-submit`` (slow): the
driver entry refuses to start under a weakened configuration, before any of Spark
starts, and the JVM agrees with the properties reader and compiles the redaction
patterns.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from jobruntime.cli.main import main as jobruntime_main
from jobruntime.dev.cluster import spark_bin, spark_env
from jobruntime.errors import all_error_types
from jobruntime.job import driver
from jobruntime.sparkconf import (
    SECURE_SPARK_CONF,
    AllOf,
    SparkConfError,
    SparkSettings,
    effective_conf,
    parse_properties,
)
from jobruntime.sparkconf.check import GcmCipher, UiKillOff, read_properties
from jobruntime.sparkconf.spark_home import default_conf_dir

SHIPPED = default_conf_dir()
KUBERNETES_CONF = SHIPPED / "kubernetes.conf"
K8S = "k8s://https://kubernetes.default.svc:443"
LOOPBACK_ENV = {"SPARK_LOCAL_IP": "127.0.0.1"}
UNSET = object()  # remove the key from the shipped configuration


def shipped(kubernetes: bool = False, **changes: Any) -> dict[str, str]:
    """The shipped effective configuration with ``changes`` (dots as ``__``) applied."""
    conf = effective_conf(
        SHIPPED,
        KUBERNETES_CONF if kubernetes else None,
        {"spark.master": K8S} if kubernetes else {"spark.master": "local[2]"},
    )
    for key, value in changes.items():
        name = key.replace("__", ".")
        if value is UNSET:
            conf.pop(name, None)
        else:
            conf[name] = str(value)
    return conf


def codes(conf: dict[str, str], env: dict[str, str] | None = LOOPBACK_ENV) -> list[str]:
    return [e.code for e in SECURE_SPARK_CONF.violations(SparkSettings(conf, env))]


# --- the shipped configuration -------------------------------------------------------


@pytest.mark.parametrize("env", [LOOPBACK_ENV, None], ids=["driver-env", "env-unknown"])
def test_the_shipped_spark_conf_passes(env: dict[str, str] | None) -> None:
    SECURE_SPARK_CONF.verify(SparkSettings(shipped(), env))
    assert codes(shipped(), env) == []


def test_the_shipped_spark_conf_with_kubernetes_conf_passes_in_kubernetes_mode() -> None:
    conf = shipped(kubernetes=True)
    assert conf["spark.kubernetes.driverEnv.SPARK_LOCAL_IP"] == "127.0.0.1"
    assert codes(conf, env=None) == []  # the UI's address comes from driverEnv
    assert codes(conf) == []


def test_kubernetes_mode_without_kubernetes_conf_is_refused() -> None:
    """spark-defaults.conf alone on Kubernetes: Spark would put the secret in pods' env."""
    conf = shipped(spark__master=K8S)
    assert codes(conf) == ["sparkconf.secret_files"]


def test_the_secret_files_are_not_in_spark_defaults() -> None:
    """With local[N] Spark refuses to start when they are set: they live in kubernetes.conf."""
    defaults = read_properties(SHIPPED / "spark-defaults.conf")
    assert not [k for k in defaults if k.startswith("spark.authenticate.secret")]
    k8s = read_properties(KUBERNETES_CONF)
    assert (
        k8s["spark.authenticate.secret.driver.file"]
        == k8s["spark.authenticate.secret.executor.file"]
    )


# --- every weakening, its own code ------------------------------------------------------

WEAKENINGS: list[tuple[str, dict[str, Any], bool, dict[str, str] | None, str]] = [
    # (id, changes, kubernetes, driver env, expected code)
    ("auth-off", {"spark__authenticate": "false"}, False, LOOPBACK_ENV, "sparkconf.auth_off"),
    ("auth-unset", {"spark__authenticate": UNSET}, False, LOOPBACK_ENV, "sparkconf.auth_off"),
    (
        "auth-not-a-boolean",
        {"spark__authenticate": "yes"},
        False,
        LOOPBACK_ENV,
        "sparkconf.auth_off",
    ),
    (
        "rpc-encryption-off",
        {"spark__network__crypto__enabled": "false"},
        False,
        LOOPBACK_ENV,
        "sparkconf.rpc_encryption_off",
    ),
    (
        "rpc-encryption-unset",
        {"spark__network__crypto__enabled": UNSET},
        False,
        LOOPBACK_ENV,
        "sparkconf.rpc_encryption_off",
    ),
    (
        "cipher-ctr",
        {"spark__network__crypto__cipher": "AES/CTR/NoPadding"},
        False,
        LOOPBACK_ENV,
        "sparkconf.cipher",
    ),
    (
        "cipher-unset",
        {"spark__network__crypto__cipher": UNSET},
        False,
        LOOPBACK_ENV,
        "sparkconf.cipher",
    ),
    (
        "auth-engine-1",
        {"spark__network__crypto__authEngineVersion": "1"},
        False,
        LOOPBACK_ENV,
        "sparkconf.auth_engine_version",
    ),
    (
        "auth-engine-unset",
        {"spark__network__crypto__authEngineVersion": UNSET},
        False,
        LOOPBACK_ENV,
        "sparkconf.auth_engine_version",
    ),
    (
        "sasl-fallback-on",
        {"spark__network__crypto__saslFallback": "true"},
        False,
        LOOPBACK_ENV,
        "sparkconf.sasl_fallback",
    ),
    (
        "sasl-fallback-unset",
        {"spark__network__crypto__saslFallback": UNSET},
        False,
        LOOPBACK_ENV,
        "sparkconf.sasl_fallback",
    ),
    (
        "io-encryption-off",
        {"spark__io__encryption__enabled": "false"},
        False,
        LOOPBACK_ENV,
        "sparkconf.io_encryption_off",
    ),
    (
        "io-key-128",
        {"spark__io__encryption__keySizeBits": "128"},
        False,
        LOOPBACK_ENV,
        "sparkconf.io_key_size",
    ),
    (
        "io-key-unset",
        {"spark__io__encryption__keySizeBits": UNSET},
        False,
        LOOPBACK_ENV,
        "sparkconf.io_key_size",
    ),
    (
        "event-log-on",
        {"spark__eventLog__enabled": "true"},
        False,
        LOOPBACK_ENV,
        "sparkconf.event_log",
    ),
    ("ui-on-all-interfaces", {}, False, {"SPARK_LOCAL_IP": "0.0.0.0"}, "sparkconf.ui_exposed"),
    ("ui-without-spark-local-ip", {}, False, {}, "sparkconf.ui_exposed"),
    (
        "ui-on-the-pod-address",
        {"spark__kubernetes__driverEnv__SPARK_LOCAL_IP": "10.1.2.3"},
        True,
        None,
        "sparkconf.ui_exposed",
    ),
    ("ui-kill-on", {"spark__ui__killEnabled": "true"}, False, LOOPBACK_ENV, "sparkconf.ui_kill"),
    ("ui-kill-unset", {"spark__ui__killEnabled": UNSET}, False, LOOPBACK_ENV, "sparkconf.ui_kill"),
    (
        "driver-on-all-interfaces",
        {"spark__driver__bindAddress": "0.0.0.0"},
        False,
        LOOPBACK_ENV,
        "sparkconf.bind_address",
    ),
    (
        "driver-bind-unset",
        {"spark__driver__bindAddress": UNSET},
        False,
        LOOPBACK_ENV,
        "sparkconf.bind_address",
    ),
    (
        "secret-inline-on-kubernetes",
        {"spark__authenticate__secret": "0123abcd"},
        True,
        LOOPBACK_ENV,
        "sparkconf.secret_inline",
    ),
    (
        "secret-in-executor-env",
        {"spark__executorEnv___SPARK_AUTH_SECRET": "0123abcd"},
        False,
        LOOPBACK_ENV,
        "sparkconf.secret_env",
    ),
    (
        "secret-from-a-kubernetes-secret-into-env",
        {"spark__kubernetes__executor__secretKeyRef___SPARK_AUTH_SECRET": "run-secret:key"},
        True,
        LOOPBACK_ENV,
        "sparkconf.secret_env",
    ),
    (
        "secret-in-driver-env-on-kubernetes",
        {"spark__kubernetes__driverEnv___SPARK_AUTH_SECRET": "0123abcd"},
        True,
        LOOPBACK_ENV,
        "sparkconf.secret_env",
    ),
    (
        "no-executor-secret-file-on-kubernetes",
        {"spark__authenticate__secret__executor__file": UNSET},
        True,
        LOOPBACK_ENV,
        "sparkconf.secret_files",
    ),
]


@pytest.mark.parametrize(
    ("changes", "kubernetes", "env", "code"),
    [pytest.param(*w[1:], id=w[0]) for w in WEAKENINGS],
)
def test_each_weakening_is_refused_with_its_own_code(
    changes: dict[str, Any], kubernetes: bool, env: dict[str, str] | None, code: str
) -> None:
    conf = shipped(kubernetes, **changes)
    assert codes(conf, env) == [code]
    with pytest.raises(SparkConfError) as refused:
        SECURE_SPARK_CONF.verify(SparkSettings(conf, env))
    assert refused.value.code == code
    assert refused.value.exit_code == 31
    # Never the value of a secret in the message.
    assert "0123abcd" not in refused.value.message
    assert "\n" not in refused.value.one_line()


def test_every_check_has_its_own_code_and_the_area_one_exit_code() -> None:
    ours = [c for c in all_error_types() if issubclass(c, SparkConfError)]
    assert len({c.code for c in ours}) == len(ours)
    assert {c.exit_code for c in ours} == {31}
    assert all(c.code.startswith("sparkconf.") for c in ours)
    taken = {c.exit_code for c in all_error_types() if not issubclass(c, SparkConfError)}
    assert 31 not in taken
    tested = {w[-1] for w in WEAKENINGS}
    assert tested == {c.code for c in ours} - {"sparkconf.insecure"}


def test_all_weakenings_are_reported_in_the_checks_order() -> None:
    conf = shipped(
        spark__authenticate="false",
        spark__eventLog__enabled="true",
        spark__network__crypto__cipher="AES/CTR/NoPadding",
    )
    assert codes(conf) == ["sparkconf.auth_off", "sparkconf.cipher", "sparkconf.event_log"]
    with pytest.raises(SparkConfError) as first:
        SECURE_SPARK_CONF.verify(SparkSettings(conf, LOOPBACK_ENV))
    assert first.value.code == "sparkconf.auth_off"


def test_values_are_read_as_spark_reads_them() -> None:
    conf = shipped(
        spark__network__crypto__cipher=" aes/gcm/nopadding ",  # equalsIgnoreCase, trimmed
        spark__authenticate="TRUE",
        spark__driver__bindAddress="localhost",
    )
    assert codes(conf) == []
    assert codes(shipped(spark__driver__bindAddress="::1"), {"SPARK_LOCAL_IP": "127.0.0.2"}) == []


def test_a_ui_that_is_off_needs_no_loopback_or_kill_setting() -> None:
    conf = shipped(spark__ui__enabled="false", spark__ui__killEnabled=UNSET)
    assert codes(conf, env={}) == []


def test_kubernetes_mode_leaves_the_driver_rpc_on_the_pod_address() -> None:
    """Executors in other pods must reach the driver; its RPC is authenticated and GCM."""
    conf = shipped(kubernetes=True, spark__driver__bindAddress="10.1.2.3")
    assert codes(conf) == []


def test_one_secret_file_setting_serves_driver_and_executors_on_kubernetes() -> None:
    conf = shipped(
        kubernetes=True,
        spark__authenticate__secret__driver__file=UNSET,
        spark__authenticate__secret__executor__file=UNSET,
        spark__authenticate__secret__file="/run/jobruntime/spark-auth-secret",
    )
    assert codes(conf) == []


def test_an_inline_secret_is_fine_on_the_standalone_cluster() -> None:
    """Spark needs it there; the cluster hands it over in a 0600 properties file."""
    conf = shipped(spark__master="spark://127.0.0.1:7077", spark__authenticate__secret="abcd")
    assert codes(conf) == []


def test_policies_compose() -> None:
    settings = SparkSettings(shipped(spark__ui__killEnabled="true"), LOOPBACK_ENV)
    GcmCipher().verify(settings)
    with pytest.raises(SparkConfError, match="killEnabled"):
        AllOf(GcmCipher(), AllOf(UiKillOff())).verify(settings)
    assert [e.code for e in AllOf(GcmCipher(), AllOf(UiKillOff())).violations(settings)] == [
        "sparkconf.ui_kill"
    ]
    with pytest.raises(SparkConfError) as empty:
        AllOf().verify(settings)
    assert empty.value.code == "sparkconf.insecure"


# --- reading properties files ----------------------------------------------------------

TRICKY = (
    "# comment\n"
    "! another comment\n"
    "   \n"
    "a.plain   value with  spaces  \n"
    "a.equals=x=y\n"
    "a.colon : v\n"
    "a.escaped\\ key = \\tv\\u0041\\\\s\n"
    "a.continued = one, \\\n"
    "     two, \\\n"
    "   three\n"
    "a.empty\n"
    "a.regex (?i)x\\\\.y|a\\\\s+b\n"
    "a.hash = #not-a-comment\r\n"
    "a.cr = carriage\r"
    "a.last = end\\"
)
TRICKY_EXPECTED = {
    "a.plain": "value with  spaces",
    "a.equals": "x=y",
    "a.colon": "v",
    "a.escaped key": "vA\\s",  # \t at the start is trimmed, as Spark trims
    "a.continued": "one, two, three",
    "a.empty": "",
    "a.regex": "(?i)x\\.y|a\\s+b",
    "a.hash": "#not-a-comment",
    "a.cr": "carriage",
    "a.last": "end",
}


def test_properties_are_parsed_as_java_does() -> None:
    assert parse_properties(TRICKY) == TRICKY_EXPECTED


def test_effective_conf_layers_files_and_overrides(tmp_path: Path) -> None:
    (tmp_path / "spark-defaults.conf").write_text("spark.a 1\nspark.b 1\nspark.c 1\n")
    extra = tmp_path / "extra.conf"
    extra.write_text("spark.b 2\nspark.c 2\n")
    assert effective_conf(tmp_path, extra, {"spark.c": "3"}) == {
        "spark.a": "1",
        "spark.b": "2",
        "spark.c": "3",
    }


# --- redaction ---------------------------------------------------------------------------

SECRET_SETTINGS = [
    ("spark.executorEnv.JOB_TOKEN", "Zm9vYmFyYmF6cXV4"),
    ("spark.executorEnv.JOBRUNTIME_AZURE_CONNECTION_STRING", "UseDevelopmentStorage=true"),
    ("spark.executorEnv.JOB_SERVICEBUS_CONNECTION", "Endpoint=sb://x/"),
    ("spark.executorEnv.SESSION_ID", "abc"),
    ("spark.hadoop.fs.azure.account.key.acct.blob.core.windows.net", "c2VjcmV0"),
    ("spark.authenticate.secret", "0123abcd"),
    ("spark.custom.a", "DefaultEndpointsProtocol=https;AccountName=a;AccountKey=c2VjcmV0==;"),
    ("spark.custom.b", "Endpoint=sb://n/;SharedAccessKeyName=send;SharedAccessKey=c2VjcmV0="),
    ("spark.custom.c", "eyJhbGciOiJFQ0RILUVTIiwiZW5jIjoiQTI1NkdDTSJ9.x.y.z.w"),
    ("spark.custom.d", "https://acct.blob.core.windows.net/c?sv=2024-11-04&sig=c2VjcmV0"),
]
PLAIN_SETTINGS = [
    ("spark.sql.shuffle.partitions", "4"),
    ("spark.app.name", "jobruntime-overlap-run-1"),
    ("spark.master", "local[2]"),
    ("spark.sql.session.timeZone", "UTC"),
]
SECRET_STRINGS = [
    ("token=Zm9vYmFy", "Zm9vYmFy"),
    ("Authorization: Bearer Zm9vYmFy.YmF6", "Zm9vYmFy"),
    ("DefaultEndpointsProtocol=https;AccountKey=c2VjcmV0==;EndpointSuffix=x", "c2VjcmV0"),
    ("SharedAccessKey=c2VjcmV0=", "c2VjcmV0"),
    ("path=az://a/b?sv=1&sig=c2VjcmV0", "c2VjcmV0"),
    ("jwe eyJhbGciOiJkaXIifQ..aXY.Y2lwaGVy.dGFn end", "Y2lwaGVy"),
    ("JOBRUNTIME_AZURE_CONNECTION_STRING=UseDevelopmentStorage", "UseDevelopmentStorage"),
    ("session_token: c2VjcmV0", "c2VjcmV0"),
]


def _redaction_patterns() -> dict[str, str]:
    defaults = read_properties(SHIPPED / "spark-defaults.conf")
    return {
        k: defaults[k]
        for k in (
            "spark.redaction.regex",
            "spark.redaction.string.regex",
            "spark.sql.redaction.string.regex",
        )
    }


def test_the_redaction_patterns_catch_this_projects_secrets() -> None:
    """Python's ``re`` agrees with Java on these patterns; the slow test asks the JVM."""
    patterns = _redaction_patterns()
    settings = re.compile(patterns["spark.redaction.regex"])
    for key, value in SECRET_SETTINGS:
        assert settings.search(key) or settings.search(value), key
    for key, value in PLAIN_SETTINGS:
        assert not settings.search(key) and not settings.search(value), key
    for name in ("spark.redaction.string.regex", "spark.sql.redaction.string.regex"):
        strings = re.compile(patterns[name])
        for text, secret in SECRET_STRINGS:
            assert secret not in strings.sub("*****", text), (name, text)
        assert strings.sub("*****", "SELECT id FROM t WHERE k > 10") == (
            "SELECT id FROM t WHERE k > 10"
        )


# --- the command ----------------------------------------------------------------------


def _conf_dir(tmp_path: Path, extra: str = "") -> Path:
    conf = tmp_path / "conf"
    shutil.copytree(SHIPPED, conf)
    with (conf / "spark-defaults.conf").open("a") as f:
        f.write(extra)
    return conf


def test_cli_passes_the_shipped_conf(capsys: pytest.CaptureFixture[str]) -> None:
    assert jobruntime_main(["conf", "check", "--spark-local-ip", "127.0.0.1"]) == 0
    assert "checks pass" in capsys.readouterr().out
    assert (
        jobruntime_main(
            ["conf", "check", "--properties-file", str(KUBERNETES_CONF), "--master", K8S]
        )
        == 0
    )


def test_cli_prints_one_line_per_refusal_and_exits_with_the_first_code(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    conf = _conf_dir(
        tmp_path,
        "spark.network.crypto.cipher AES/CTR/NoPadding\nspark.eventLog.enabled true\n",
    )
    code = jobruntime_main(
        ["conf", "check", "--conf-dir", str(conf), "--conf", "spark.ui.killEnabled=true"]
    )
    assert code == 31
    out, err = capsys.readouterr()
    assert out == ""
    assert err.splitlines() == [
        "jobruntime: sparkconf.cipher: spark.network.crypto.cipher is 'AES/CTR/NoPadding', "
        "must be AES/GCM/NoPadding: AES/CTR is not authenticated (CVE-2025-55039)",
        "jobruntime: sparkconf.event_log: spark.eventLog.enabled is 'true', must be false: "
        "event logs carry plans and failed tasks' messages off the node",
        "jobruntime: sparkconf.ui_kill: the UI is on and spark.ui.killEnabled is 'true', "
        "must be false",
    ]


def test_cli_in_kubernetes_mode_refuses_secrets_in_conf_or_env(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = jobruntime_main(
        [
            "conf",
            "check",
            "--master",
            K8S,
            "--conf",
            "spark.authenticate.secret=0123abcd",
            "--conf",
            "spark.executorEnv._SPARK_AUTH_SECRET=0123abcd",
        ]
    )
    assert code == 31
    err = capsys.readouterr().err
    assert [ln.split(": ")[1] for ln in err.splitlines()] == [
        "sparkconf.secret_inline",
        "sparkconf.secret_env",
        "sparkconf.secret_files",
    ]
    assert "0123abcd" not in err


def test_cli_as_a_process_fails_in_one_line_per_refusal_without_a_traceback(
    tmp_path: Path,
) -> None:
    conf = _conf_dir(tmp_path, "spark.authenticate false\n")
    env = {k: v for k, v in os.environ.items() if k != "JOBRUNTIME_DEBUG"}
    done = subprocess.run(
        [sys.executable, "-m", "jobruntime", "conf", "check", "--conf-dir", str(conf)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=tmp_path,
        check=False,
    )
    assert done.returncode == 31
    assert done.stderr.splitlines() == [
        "jobruntime: sparkconf.auth_off: spark.authenticate is 'false', must be true: "
        "without it anyone who reaches a port talks to Spark"
    ]
    missing = subprocess.run(
        [sys.executable, "-m", "jobruntime", "conf", "check", "--conf-dir", str(tmp_path / "x")],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=tmp_path,
        check=False,
    )
    assert missing.returncode == 2
    assert missing.stderr.startswith("jobruntime: config.invalid: ")
    assert "Traceback" not in done.stderr + missing.stderr


# --- real Spark ----------------------------------------------------------------------------


def _submit(
    tmp_path: Path,
    script: Path,
    *conf: str,
    env_changes: dict[str, str | None] | None = None,
    args: tuple[str, ...] = (),
) -> subprocess.CompletedProcess[str]:
    """``spark-submit`` on local[2] with the shipped spark-conf/, as ``jobruntime submit``."""
    env = spark_env(SHIPPED)
    for name in ("JOB_BUNDLE_DIR", "JOBRUNTIME_DEBUG"):
        env.pop(name, None)
    (tmp_path / "py-tmp").mkdir(exist_ok=True)
    env["TMPDIR"] = str(tmp_path / "py-tmp")
    for name, value in (env_changes or {}).items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    options = [f"--conf={c}" for c in conf]
    cmd = [
        str(spark_bin("spark-submit")),
        "--master",
        "local[2]",
        "--properties-file",
        str(SHIPPED / "spark-defaults.conf"),
        f"--conf=spark.local.dir={tmp_path / 'local'}",
        f"--conf=spark.driver.extraJavaOptions=-Djava.io.tmpdir={tmp_path / 'py-tmp'}",
        *options,
        str(script),
        *args,
    ]
    return subprocess.run(
        cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False
    )


def _driver_lines(done: subprocess.CompletedProcess[str]) -> list[str]:
    # spark-submit merges the Python driver's stderr into its stdout.
    return [ln for ln in (done.stdout + done.stderr).splitlines() if "jobruntime-driver" in ln]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("conf", "env_changes", "code"),
    [
        pytest.param(
            ["spark.network.crypto.cipher=AES/CTR/NoPadding"], {}, "sparkconf.cipher", id="ctr"
        ),
        pytest.param(
            ["spark.io.encryption.enabled=false"], {}, "sparkconf.io_encryption_off", id="io"
        ),
        pytest.param([], {"SPARK_LOCAL_IP": None}, "sparkconf.ui_exposed", id="no-local-ip"),
    ],
)
def test_the_driver_entry_refuses_to_start_under_a_weakened_configuration(
    tmp_path: Path, conf: list[str], env_changes: dict[str, str | None], code: str
) -> None:
    """The real driver entry under spark-submit: it refuses before reading its bundle,
    so it needs none, and before any of Spark starts (no SparkContext, no UI)."""
    done = _submit(tmp_path, Path(driver.__file__), *conf, env_changes=env_changes)
    assert done.returncode == 31, done.stdout[-2000:] + done.stderr[-2000:]
    lines = _driver_lines(done)
    assert len(lines) == 1 and lines[0].startswith(f"jobruntime-driver: {code}: "), lines
    assert "Traceback" not in done.stdout + done.stderr
    assert "SparkContext" not in done.stdout + done.stderr


@pytest.mark.slow
def test_the_driver_entry_accepts_the_shipped_configuration(tmp_path: Path) -> None:
    """Past the check, it stops at the next step: no verified bundle in this test."""
    done = _submit(tmp_path, Path(driver.__file__))
    assert done.returncode == 2, done.stdout[-2000:] + done.stderr[-2000:]
    assert _driver_lines(done) == ["jobruntime-driver: config.invalid: $JOB_BUNDLE_DIR is not set"]


JVM_PROBE = textwrap.dedent(
    """
    import json, sys
    from pyspark.sql import SparkSession
    from jobruntime.sparkconf.check import refuse_insecure_spark_conf

    refuse_insecure_spark_conf()
    spark = SparkSession.builder.appName("conf-probe").getOrCreate()
    jvm = spark.sparkContext._jvm
    conf = dict(spark.sparkContext.getConf().getAll())
    probe = json.loads(open(sys.argv[1]).read())

    def java_properties(path):
        props = jvm.java.util.Properties()
        stream = jvm.java.io.InputStreamReader(jvm.java.io.FileInputStream(path), "UTF-8")
        props.load(stream)
        stream.close()
        return {k: props.getProperty(k).strip() for k in props.stringPropertyNames()}

    Pattern = jvm.java.util.regex.Pattern
    matches = {}
    for name, texts in probe["patterns"].items():
        p = Pattern.compile(conf[name])
        matches[name] = [
            [p.matcher(t).find(), p.matcher(t).replaceAll("*****")] for t in texts
        ]
    out = {
        "files": {f: java_properties(f) for f in probe["files"]},
        "matches": matches,
        "cipher": conf.get("spark.network.crypto.cipher"),
        "engine": conf.get("spark.network.crypto.authEngineVersion"),
    }
    print("PROBE " + json.dumps(out))
    spark.stop()
    """
)


@pytest.mark.slow
def test_the_jvm_reads_the_conf_files_and_redaction_patterns_as_we_do(tmp_path: Path) -> None:
    """The check passes in a real driver, the JVM's ``Properties`` reads every file (and
    the tricky one) as ``parse_properties`` does, and Java compiles the redaction
    patterns and matches the same secrets."""
    tricky = tmp_path / "tricky.properties"
    tricky.write_bytes(TRICKY.encode())
    files = [SHIPPED / "spark-defaults.conf", KUBERNETES_CONF, tricky]
    settings_texts = [t for kv in SECRET_SETTINGS + PLAIN_SETTINGS for t in kv]
    strings = [t for t, _ in SECRET_STRINGS]
    probe = tmp_path / "probe.json"
    probe.write_text(
        json.dumps(
            {
                "files": [str(f) for f in files],
                "patterns": {
                    "spark.redaction.regex": settings_texts,
                    "spark.redaction.string.regex": strings,
                    "spark.sql.redaction.string.regex": strings,
                },
            }
        )
    )
    script = tmp_path / "probe.py"
    script.write_text(JVM_PROBE)
    done = _submit(tmp_path, script, args=(str(probe),))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    line = next(ln for ln in done.stdout.splitlines() if ln.startswith("PROBE "))
    out = json.loads(line.removeprefix("PROBE "))
    assert out["cipher"] == "AES/GCM/NoPadding" and out["engine"] == "2"
    for f in files:
        assert out["files"][str(f)] == parse_properties(f.read_text()), f
    python = re.compile(_redaction_patterns()["spark.redaction.regex"])
    for text, (found, _) in zip(
        settings_texts, out["matches"]["spark.redaction.regex"], strict=True
    ):
        assert found == bool(python.search(text)), text
    for name in ("spark.redaction.string.regex", "spark.sql.redaction.string.regex"):
        for (_, secret), (found, redacted) in zip(
            SECRET_STRINGS, out["matches"][name], strict=True
        ):
            assert found and secret not in redacted, (name, redacted)
