"""Diagnostics that look inside the method's steps with the benchmark's instruments.

``step2``: the step-2 bench (``gan2shape diagnose-step2``): do the projected samples turn as step 2
asks? This layer may import the method, the benchmark data and evaluation; nothing imports it.
"""

from gan2shape.diagnose.step2 import run_diagnose_step2

__all__ = ["run_diagnose_step2"]
