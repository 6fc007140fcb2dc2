"""The heartbeat sidecar: liveness, progress and cancel (filled in by the heartbeat issue)."""
