"""Development harnesses: what starts a run's pods on this machine, never part of a pod.

No pod entrypoint (``job-verifier``, the key agent, the heartbeat sidecar, the driver
entry) imports this package, and ``tests/test_pod_runner.py`` checks that it stays so:
it holds the stand-ins for Kubernetes, the kubelet and the host, which a pod must
never be able to reach for.

- :mod:`jobruntime.dev.podrunner`: the local pod runner. It reads the YAML that
  ``jobruntime manifest`` renders and starts every pod's containers as local processes
  the way a kubelet would, with the Spark driver submitting to a local standalone
  cluster in which each executor pod's worker carries that pod's key agent.
"""
