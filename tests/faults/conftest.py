"""The e2e suite's encrypted world (two owners' datasets in the session's emulator), reused."""

from __future__ import annotations

from tests.test_e2e import world, world_shm

__all__ = ["world", "world_shm"]
