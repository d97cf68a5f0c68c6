"""Checks: the driver, invariants, refinement, progress, Hypothesis campaigns, traces, CLI."""
