"""Typed failures of the local Spark standalone cluster (codes ``cluster.*``, exit 27).

Messages name the daemon, the port or the file and carry the tail of the daemon's own
log, never the cluster secret: the secret reaches the daemons through the environment
only, so it is in no command line and no log line that could end up in a message.
"""

from __future__ import annotations

from jobruntime.errors import JobRuntimeError
from jobruntime.sparkconf.spark_home import SparkHomeError

__all__ = [
    "ClusterConfigError",
    "ClusterError",
    "ClusterStartError",
    "ClusterStateError",
    "SparkHomeError",
]


class ClusterError(JobRuntimeError):
    """The local cluster could not be started, inspected or stopped."""

    code = "cluster.failed"
    exit_code = 27


class ClusterConfigError(ClusterError):
    """A cluster setting (workers, cores, memory) is unusable."""

    code = "cluster.config"


class ClusterStartError(ClusterError):
    """A daemon exited, or the workers were not all ALIVE before the deadline."""

    code = "cluster.start"


class ClusterStateError(ClusterError):
    """The state directory's ``cluster.json`` or ``secret`` is unreadable or malformed."""

    code = "cluster.state"
