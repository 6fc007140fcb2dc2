"""Hypothesis profiles for the fuzz tests, and where hypothesis may write.

``short`` (the default) runs in ``make test``: few examples, derandomized so the suite
never fails by chance. ``fuzz`` (``HYPOTHESIS_PROFILE=fuzz``, ``make fuzz``) draws many
more, randomly. Neither keeps an example database, and hypothesis's own cache goes to a
temporary directory, so nothing is written into the checkout (no ``.hypothesis/``).
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from datetime import timedelta

from hypothesis import HealthCheck, settings
from hypothesis.configuration import set_hypothesis_home_dir

_HOME = tempfile.mkdtemp(prefix="jobruntime-hypothesis-")
set_hypothesis_home_dir(_HOME)
atexit.register(shutil.rmtree, _HOME, True)

# A loaded two-core machine: an example may be slow without being a hang, so the deadline
# is generous; a quadratic parser over the large inputs the strategies draw still misses it.
_COMMON = settings(
    database=None,
    deadline=timedelta(seconds=5),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)

settings.register_profile(
    "short",
    _COMMON,
    max_examples=int(os.environ.get("FUZZ_SHORT_EXAMPLES", "50")),
    derandomize=True,
)
settings.register_profile(
    "fuzz",
    _COMMON,
    max_examples=int(os.environ.get("FUZZ_EXAMPLES", "1000")),
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "short"))
