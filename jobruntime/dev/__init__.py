"""Development harnesses: what starts a run's pods on this machine, never part of a pod.

No pod entrypoint (``job-verifier``, the key agent, the heartbeat sidecar, the driver
entry) imports this package (``tests/test_pod_runner.py`` checks that it stays so), and
the image leaves it out (``.dockerignore``): it holds the stand-ins for Kubernetes, the
kubelet and the host, which a pod must never be able to reach for.

- :mod:`~jobruntime.dev.process`: the one way to run a local process (start in its own
  session, wait until ready, output to a log, stop its whole group); :mod:`~.procs`
  checks and stops process groups.
- :mod:`~jobruntime.dev.emulator`: the control-plane emulator as a local process.
- :mod:`~jobruntime.dev.localpod`: the local launcher, which measures a pod's HOST_DATA
  as a host would and starts its containers with nothing unmeasured.
- :mod:`~jobruntime.dev.pods`, :mod:`~.submit`, :mod:`~.follow`: ``jobruntime submit``,
  the whole local flow of one run, and what it shows while the driver runs.
- :mod:`~jobruntime.dev.cluster`: a local Spark standalone cluster (``cluster up``).
- :mod:`~jobruntime.dev.podrunner`: the local pod runner. It reads the YAML that
  ``jobruntime manifest`` renders and starts every pod's containers as local processes
  the way a kubelet would (:mod:`~.kubelet`), with the Spark driver submitting to a
  local standalone cluster in which each executor pod's worker carries that pod's key
  agent.
"""
