"""Only verified data enters: signed specs, their approvals and the pod's bundle.

Modelled on python-tuf's trusted metadata set. A :class:`~.signed.VerifiedSpec` can
only come out of :func:`~.signed.verify_signed_run`, which checks the control plane's
signature before it parses a byte of the spec; every later check, and every consumer
of the bundle, takes a ``VerifiedSpec`` (the driver) or a ``PlainVerifiedSpec`` (the
key agent and heartbeat sidecar, which cannot afford pydantic: ``sidecar``), minted
by the same sequence, so the order is enforced by types rather than by sorting a list
of steps.
"""
