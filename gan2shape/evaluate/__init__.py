"""Evaluation on the synthetic head benchmark (docs/METHOD.md section 5): SIDE, MAD, baselines, tables.

Modules: metrics (the per-image metrics and their summary), baselines (the baseline rows), tables
(markdown table and metrics JSON), run (the ``gan2shape evaluate`` step, :func:`run_evaluate`),
report (the benchmark's tables from its evaluation folders: ``gan2shape tables``, ``run_tables``).
"""

from __future__ import annotations

from gan2shape.evaluate.baselines import BASELINES, average_gt_depth, evaluate_baselines
from gan2shape.evaluate.metrics import (
    ScoreAccumulator,
    erode_mask,
    evaluate_depth,
    evaluation_mask,
    mad,
    side,
    summarize,
)
from gan2shape.evaluate.run import run_evaluate
from gan2shape.evaluate.tables import markdown_table, write_metrics_json

__all__ = [
    "BASELINES",
    "ScoreAccumulator",
    "average_gt_depth",
    "erode_mask",
    "evaluate_baselines",
    "evaluate_depth",
    "evaluation_mask",
    "mad",
    "markdown_table",
    "run_evaluate",
    "side",
    "summarize",
    "write_metrics_json",
]
