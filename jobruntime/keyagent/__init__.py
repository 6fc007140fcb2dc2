"""The key agent: a sidecar that holds the pod's dataset keys in memory and serves them.

It releases each key the verified spec allows once per pod through a
:class:`KeySource`, and serves it over a Unix socket in the pod's memory-backed
volume to processes of its own uid (Spark Python workers, the JVM KmsClient).
Everything here uses only the standard library, so readers can import the client
cheaply. Run it with ``python -m jobruntime.keyagent`` (see :mod:`.cli`).
"""

from jobruntime.keyagent.client import KeyAgentClient
from jobruntime.keyagent.errors import KeyAgentError
from jobruntime.keyagent.server import KeyAgentServer
from jobruntime.keyagent.source import KeySource, StaticKeySource

__all__ = ["KeyAgentClient", "KeyAgentError", "KeyAgentServer", "KeySource", "StaticKeySource"]
