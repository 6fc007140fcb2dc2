"""Attested key release: challenge, evidence bound to the run, keys wrapped as JWE.

Modelled on the Confidential Containers KBS: the KMS issues a nonce, the pod's
REPORT_DATA binds the nonce, the run id and an ephemeral public key, the KMS
appraises the evidence once and then releases each dataset key wrapped to that
ephemeral key.
"""
