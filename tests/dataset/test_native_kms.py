"""The JVM KmsClient (java/jobruntime-kms): the jar builds with javac against pyspark's
jars, and a real key agent wraps and unwraps KEKs for it over its Unix socket, in the
documented format, refusing with its own codes what the spec does not grant."""

from __future__ import annotations

import os
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from jobruntime.dataset.keyops import LocalMasterKey
from jobruntime.native import jvm
from tests.dataset.conftest import Agent, AgentFactory, key_id
from tests.javajar import build

KMS_CLIENT = "org.apache.parquet.crypto.keytools.KmsClient"


@pytest.fixture
def native(spark: Any) -> Any:
    """The shared session's JVM, which must have the jar (tests/conftest.py builds it)."""
    assert jvm.jar_loaded(spark), "build/jobruntime-kms.jar is not on the session's class path"
    return spark.sparkContext._jvm


def client(native: Any, socket: Path | str, dataset: str, with_key_id: bool = True) -> Any:
    conf = native.org.apache.hadoop.conf.Configuration(False)
    conf.set("jobruntime.dataset", dataset)
    conf.set("jobruntime.keyagent.socket", str(socket))
    if with_key_id:
        conf.set("jobruntime.key.id", key_id(dataset))
    kms = native.jobruntime.kms.KeyAgentKmsClient()
    kms.initialize(conf, "jobruntime-key-agent", "DEFAULT", "DEFAULT")
    return kms


def refusal(call: Callable[[], Any]) -> tuple[str, str, str]:
    """(Java class, code, message) of the JVM exception ``call`` raises."""
    with pytest.raises(Exception) as info:  # noqa: PT011 - py4j's error, checked below
        call()
    java = info.value.java_exception  # type: ignore[attr-defined]
    return java.getClass().getName(), str(java.code()), str(java.getMessage())


def test_the_jar_builds_with_javac_against_pysparks_jars(tmp_path: Path) -> None:
    jar = build(tmp_path / "out" / "jobruntime-kms.jar")
    names = set(zipfile.ZipFile(jar).namelist())
    for cls in ("KeyAgentKmsClient", "ConfidentialCryptoFactory", "ConfidentialCommitProtocol"):
        assert f"jobruntime/kms/{cls}.class" in names
    assert all(n.startswith("jobruntime/") for n in names), names  # only our classes
    assert not list((tmp_path / "out").glob(".jar-build*"))  # no work files left behind


def test_it_is_a_parquet_kms_client(native: Any) -> None:
    interface = native.java.lang.Class.forName(KMS_CLIENT)
    ours = native.java.lang.Class.forName("jobruntime.kms.KeyAgentKmsClient")
    assert interface.isAssignableFrom(ours)


def test_the_agent_wraps_and_unwraps_for_the_jvm_in_the_documented_format(
    native: Any, agent: Agent
) -> None:
    kms = client(native, agent.socket, "sales")
    master = LocalMasterKey(key_id("sales"), agent.keys["sales"])
    for size in (16, 24, 32):
        kek = os.urandom(size)
        wrapped = str(kms.wrapKey(bytearray(kek), key_id("sales")))
        assert master.unwrap(wrapped) == kek  # base64(nonce || AES-256-GCM(master, aad=key id))
        assert bytes(kms.unwrapKey(wrapped, key_id("sales"))) == kek
        assert bytes(kms.unwrapKey(master.wrap(kek), key_id("sales"))) == kek  # Python's, too


def test_refusals_carry_the_agents_code(native: Any, agents: AgentFactory) -> None:
    agent = agents(allowed=["sales", "other"], writable=["sales"])
    kek = bytearray(os.urandom(16))
    wrapped = str(client(native, agent.socket, "sales").wrapKey(kek, key_id("sales")))
    other = client(native, agent.socket, "other")
    denied = "jobruntime.kms.Refusal$Denied"  # a KeyAccessDeniedException, as Parquet expects
    assert refusal(lambda: other.wrapKey(kek, key_id("other")))[:2] == (
        denied,
        "keyagent.not_writable",
    )
    cls, code, message = refusal(lambda: other.unwrapKey(wrapped, key_id("other")))
    assert (cls, code) == ("jobruntime.kms.Refusal", "keyagent.unwrap_failed")
    assert message.startswith("keyagent.unwrap_failed: ") and "other" in message
    unnamed = client(native, agent.socket, "nested", with_key_id=False)
    assert refusal(lambda: unnamed.unwrapKey(wrapped, key_id("nested")))[:2] == (
        denied,
        "keyagent.not_in_spec",
    )
    # The agent's own key-id check, and the client's before it asks.
    unpinned = client(native, agent.socket, "sales", with_key_id=False)
    assert refusal(lambda: unpinned.unwrapKey(wrapped, "org-b/sales"))[1] == (
        "keyagent.key_mismatch"
    )
    pinned = client(native, agent.socket, "sales")
    assert refusal(lambda: pinned.unwrapKey(wrapped, "org-b/sales"))[1] == "keyagent.key_mismatch"
    nobody = client(native, agent.socket.with_name("gone.sock"), "sales")
    assert refusal(lambda: nobody.wrapKey(kek, key_id("sales")))[1] == "keyagent.unavailable"


def test_the_refusal_comes_back_as_the_runtimes_typed_error(native: Any, agent: Agent) -> None:
    from jobruntime.keyagent.errors import UnwrapFailedError
    from jobruntime.native.errors import typed

    kms = client(native, agent.socket, "sales")
    with pytest.raises(Exception) as info:  # noqa: PT011 - py4j's error, converted below
        kms.unwrapKey("A" * 80, key_id("sales"))  # 60 bytes that do not authenticate
    error = typed(info.value)
    assert isinstance(error, UnwrapFailedError)
    assert error.exit_code == 22


def test_every_code_the_jar_raises_is_a_documented_error_code() -> None:
    """The JVM's refusals come back as the class that owns their code (docs/errors.md)."""
    import re

    from jobruntime.errors import all_error_types
    from scripts.gen_docs import import_everything
    from tests.javajar import SOURCES

    import_everything()
    known = {cls.code for cls in all_error_types()}
    used = set()
    for source in (SOURCES / "src").rglob("*.java"):
        text = source.read_text()
        used |= set(re.findall(r'(?:Refusal|Refusal\.of)\(\s*"([a-z_]+\.[a-z_]+)"', text))
        used |= set(re.findall(r'"(keyagent\.[a-z_]+)"', text))
    assert {"dataset.file_corrupt", "keyagent.unavailable", "config.invalid"} <= used
    assert used - known == set(), "codes the jar raises that no error class owns"
