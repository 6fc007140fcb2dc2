"""The control-plane API: wire models, the HTTP client and the audit chain."""
