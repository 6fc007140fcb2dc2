import sys

print("heartbeat: not built yet; see the heartbeat issue", file=sys.stderr)
raise SystemExit(2)
