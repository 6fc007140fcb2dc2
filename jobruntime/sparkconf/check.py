"""Is an effective Spark configuration as safe as ``spark-conf/`` makes it?

Small composable policies in the style of ``sigstore/verify/policy.py`` and
``jobruntime/keyrelease/policy.py``: each checks one setting, with Spark's own default
when it is unset, and raises its own typed error (``jobruntime.sparkconf.errors``);
``AllOf`` combines them and ``SECURE_SPARK_CONF`` is the one the runtime uses.
``verify`` raises the first refusal; ``violations`` lists every one (the CLI prints
them all, one line each, and exits with the first one's code).

What the checks decide on is a :class:`SparkSettings`: the key/values Spark would run
with (``spark-defaults.conf`` and the files and ``--conf`` on top of it, or the live
``SparkConf`` in the driver) and, when known, the driver's environment, because Spark
binds the UI to ``$SPARK_LOCAL_IP`` and not to any setting. Values are compared the way
Spark reads them: trimmed, booleans and the cipher name without regard to case. A value
Spark would not accept (``spark.authenticate=yes``) is not the safe value: refused.

The Spark facts behind each check (Spark 4.3, ``TransportConf``, ``AuthEngine``,
``SecurityManager``, ``WebUI``, ``BasicExecutorFeatureStep``): the RPC cipher defaults
to AES/CTR/NoPadding, which is not authenticated (CVE-2025-55039); auth engine version 1
(the default) skips the final HKDF of the key exchange; SASL fallback defaults to on;
the UI binds ``$SPARK_LOCAL_IP`` or 0.0.0.0; on Kubernetes, unless
``spark.authenticate.secret.executor.file`` is set, Spark generates the secret and puts
it in every executor pod's environment (``_SPARK_AUTH_SECRET``).
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from jobruntime.errors import ConfigError
from jobruntime.sparkconf.errors import (
    AuthDisabledError,
    AuthEngineVersionError,
    BindAddressError,
    EnvironmentSecretError,
    EventLogEnabledError,
    InlineSecretError,
    IoEncryptionDisabledError,
    IoKeySizeError,
    RpcEncryptionDisabledError,
    SaslFallbackError,
    SecretFilesError,
    SparkConfError,
    UiExposedError,
    UiKillEnabledError,
    WeakCipherError,
)

DEFAULTS_FILE = "spark-defaults.conf"
KUBERNETES_PREFIX = "k8s://"
GCM = "AES/GCM/NoPadding"
AUTH_ENGINE_VERSION = "2"
MIN_IO_KEY_BITS = 256
LOCAL_IP_ENV = "SPARK_LOCAL_IP"
# Names of settings and variables, not secrets (S105).
AUTH_SECRET_ENV = "_SPARK_AUTH_SECRET"  # noqa: S105 - how Spark hands executors the secret
INLINE_SECRET = "spark.authenticate.secret"  # noqa: S105
SECRET_FILE = "spark.authenticate.secret.file"  # noqa: S105
DRIVER_SECRET_FILE = "spark.authenticate.secret.driver.file"  # noqa: S105
EXECUTOR_SECRET_FILE = "spark.authenticate.secret.executor.file"  # noqa: S105
# Settings that put an environment variable into the driver or executor processes.
ENV_PREFIXES = (
    "spark.executorEnv.",
    "spark.kubernetes.driverEnv.",
    "spark.kubernetes.driver.secretKeyRef.",
    "spark.kubernetes.executor.secretKeyRef.",
    "spark.yarn.appMasterEnv.",
)


@dataclass(frozen=True)
class SparkSettings:
    """The effective configuration, and the driver's environment when it is known.

    ``env`` is None when the environment is unknown (``jobruntime conf check`` reads
    files, not pods): the checks that need it then decide from the configuration alone.
    """

    conf: Mapping[str, str]
    env: Mapping[str, str] | None = None

    def get(self, key: str) -> str | None:
        """The value as Spark reads it (trimmed), or None when unset."""
        value = self.conf.get(key)
        return None if value is None else _trim(value)

    def get_or(self, key: str, spark_default: str) -> tuple[str, str]:
        """The effective value, and how to name it in a refusal."""
        value = self.get(key)
        if value is None:
            return spark_default, f"unset (Spark's default {spark_default})"
        return value, repr(value[:80])

    @property
    def master(self) -> str:
        return self.get("spark.master") or ""

    @property
    def kubernetes(self) -> bool:
        """Spark's own test (``SparkMasterRegex.KUBERNETES_REGEX``): ``k8s://`` and more."""
        return self.master.startswith(KUBERNETES_PREFIX) and len(self.master) > len(
            KUBERNETES_PREFIX
        )

    def driver_env(self, name: str) -> tuple[bool, str | None]:
        """``(known, value)`` of a variable in the driver's environment.

        The real environment when given; otherwise, on Kubernetes, what
        ``spark.kubernetes.driverEnv.<name>`` puts into the driver's pod.
        """
        if self.env is not None:
            return True, self.env.get(name)
        if self.kubernetes:
            value = self.get(f"spark.kubernetes.driverEnv.{name}")
            if value is not None:
                return True, value
        return False, None


