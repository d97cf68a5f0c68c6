"""Checks: spec refinement, invariants, Hypothesis machines, explorer, z3 proofs, traces, CLI."""
