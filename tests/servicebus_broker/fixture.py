"""The session fixture ``servicebus_broker``: import it into a test module or conftest."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servicebus_broker.process import BrokerProcess


@pytest.fixture(scope="session")
def servicebus_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    """One broker on 127.0.0.1 for the session; stopped at the end (its log is kept)."""
    workdir: Path = tmp_path_factory.mktemp("servicebus-broker")
    broker = BrokerProcess(workdir).start()
    try:
        yield broker
    finally:
        broker.stop()
