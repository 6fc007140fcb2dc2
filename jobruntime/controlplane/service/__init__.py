"""The control plane as a service: decisions over a repository, without HTTP."""
