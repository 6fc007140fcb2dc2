"""What ``spark-conf/`` guarantees, as checks: ``jobruntime conf check`` and the driver.

``SECURE_SPARK_CONF.verify(settings)`` raises the first weakening as its own typed error
(``sparkconf.*``, exit 31); ``violations(settings)`` lists them all.
"""

from jobruntime.sparkconf.check import (
    SECURE_SPARK_CONF,
    AllOf,
    SparkSettings,
    check_conf_dir,
    effective_conf,
    parse_properties,
    refuse_insecure_spark_conf,
)
from jobruntime.sparkconf.errors import SparkConfError

__all__ = [
    "SECURE_SPARK_CONF",
    "AllOf",
    "SparkConfError",
    "SparkSettings",
    "check_conf_dir",
    "effective_conf",
    "parse_properties",
    "refuse_insecure_spark_conf",
]