def _trim(value: str) -> str:
    """Java's ``String.trim``, which Spark applies to every value of a properties file."""
    return value.strip("".join(chr(c) for c in range(0x21)))


def is_loopback(address: str) -> bool:
    host = address.strip().strip("[]")
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class ConfPolicy(Protocol):
    def verify(self, settings: SparkSettings) -> None:
        """Return if the settings are acceptable, raise a ``SparkConfError`` otherwise."""


# --- the checks ------------------------------------------------------------------------


@dataclass(frozen=True)
class Flag:
    """A boolean setting must be ``expected``; unset means Spark's ``default``."""

    key: str
    expected: bool
    default: bool
    error: type[SparkConfError]
    why: str

    def verify(self, settings: SparkSettings) -> None:
        want = str(self.expected).lower()
        value, shown = settings.get_or(self.key, str(self.default).lower())
        if value.lower() != want:
            raise self.error(f"{self.key} is {shown}, must be {want}: {self.why}")


class GcmCipher:
    """RPC encryption must use AES/GCM (Spark compares the name without regard to case)."""

    def verify(self, settings: SparkSettings) -> None:
        key = "spark.network.crypto.cipher"
        value, shown = settings.get_or(key, "AES/CTR/NoPadding")
        if value.lower() != GCM.lower():
            raise WeakCipherError(
                f"{key} is {shown}, must be {GCM}: AES/CTR is not authenticated (CVE-2025-55039)"
            )


class AuthEngineV2:
    """The key exchange must be version 2 (version 1, Spark's default, skips the final HKDF)."""

    def verify(self, settings: SparkSettings) -> None:
        key = "spark.network.crypto.authEngineVersion"
        value, shown = settings.get_or(key, "1")
        if value != AUTH_ENGINE_VERSION:
            raise AuthEngineVersionError(
                f"{key} is {shown}, must be {AUTH_ENGINE_VERSION}: "
                "version 1 skips the key exchange's final HKDF"
            )


class IoKeySize:
    """Local-disk encryption keys of at least 256 bits (Spark's default is 128)."""

    def verify(self, settings: SparkSettings) -> None:
        key = "spark.io.encryption.keySizeBits"
        value, shown = settings.get_or(key, "128")
        if not value.isdigit() or int(value) < MIN_IO_KEY_BITS:
            raise IoKeySizeError(f"{key} is {shown}, must be {MIN_IO_KEY_BITS}")


def _ui_enabled(settings: SparkSettings) -> bool:
    value, _ = settings.get_or("spark.ui.enabled", "true")
    return value.lower() != "false"


class UiOnLoopback:
    """A UI that is on listens on loopback only: Spark binds it to ``$SPARK_LOCAL_IP``.

    Decided only when the driver's environment is known (the driver knows its own; on
    Kubernetes ``spark.kubernetes.driverEnv.SPARK_LOCAL_IP`` names it).
    """

    def verify(self, settings: SparkSettings) -> None:
        if not _ui_enabled(settings):
            return
        known, ip = settings.driver_env(LOCAL_IP_ENV)
        if not known:
            return
        if not ip:
            raise UiExposedError(
                f"the UI is on and ${LOCAL_IP_ENV} is unset: Spark binds the UI to 0.0.0.0"
            )
        if not is_loopback(ip):
            raise UiExposedError(
                f"the UI is on and ${LOCAL_IP_ENV} is {ip[:80]!r}, not a loopback address"
            )


class UiKillOff:
    """Nothing can be killed through a UI that is on."""

    def verify(self, settings: SparkSettings) -> None:
        if not _ui_enabled(settings):
            return
        value, shown = settings.get_or("spark.ui.killEnabled", "true")
        if value.lower() != "false":
            raise UiKillEnabledError(
                f"the UI is on and spark.ui.killEnabled is {shown}, must be false"
            )


class DriverOnLoopback:
    """Outside Kubernetes the driver's RPC listens on loopback only.

    On Kubernetes executors in other pods must reach the driver: Spark's entrypoint
    sets the pod's address, and the RPC is authenticated and GCM-encrypted.
    """

    def verify(self, settings: SparkSettings) -> None:
        if settings.kubernetes:
            return
        key = "spark.driver.bindAddress"
        value = settings.get(key) or settings.get("spark.driver.host")
        if not value:
            raise BindAddressError(f"{key} is unset: the driver would bind the machine's address")
        if not is_loopback(value):
            raise BindAddressError(f"{key} is {value[:80]!r}, not a loopback address")


