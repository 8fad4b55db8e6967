"""Tracked runs: executing notebooks with papermill, recording events, ingesting them."""
