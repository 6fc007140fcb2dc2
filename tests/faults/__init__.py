"""Faults injected into real processes: each test kills or stalls one and checks a guarantee."""
