"""The ``jobruntime`` command line: one module per command group."""
