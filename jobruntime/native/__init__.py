"""Confidential datasets on Spark's native Parquet path (issue 13).

The same encrypted files, manifests and commit as the ``confidential`` Python data
source (:mod:`jobruntime.datasource`, :mod:`jobruntime.dataset`), read and written by
Spark's own Parquet engine through a small JVM jar (``java/jobruntime-kms``): a
``KmsClient`` that asks the pod's key agent to wrap and unwrap KEKs, a crypto factory
that checks every file against the verified manifest before it is decoded, and a
commit protocol that carries each part's digest from its task to the driver.

- :mod:`.jvm`: is the jar on the class path; the Spark settings a write needs.
- :mod:`.options`: what a read or write tells the JVM (names, paths, digests; no key).
- :mod:`.read` / :mod:`.write`: ``ctx.read`` and ``ctx.write`` on the native path.
- :mod:`.errors`: a refusal raised in the JVM, back as the runtime's typed error.
"""
