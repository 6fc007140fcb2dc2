"""A local Spark standalone cluster for end-to-end runs, and the Spark environment.

``StandaloneCluster(state_dir).up()`` starts a Master and Workers on 127.0.0.1 with a
per-cluster authentication secret; ``ClusterInfo.submit_args()`` gives ``spark-submit``
what it needs to run against it; ``spark_env()`` is the environment for any Spark
process of ours (daemons, ``spark-submit``, executors).
"""

from jobruntime.dev.cluster.errors import (
    ClusterConfigError,
    ClusterError,
    ClusterStartError,
    ClusterStateError,
    SparkHomeError,
)
from jobruntime.dev.cluster.info import ClusterInfo
from jobruntime.dev.cluster.standalone import StandaloneCluster
from jobruntime.sparkconf.spark_home import default_conf_dir, spark_bin, spark_env, spark_home

__all__ = [
    "ClusterConfigError",
    "ClusterError",
    "ClusterInfo",
    "ClusterStartError",
    "ClusterStateError",
    "SparkHomeError",
    "StandaloneCluster",
    "default_conf_dir",
    "spark_bin",
    "spark_env",
    "spark_home",
]
