"""The telephony gateway: calls arrive over the platforms\x27 own protocols."""
