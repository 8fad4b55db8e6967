"""Benchmarks: Workbench side by side with the tools users would otherwise use."""
