"""Sensors (import-light, like operators: provider classes are imported inside methods)."""
