"""job-verifier: the init container that decides whether a run may touch data."""

__version__ = "0.1.0"
