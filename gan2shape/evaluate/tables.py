"""Reporting: the markdown results table and the metrics JSON file.

Rows are ``name -> metrics`` dicts carrying the summary keys of
:func:`gan2shape.evaluate.metrics.summarize`: 'side_x1e2_mean', 'side_x1e2_std' (SIDE already
multiplied by 100, i.e. in units of 10^-2) and 'mad_mean', 'mad_std' (degrees), optionally 'n'.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from gan2shape.atomic import write_text_atomic

__all__ = ["ROW_LABELS", "markdown_table", "write_metrics_json", "to_json_value"]

# Display names of the rows that gan2shape itself produces; other names are shown as given.
ROW_LABELS: dict[str, str] = {
    "supervised": "Supervised (GT depth)",
    "null_depth": "Constant null depth",
    "average_gt_depth": "Average GT depth",
    "ellipsoid_prior": "Ellipsoid prior",
    "unsup3d": "Unsup3d",
    "prediction": "GAN2Shape (ours)",
}


def _pm(mean: Any, std: Any, digits: int) -> str:
    if mean is None or not math.isfinite(float(mean)):
        return "n/a"
    text = f"{float(mean):.{digits}f}"
    if std is not None and math.isfinite(float(std)):
        text += f" ± {float(std):.{digits}f}"
    return text


def markdown_table(
    rows: Mapping[str, Mapping[str, Any]],
    labels: Mapping[str, str] | None = None,
    extra_columns: Sequence[tuple[str, str]] = (),
) -> str:
    """A GitHub-markdown table with one row per entry, in the given order.

    Columns: method, N (images), "SIDE (x10^-2)" and "MAD (deg)" as ``mean ± std`` (std omitted
    when undefined, e.g. a single image). SIDE is read from the 'side_x1e2_*' keys, which are
    already in units of 10^-2; nothing is rescaled here. A row's method column is
    ``labels[name]`` when given, else its :data:`ROW_LABELS` entry, else the name itself.
    ``extra_columns``: (key, header) pairs appended as columns, each value with 2 decimals (n/a when
    missing or not finite), e.g. the share of the gap closed.

    Returns:
        The table text, ending with a newline.
    """
    labels = labels or {}
    lines = [
        "| Method | N | SIDE (x10^-2) | MAD (deg) |" + "".join(f" {header} |" for _, header in extra_columns),
        "|---|---:|---:|---:|" + "---:|" * len(extra_columns),
    ]
    for name, m in rows.items():
        missing = [k for k in ("side_x1e2_mean", "mad_mean") if k not in m]
        if missing:
            raise ValueError(f"markdown_table: row {name!r} lacks {missing}; give the keys of metrics.summarize")
        label = labels.get(name) or ROW_LABELS.get(name, name)
        n = m.get("n", "")
        lines.append(
            f"| {label} | {n} | {_pm(m['side_x1e2_mean'], m.get('side_x1e2_std'), 3)} | "
            f"{_pm(m['mad_mean'], m.get('mad_std'), 2)} |"
            + "".join(f" {_pm(m.get(key), None, 2)} |" for key, _ in extra_columns)
        )
    return "\n".join(lines) + "\n"


def to_json_value(value: Any) -> Any:
    """Convert numbers, arrays and tensors to plain JSON types; non-finite floats become None."""
    if isinstance(value, Mapping):
        return {str(k): to_json_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json_value(v) for v in value]
    if isinstance(value, torch.Tensor):
        return to_json_value(value.detach().cpu().tolist())
    if isinstance(value, np.ndarray):
        return to_json_value(value.tolist())
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        f = float(value)
        return f if math.isfinite(f) else None
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"to_json_value: cannot store a {type(value).__name__} in metrics JSON")


def write_metrics_json(path: str | Path, data: Mapping[str, Any]) -> Path:
    """Write ``data`` as JSON atomically (``<path>.tmp`` then ``os.replace``).

    Keys are sorted, numpy/torch numbers become plain JSON numbers, NaN/inf become null (JSON has
    no NaN; DVC and other readers choke on it). Parent folders are created.
    """
    text = json.dumps(to_json_value(data), sort_keys=True, indent=2, allow_nan=False) + "\n"
    return write_text_atomic(path, text)
