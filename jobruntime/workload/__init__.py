"""Workload identity: what a pod is, as the host that launches it measures it."""
