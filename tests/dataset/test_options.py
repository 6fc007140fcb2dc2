"""Which key agent a confidential read or write uses: the one of the pod it runs in.

The query plan carries the driver's socket (``keyAgentSocket``, set by ``ctx``) to every
executor; an executor pod's own agent is named by its container's
``$JOB_KEYAGENT_SOCKET``, which wins where it is set. The reader is parsed on the
driver and unpickled on executors, so the choice is made where the key operation is.
"""

from __future__ import annotations

import pickle

import pytest

from jobruntime.datasource.options import SOCKET_ENV, Options
from jobruntime.errors import ConfigError

DRIVER = "/dev/shm/driver-pod/agent/agent.sock"
EXECUTOR = "/dev/shm/executor-pod/agent/agent.sock"


def parsed(**extra: str) -> Options:
    return Options.parse({"path": "file:///data/a", "dataset": "customers_a", **extra})


def test_the_driver_uses_the_socket_in_the_plan(monkeypatch: pytest.MonkeyPatch) -> None:
    """The driver removes the variable from its own process: the option decides."""
    monkeypatch.delenv(SOCKET_ENV, raising=False)
    options = parsed(keyAgentSocket=DRIVER)
    assert str(options.agent().socket_path) == DRIVER


def test_an_executor_uses_its_own_pods_agent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(SOCKET_ENV, raising=False)
    shipped = pickle.dumps(parsed(keyAgentSocket=DRIVER))  # parsed on the driver
    monkeypatch.setenv(SOCKET_ENV, EXECUTOR)  # the executor pod's container
    on_executor: Options = pickle.loads(shipped)  # noqa: S301 - our own bytes
    assert on_executor.socket == DRIVER  # the plan is unchanged...
    assert str(on_executor.agent().socket_path) == EXECUTOR  # ...the pod's agent is used


def test_the_variable_alone_is_enough_and_nothing_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(SOCKET_ENV, EXECUTOR)
    assert str(parsed().agent().socket_path) == EXECUTOR
    monkeypatch.delenv(SOCKET_ENV)
    with pytest.raises(ConfigError, match="no key agent"):
        parsed()
