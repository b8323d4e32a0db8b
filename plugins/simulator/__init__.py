"""Simulated phone lines (filled in by the simulator work)."""