class NoInlineSecret:
    """On Kubernetes the secret never sits in the configuration (it would be in the
    driver's command line or ConfigMap)."""

    def verify(self, settings: SparkSettings) -> None:
        if settings.kubernetes and INLINE_SECRET in settings.conf:
            raise InlineSecretError(
                f"{INLINE_SECRET} is set on Kubernetes: use {DRIVER_SECRET_FILE} and "
                f"{EXECUTOR_SECRET_FILE} (spark-conf/kubernetes.conf)"
            )


class NoSecretInEnvironment:
    """The secret is never handed over as an environment variable, in any mode."""

    def verify(self, settings: SparkSettings) -> None:
        found = sorted(
            key
            for key in settings.conf
            for prefix in ENV_PREFIXES
            if key.startswith(prefix) and key[len(prefix) :] == AUTH_SECRET_ENV
        )
        if found:
            raise EnvironmentSecretError(
                f"{', '.join(found)} hands the auth secret over in an environment variable"
            )


class SecretFromFiles:
    """On Kubernetes both the driver and the executors read the secret from a file.

    Without the executor file Spark generates the secret and writes it into every
    executor pod's spec as ``_SPARK_AUTH_SECRET``.
    """

    def verify(self, settings: SparkSettings) -> None:
        if not settings.kubernetes:
            return
        shared = settings.get(SECRET_FILE)
        missing = [
            key
            for key in (DRIVER_SECRET_FILE, EXECUTOR_SECRET_FILE)
            if not (settings.get(key) or shared)
        ]
        if missing:
            raise SecretFilesError(
                f"{' and '.join(missing)} unset on Kubernetes: Spark would put the secret "
                f"in executor pods' environment ({AUTH_SECRET_ENV}); see spark-conf/kubernetes.conf"
            )


@dataclass(frozen=True, init=False)
class AllOf:
    """Every check must hold; ``verify`` raises the first refusal. An empty one refuses."""

    checks: tuple[ConfPolicy, ...]

    def __init__(self, *checks: ConfPolicy) -> None:
        object.__setattr__(self, "checks", checks)

    def verify(self, settings: SparkSettings) -> None:
        if not self.checks:
            raise SparkConfError("a Spark configuration policy with no checks accepts nothing")
        for check in self.checks:
            check.verify(settings)

    def violations(self, settings: SparkSettings) -> list[SparkConfError]:
        """Every refusal, in the checks' order (nested ``AllOf``s included)."""
        if not self.checks:
            return [SparkConfError("a Spark configuration policy with no checks accepts nothing")]
        found: list[SparkConfError] = []
        for check in self.checks:
            if isinstance(check, AllOf):
                found += check.violations(settings)
                continue
            try:
                check.verify(settings)
            except SparkConfError as exc:
                found.append(exc)
        return found


SECURE_SPARK_CONF = AllOf(
    Flag(
        "spark.authenticate",
        True,
        False,
        AuthDisabledError,
        "without it anyone who reaches a port talks to Spark",
    ),
    Flag(
        "spark.network.crypto.enabled",
        True,
        False,
        RpcEncryptionDisabledError,
        "RPC and block transfers would be in clear",
    ),
    GcmCipher(),
    AuthEngineV2(),
    Flag(
        "spark.network.crypto.saslFallback",
        False,
        True,
        SaslFallbackError,
        "a peer could downgrade to SASL",
    ),
    Flag(
        "spark.io.encryption.enabled",
        True,
        False,
        IoEncryptionDisabledError,
        "shuffle files, spills and cached blocks would be in clear on disk",
    ),
    IoKeySize(),
    Flag(
        "spark.eventLog.enabled",
        False,
        False,
        EventLogEnabledError,
        "event logs carry plans and failed tasks' messages off the node",
    ),
    UiOnLoopback(),
    UiKillOff(),
    DriverOnLoopback(),
    NoInlineSecret(),
    NoSecretInEnvironment(),
    SecretFromFiles(),
)
"""What ``spark-conf/`` guarantees; the driver and ``jobruntime conf check`` use it."""


# --- reading a configuration ---------------------------------------------------------


