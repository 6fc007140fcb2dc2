"""How heartbeats travel: HTTP or Azure Service Bus."""
