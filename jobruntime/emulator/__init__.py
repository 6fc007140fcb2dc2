"""The control-plane emulator: a real server with persistent state for local work."""
