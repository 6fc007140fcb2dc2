"""A local Spark standalone cluster for end-to-end runs, and the Spark environment.

``StandaloneCluster(state_dir).up()`` starts a Master and Workers on 127.0.0.1 with a
per-cluster authentication secret; ``ClusterInfo.submit_args()`` gives ``spark-submit``
what it needs to run against it; ``spark_env()`` is the environment for any Spark
process of ours (daemons, ``spark-submit``, executors).
"""

from jobruntime.cluster.errors import (
    ClusterConfigError,
    ClusterError,
    ClusterStartError,
    ClusterStateError,
    SparkHomeError,
)
from jobruntime.cluster.info import ClusterInfo
from jobruntime.cluster.spark_home import default_conf_dir, spark_bin, spark_env, spark_home
from jobruntime.cluster.standalone import StandaloneCluster

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
