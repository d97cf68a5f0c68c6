"""The smallest configuration the command tests run: one process of a three-instruction
program, two Hypothesis runs of ten steps."""

TINY = """
hardware: {user_frames: 4, va_pages: 16}
workload:
  initial: [0]
  programs:
    - {name: p, text: "MOV #16, r1\\nMOV (r1)+, r2\\nSYS 0", data: [7], heap_pages: 1}
budget: {examples: 2, steps: 10, shrink_seconds: 1}
"""
