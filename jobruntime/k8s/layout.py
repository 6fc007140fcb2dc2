"""The fixed paths and names of a run's pods on Kubernetes: the image's, and the pod's volumes.

The image's paths are those ``Dockerfile.spark`` lays out (README, "The image"); the
volume paths are those the README's read-only root file system table names. One
place, so that the containers' arguments, their mounts and the probes agree.
"""

from __future__ import annotations

from pathlib import PurePosixPath

from jobruntime.job.failure import IMAGE_LOG4J2

UID = 185
"""The Spark image's ``spark`` user, which every container of the image runs as."""

VENV_BIN = PurePosixPath("/opt/jobruntime/venv/bin")
VERIFIER_BIN = str(VENV_BIN / "job-verifier")
KEY_AGENT_BIN = str(VENV_BIN / "jobruntime-key-agent")
HEARTBEAT_BIN = str(VENV_BIN / "jobruntime-heartbeat")
DRIVER_APPLICATION = "local:///opt/jobruntime/driver.py"
TEST_BIN = "/usr/bin/test"
"""For the key agent's startup probe: exec probes run no shell."""

# The image's copy of spark-conf/log4j2.properties, outside /opt/spark/conf (which Spark
# on Kubernetes replaces with its own ConfigMap), named in the JVMs' options.
LOG4J2_CONFIG = IMAGE_LOG4J2
RUN_DIR = PurePosixPath("/run/jobruntime")
"""The memory volume: the verified bundle, the driver's outcome, a verified cancel order
(its root is the
kubelet's: world-writable, root-owned)."""
AGENT_DIR = RUN_DIR / "agent"
"""Created 0700 by the key agent itself: its socket and the run's Spark secret."""
SOCKET = str(AGENT_DIR / "agent.sock")
TOKEN_DIR = "/run/secrets/jobruntime"  # noqa: S105 - where the token Secret is mounted
TOKEN_KEY = "token"  # noqa: S105 - the Secret's key name, not a secret
TOKEN_FILE = f"{TOKEN_DIR}/{TOKEN_KEY}"
TMP_DIR = "/tmp"  # noqa: S108 - a private emptyDir of the pod, not the host's /tmp
WORK_DIR = "/opt/spark/work-dir"
LOCAL_DIR = "/var/data/spark-local-dir-1"

# Volume names. Spark uses a template container's mounts whose volume name starts with
# ``spark-local-dir-`` as its local directories (LocalDirsFeatureStep) instead of adding
# its own.
RUN_VOLUME = "jobruntime-run"
TOKEN_VOLUME = "jobruntime-token"  # noqa: S105 - a volume's name
TMP_VOLUME = "tmp"
WORK_VOLUME = "spark-work-dir"
LOCAL_VOLUME = "spark-local-dir-1"

# Container names. The operator points Spark at the template's Spark container by
# these names (spark.kubernetes.{driver,executor}.podTemplateContainerName).
DRIVER_CONTAINER = "spark-kubernetes-driver"
EXECUTOR_CONTAINER = "spark-kubernetes-executor"
VERIFIER = "job-verifier"
KEY_AGENT = "key-agent"
HEARTBEAT = "heartbeat"

# Environment variables the image's programs read (jobruntime.job.driver,
# jobruntime.datasource.options, jobruntime.storage.uri, heartbeat.cli).
BUNDLE_ENV = "JOB_BUNDLE_DIR"
SOCKET_ENV = "JOB_KEYAGENT_SOCKET"
STORAGE_ENV = "JOBRUNTIME_AZURE_CONNECTION_STRING"
SERVICEBUS_ENV = "JOB_SERVICEBUS_CONNECTION"
CONNECTION_KEY = "connection-string"
"""The key of the storage and Service Bus Secrets."""

# Labels and annotations. The run id (``run-<uuid>``) is a valid label value.
LABEL_PREFIX = "jobruntime.io/"
RUN_LABEL = LABEL_PREFIX + "run-id"
ROLE_LABEL = LABEL_PREFIX + "role"
JOB_LABEL = LABEL_PREFIX + "job-id"
SPEC_DIGEST_ANNOTATION = LABEL_PREFIX + "spec-digest"
ISOLATION_ANNOTATION = LABEL_PREFIX + "isolation"
CC_POLICY_ANNOTATION = "io.katacontainers.config.agent.policy"
"""Where Confidential Containers read a pod's agent policy (base64 Rego), whose digest
the host puts in the pod's HOST_DATA."""