def parse_properties(text: str) -> dict[str, str]:
    """Key/values of a Java properties file, as ``java.util.Properties.load`` reads them.

    Comments (``#``, ``!``), continuation lines (a line ending in an odd number of
    backslashes), separators ``=``, ``:`` or whitespace, and the escapes ``\\t \\n \\r
    \\f \\uXXXX``; any other escaped character stands for itself. Values are trimmed as
    Spark trims them.
    """
    result: dict[str, str] = {}
    lines = re.split(r"\r\n|\r|\n", text)  # Java's line ends, not str.splitlines()'s
    i = 0
    while i < len(lines):
        line = lines[i].lstrip(" \t\f")
        i += 1
        if not line or line[0] in "#!":
            continue
        while _continues(line) and i < len(lines):
            line = line[:-1] + lines[i].lstrip(" \t\f")
            i += 1
        if _continues(line):
            line = line[:-1]
        key, value = _split(line)
        result[_unescape(key)] = _trim(_unescape(value))
    return result


def _continues(line: str) -> bool:
    return (len(line) - len(line.rstrip("\\"))) % 2 == 1


def _split(line: str) -> tuple[str, str]:
    i = 0
    while i < len(line):
        c = line[i]
        if c == "\\":
            i += 2
            continue
        if c in "=: \t\f":
            break
        i += 1
    key, rest = line[:i], line[i:]
    rest = rest.lstrip(" \t\f")
    if rest[:1] in ("=", ":"):
        rest = rest[1:].lstrip(" \t\f")
    return key, rest


_ESCAPES = {"t": "\t", "n": "\n", "r": "\r", "f": "\f"}


def _unescape(text: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(text):
        c = text[i]
        if c != "\\" or i + 1 >= len(text):
            out.append(c)
            i += 1
            continue
        nxt = text[i + 1]
        if nxt == "u":
            digits = text[i + 2 : i + 6]
            if len(digits) != 4 or any(d not in "0123456789abcdefABCDEF" for d in digits):
                raise ConfigError("malformed \\uxxxx escape in a properties file")
            out.append(chr(int(digits, 16)))
            i += 6
            continue
        out.append(_ESCAPES.get(nxt, nxt))
        i += 2
    return "".join(out)


def read_properties(path: Path) -> dict[str, str]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path} is not UTF-8") from None
    return parse_properties(text)


def effective_conf(
    conf_dir: Path,
    properties_file: Path | None = None,
    overrides: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """What ``spark-submit`` would run with: ``conf_dir``'s ``spark-defaults.conf``, then
    ``properties_file`` (as ``--properties-file FILE --load-spark-defaults``), then
    ``overrides`` (``--conf``, ``--master``); later wins."""
    defaults = conf_dir / DEFAULTS_FILE
    if not defaults.is_file():
        raise ConfigError(f"{conf_dir} has no {DEFAULTS_FILE}")
    conf = read_properties(defaults)
    if properties_file is not None:
        conf.update(read_properties(properties_file))
    conf.update(overrides or {})
    return conf


def check_conf_dir(
    conf_dir: Path,
    properties_file: Path | None = None,
    overrides: Mapping[str, str] | None = None,
    env: Mapping[str, str] | None = None,
) -> list[SparkConfError]:
    """Every refusal of the configuration these files give; empty when it is safe."""
    settings = SparkSettings(effective_conf(conf_dir, properties_file, overrides), env)
    return SECURE_SPARK_CONF.violations(settings)


# --- the driver's live configuration ------------------------------------------------


def live_settings(pairs: Iterable[tuple[str, str]], env: Mapping[str, str]) -> SparkSettings:
    """The settings of a live ``SparkConf`` (``getAll()``) and the JVM's environment."""
    return SparkSettings(dict(pairs), {k: v for k, v in env.items() if k == LOCAL_IP_ENV})


def refuse_insecure_spark_conf() -> None:
    """Raise the first refusal of the driver's live Spark configuration.

    Called by the driver entry before it builds the SparkSession: in ``spark-submit``
    the JVM already holds every setting (``--properties-file``, ``--conf``,
    ``--master``) as system properties, which a fresh ``SparkConf`` loads. Nothing of
    Spark (RPC, UI, executors) has started, so nothing runs under a refused one.
    """
    from pyspark import SparkConf, SparkContext

    SparkContext._ensure_initialized()  # attach to spark-submit's JVM (or start one)
    pairs = [(str(k), str(v)) for k, v in SparkConf(loadDefaults=True).getAll()]
    # The UI binds to the JVM's $SPARK_LOCAL_IP (the Python driver inherited the same).
    jvm = SparkContext._jvm
    local_ip = jvm.java.lang.System.getenv(LOCAL_IP_ENV) if jvm else os.environ.get(LOCAL_IP_ENV)
    env = {} if local_ip is None else {LOCAL_IP_ENV: str(local_ip)}
    SECURE_SPARK_CONF.verify(live_settings(pairs, env))
