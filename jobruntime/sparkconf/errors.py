"""Typed refusals of a Spark configuration, one stable ``code`` per weakening.

All of them are ``SparkConfError`` (exit code 31, the ``sparkconf.*`` area), so a
caller that only cares that the configuration is unsafe catches one class, and logs and
tests key on ``code``. Messages name settings and, for non-secret settings, the value
found; never the value of a secret.
"""

from __future__ import annotations

from jobruntime.errors import JobRuntimeError


class SparkConfError(JobRuntimeError):
    """The effective Spark configuration weakens what spark-conf/ guarantees."""

    code = "sparkconf.insecure"
    exit_code = 31


class AuthDisabledError(SparkConfError):
    """``spark.authenticate`` is not true: anyone who reaches a port talks to Spark."""

    code = "sparkconf.auth_off"


class RpcEncryptionDisabledError(SparkConfError):
    """``spark.network.crypto.enabled`` is not true: RPC and block transfers in clear."""

    code = "sparkconf.rpc_encryption_off"


class WeakCipherError(SparkConfError):
    """``spark.network.crypto.cipher`` is not AES/GCM/NoPadding (AES/CTR is unauthenticated)."""

    code = "sparkconf.cipher"


class AuthEngineVersionError(SparkConfError):
    """``spark.network.crypto.authEngineVersion`` is not 2 (version 1 skips the final HKDF)."""

    code = "sparkconf.auth_engine_version"


class SaslFallbackError(SparkConfError):
    """``spark.network.crypto.saslFallback`` is not false: a peer could downgrade to SASL."""

    code = "sparkconf.sasl_fallback"


class IoEncryptionDisabledError(SparkConfError):
    """``spark.io.encryption.enabled`` is not true: shuffle files and spills in clear."""

    code = "sparkconf.io_encryption_off"


class IoKeySizeError(SparkConfError):
    """``spark.io.encryption.keySizeBits`` is below 256."""

    code = "sparkconf.io_key_size"


class EventLogEnabledError(SparkConfError):
    """``spark.eventLog.enabled`` is on: plans and failed tasks' messages leave the node."""

    code = "sparkconf.event_log"


class UiExposedError(SparkConfError):
    """The UI is on and binds beyond loopback (``SPARK_LOCAL_IP`` unset or not loopback)."""

    code = "sparkconf.ui_exposed"


class UiKillEnabledError(SparkConfError):
    """The UI is on and ``spark.ui.killEnabled`` is not false."""

    code = "sparkconf.ui_kill"


class BindAddressError(SparkConfError):
    """Outside Kubernetes, ``spark.driver.bindAddress`` is unset or not a loopback address."""

    code = "sparkconf.bind_address"


class InlineSecretError(SparkConfError):
    """On Kubernetes, ``spark.authenticate.secret`` is set: the secret is in the configuration."""

    code = "sparkconf.secret_inline"


class EnvironmentSecretError(SparkConfError):
    """The auth secret is handed over as an environment variable (``_SPARK_AUTH_SECRET``)."""

    code = "sparkconf.secret_env"


class SecretFilesError(SparkConfError):
    """On Kubernetes, no secret files: Spark would put the secret in executor pods' env."""

    code = "sparkconf.secret_files"
