"""Unit tests of the sample job modules in ``jobs/``, through :mod:`jobruntime.testing`."""
