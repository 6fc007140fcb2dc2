"""Keys, DSSE envelopes and the pinned trust root."""
