"""The attack matrix's marker, and the fixtures its tests reuse from the other suites.

``@pytest.mark.attack(id=..., threat=..., adversary=..., mechanism=...)`` declares one
row of docs/attack-matrix.md; ``tests/adversarial/matrix.py`` reads the declarations.
Fixtures are imported from the suites that own them, never copied.
"""

from __future__ import annotations

import pytest

from tests.dataset.conftest import agents
from tests.keyagent.conftest import agent

__all__ = ["agent", "agents"]  # fixtures: the data suite's agents, the key agent's servers


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "attack(id, threat, adversary, mechanism): one row of the attack matrix "
        "(docs/attack-matrix.md, scripts/attack_report.py)",
    )
