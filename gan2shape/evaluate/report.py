"""The benchmark report (``gan2shape tables``): Table 1, Table 2, the perceptual-loss ablation and
the per-stage plot data, gathered from the evaluation folders of the benchmark's runs (dvc.yaml).

Read, under ``eval_dir`` (each ``metrics.json`` written by ``gan2shape evaluate`` for the
``stage{k}/shape.h5`` of one run, k >= 1):

- ``test/stage{k}/metrics.json``: the Table 1 run (test heads started from the joint weights);
  its rows hold the prediction and the baselines, scored on the same images;
- ``prior-{variant}/stage{k}/metrics.json``: one Table 2 run per shape prior;
- ``perceptual-{name}/stage{k}/metrics.json``: one ablation run per perceptual-loss source other than
  the method's default; the default's row is the Table 2 run of the default prior (``default_row``:
  the same configuration and seed, so a separate run would repeat it number for number).

- with peers (``gan2shape tables --peer supervised --peer unsup3d``), ``<peer>/all/`` and
  ``<peer>/table1/``: the peer's prediction evaluated on all test heads and on the first ``bench.n_test``
  (the Table 1 run's heads), each a ``gan2shape evaluate`` folder (metrics.json, per_image.json).

Written, under ``out_dir``: ``table1.md`` (the baselines, ours after every stage, ours final; with
peers also the supervised and Unsup3d rows, each row's share of the gap closed, the rows on all test
heads and the paired differences, :func:`peer_tables`),
``table2.md`` (one row per prior, final stage), ``perceptual.md`` (one row per source, final
stage), ``stages.csv`` (the Table 1 run per stage, for ``dvc plots``) and the same numbers as
metrics, one small JSON file per row: ``metrics/table1/<row>.json``, ``metrics/table2/<prior>.json``,
``metrics/perceptual/<source>.json``, each with the summary keys of
:func:`gan2shape.evaluate.metrics.summarize` (n, side_x1e2_mean/std, mad_mean/std). One file per
row (all with the same keys) makes ``dvc metrics show`` print each table as a table. With peers:
``metrics/table1/<row>.json`` gains ``gap_closed_side`` and ``gap_closed_mad``, ``metrics/table1_all/``
holds the rows on all test heads, ``metrics/table1_paired/<row>-vs-<reference>[-all].json`` the paired
differences (:data:`PAIRED_KEYS`).

Gap closed: (average GT - row) / (average GT - supervised) per metric, on the same heads: 0 for the
average GT depth, 1 for the supervised net, negative for a row worse than the average.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any, Mapping, Sequence

from gan2shape.atomic import write_text_atomic
from gan2shape.errors import ConfigError, InputError
from gan2shape.evaluate.run import SUMMARY_KEYS
from gan2shape.evaluate.tables import ROW_LABELS, markdown_table, write_metrics_json

__all__ = [
    "PAIRED_KEYS",
    "PEER_SUBSETS",
    "TABLE1_RUN",
    "gap_closed",
    "paired_difference",
    "peer_tables",
    "read_peer",
    "perceptual_run",
    "prior_run",
    "read_run",
    "table1_rows",
    "final_rows",
    "stages_csv",
    "run_tables",
    "results_markdown",
]

#: evaluation folder of the Table 1 run
TABLE1_RUN = "test"
#: the evaluation folders of a peer: all test heads, and the Table 1 run's heads
PEER_SUBSETS = ("all", "table1")
#: keys of a paired-difference metrics file (row - reference, per head; x1e2 for SIDE, degrees for MAD)
PAIRED_KEYS = (
    "n",
    "side_x1e2_diff_mean",
    "side_x1e2_diff_se",
    "mad_diff_mean",
    "mad_diff_se",
    "side_lower",
    "mad_lower",
)
_STAGE_DIR = re.compile(r"stage(\d+)")


def prior_run(variant: str) -> str:
    """Evaluation folder name of the Table 2 run with this shape prior."""
    return f"prior-{variant}"


def perceptual_run(name: str) -> str:
    """Evaluation folder name of the ablation run with this perceptual-loss source."""
    return f"perceptual-{name}"


def read_run(eval_dir: str | Path, run: str) -> dict[int, dict[str, Any]]:
    """The metrics of every evaluated stage of one run: ``{k: metrics.json content}``, k ascending.

    Raises FileNotFoundError when the run has no ``stage{k}/metrics.json`` (k >= 1), and
    ValueError when one lacks the 'prediction' row (it was evaluated without --pred).
    """
    folder = Path(eval_dir) / run
    found: dict[int, Path] = {}
    if folder.is_dir():
        for child in folder.iterdir():
            match = _STAGE_DIR.fullmatch(child.name)
            if match and int(match.group(1)) >= 1 and (child / "metrics.json").is_file():
                found[int(match.group(1))] = child / "metrics.json"
    if not found:
        raise FileNotFoundError(
            f"{folder} holds no stage<k>/metrics.json (k >= 1): evaluate the run '{run}' first "
            "(its evaluate stage in dvc.yaml, or gan2shape evaluate --pred RUN/stage<k>/shape.h5)"
        )
    stages: dict[int, dict[str, Any]] = {}
    for k in sorted(found):
        try:
            metrics = json.loads(found[k].read_text(encoding="utf-8"))
        except ValueError as exc:
            raise InputError(f"{found[k]} is not valid JSON ({exc}): delete it and rerun its evaluation") from None
        if not isinstance(metrics, dict) or "prediction" not in metrics.get("rows", {}):
            raise InputError(f"{found[k]} has no 'prediction' row: rerun its evaluation with --pred")
        stages[k] = metrics
    return stages


def _summary(row: Mapping[str, Any]) -> dict[str, Any]:
    return {key: row.get(key) for key in SUMMARY_KEYS}


def table1_rows(stages: Mapping[int, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Table 1 from the per-stage metrics of the Table 1 run (:func:`read_run`).

    Rows, in order: the baselines of the final stage's evaluation (they are scored on the same
    images at every stage; known ones in :data:`ROW_LABELS` order, others by name), ``stage{k}``
    (the prediction after stage k) for every k, and ``ours`` (the final stage's prediction).
    """
    if not stages:
        raise ValueError("table1_rows: no stages given")
    final = stages[max(stages)]["rows"]
    order = list(ROW_LABELS)
    baselines = sorted(
        (name for name in final if name != "prediction"),
        key=lambda name: (order.index(name) if name in order else len(order), name),
    )
    rows = {name: _summary(final[name]) for name in baselines}
    for k in sorted(stages):
        rows[f"stage{k}"] = _summary(stages[k]["rows"]["prediction"])
    rows["ours"] = _summary(final["prediction"])
    return rows


def final_rows(runs: Mapping[str, Mapping[int, Mapping[str, Any]]]) -> dict[str, dict[str, Any]]:
    """One row per run (in the given order): the prediction of its final stage."""
    return {name: _summary(stages[max(stages)]["rows"]["prediction"]) for name, stages in runs.items()}


def _csv_value(value: Any) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return ""
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def stages_csv(stages: Mapping[int, Mapping[str, Any]]) -> str:
    """The prediction per stage as CSV (header ``stage,`` + the summary keys), k ascending."""
    lines = [",".join(("stage",) + SUMMARY_KEYS)]
    for k in sorted(stages):
        row = stages[k]["rows"]["prediction"]
        lines.append(",".join([str(k)] + [_csv_value(row.get(key)) for key in SUMMARY_KEYS]))
    return "\n".join(lines) + "\n"


def read_peer(eval_dir: str | Path, peer: str, subset: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(metrics.json, per_image.json) of ``eval_dir/<peer>/<subset>`` (subset in :data:`PEER_SUBSETS`).

    Raises FileNotFoundError when the folder was not evaluated and InputError when a file is not JSON or
    lacks the 'prediction' row.
    """
    folder = Path(eval_dir) / peer / subset
    out = []
    for name in ("metrics.json", "per_image.json"):
        path = folder / name
        if not path.is_file():
            raise FileNotFoundError(
                f"{path} does not exist: evaluate the '{peer}' row first (its eval stage in "
                f"dvc.yaml, or gan2shape evaluate --pred <{peer} prediction> --out {folder})"
            )
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise InputError(f"{path} is not valid JSON ({exc}): delete it and rerun its evaluation") from None
        rows = data.get("rows", {}) if name == "metrics.json" else data
        if not isinstance(rows, dict) or "prediction" not in rows:
            raise InputError(f"{path} has no 'prediction' row: rerun its evaluation with --pred")
        out.append(data)
    return out[0], out[1]


def gap_closed(row: float | None, average: float | None, supervised: float | None) -> float | None:
    """(average - row) / (average - supervised); None when a value is missing or the gap is 0."""
    if row is None or average is None or supervised is None or average == supervised:
        return None
    return (average - row) / (average - supervised) + 0.0  # + 0.0: no -0.0 for the average's own row


def paired_difference(row: Mapping[str, Any], reference: Mapping[str, Any]) -> dict[str, Any]:
    """Per-head differences row - reference of two per_image.json rows ('ids', 'side', 'mad_deg').

    Returns :data:`PAIRED_KEYS`: n, mean and standard error (std / sqrt(n), None for n = 1) of the SIDE
    difference x100 and the MAD difference (degrees), and the heads where the row is lower (counts).
    Raises InputError when the two rows were not scored on the same heads.
    """
    if sorted(row["ids"]) != sorted(reference["ids"]):
        raise InputError(
            f"paired difference of rows scored on different heads ({len(row['ids'])} vs "
            f"{len(reference['ids'])} ids, e.g. {sorted(set(row['ids']) ^ set(reference['ids']))[:3]}): "
            "evaluate both on the same heads (gan2shape evaluate --limit bench.n_test)"
        )
    at = {name: i for i, name in enumerate(reference["ids"])}
    order = [at[name] for name in row["ids"]]
    out: dict[str, Any] = {"n": len(order)}
    for key, src, scale in (("side_x1e2", "side", 100.0), ("mad", "mad_deg", 1.0)):
        diff = [scale * (float(a) - float(reference[src][j])) for a, j in zip(row[src], order)]
        n = len(diff)
        mean = sum(diff) / n
        se = math.sqrt(sum((d - mean) ** 2 for d in diff) / (n - 1) / n) if n > 1 else None
        out[f"{key}_diff_mean"], out[f"{key}_diff_se"] = mean, se
        out[f"{key.split('_')[0]}_lower"] = sum(d < 0 for d in diff)
    return out


def _with_gap(rows: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    sup, avg = rows.get("supervised"), rows.get("average_gt_depth")
    out = {}
    for name, row in rows.items():
        out[name] = dict(row)
        for key, metric in (("gap_closed_side", "side_x1e2_mean"), ("gap_closed_mad", "mad_mean")):
            out[name][key] = gap_closed(row.get(metric), avg and avg.get(metric), sup and sup.get(metric))
    return out


_GAP_COLUMNS = (("gap_closed_side", "gap closed, SIDE"), ("gap_closed_mad", "gap closed, MAD"))


def peer_tables(
    eval_dir: str | Path, peers: Sequence[str], test: Mapping[int, Mapping[str, Any]], t1: dict[str, dict[str, Any]]
) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    """Table 1 with the peer rows: (rows on the Table 1 run's heads, rows on all test heads, paired rows).

    test: :func:`read_run` of the Table 1 run; t1: its :func:`table1_rows`. The first table puts the
    supervised row first and Unsup3d after the baselines (the paper's order); the second has the peers
    and the baselines of the first peer's all-heads evaluation; both carry the gap-closed keys. Paired:
    ``<peer>-vs-average_gt_depth`` and ``<peer>-vs-ours`` on the run's heads, ``<peer>-vs-average_gt_depth-all``
    on all heads. Raises InputError when a peer's table1 evaluation is not on the run's heads.
    """
    final_k = max(test)
    run_per_image = json.loads(
        (Path(eval_dir) / TABLE1_RUN / f"stage{final_k}" / "per_image.json").read_text(encoding="utf-8")
    )
    on_run: dict[str, dict[str, Any]] = {}
    on_all: dict[str, dict[str, Any]] = {}
    paired: dict[str, dict[str, Any]] = {}
    all_baselines: dict[str, dict[str, Any]] = {}
    for peer in peers:
        metrics, per_image = read_peer(eval_dir, peer, "table1")
        if sorted(per_image["prediction"]["ids"]) != sorted(run_per_image["prediction"]["ids"]):
            raise InputError(
                f"{Path(eval_dir) / peer / 'table1'} was scored on other heads than the Table 1 run "
                f"({len(per_image['prediction']['ids'])} vs {len(run_per_image['prediction']['ids'])}): "
                "evaluate the peer with --limit bench.n_test"
            )
        on_run[peer] = _summary(metrics["rows"]["prediction"])
        for ref, ref_row in (
            ("average_gt_depth", run_per_image.get("average_gt_depth")),
            ("ours", run_per_image["prediction"]),
        ):
            if ref_row is not None:
                paired[f"{peer}-vs-{ref}"] = paired_difference(per_image["prediction"], ref_row)
        metrics_all, per_image_all = read_peer(eval_dir, peer, "all")
        on_all[peer] = _summary(metrics_all["rows"]["prediction"])
        if not all_baselines:
            all_baselines = {k: _summary(v) for k, v in metrics_all["rows"].items() if k != "prediction"}
        if "average_gt_depth" in per_image_all:
            paired[f"{peer}-vs-average_gt_depth-all"] = paired_difference(
                per_image_all["prediction"], per_image_all["average_gt_depth"]
            )
    order = list(ROW_LABELS)
    first = {k: on_run[k] for k in peers if k == "supervised"}
    later = {k: on_run[k] for k in peers if k != "supervised"}
    baselines = {k: v for k, v in t1.items() if k in order and k not in ("prediction",)}
    run_rows = {k: v for k, v in t1.items() if k not in baselines}
    table_run = _with_gap({**first, **baselines, **later, **run_rows})
    baselines_all = dict(sorted(all_baselines.items(), key=lambda kv: order.index(kv[0]) if kv[0] in order else 99))
    table_all = _with_gap(
        {
            **{k: on_all[k] for k in peers if k == "supervised"},
            **baselines_all,
            **{k: on_all[k] for k in peers if k != "supervised"},
        }
    )
    return table_run, table_all, paired


def paired_markdown(paired: Mapping[str, Mapping[str, Any]]) -> str:
    """The paired differences as a markdown table (row - reference per head: mean ± standard error)."""
    lines = [
        "| Row | Reference | Heads | N | SIDE diff (x10^-2) | MAD diff (deg) | row lower, SIDE | row lower, MAD |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for name, p in paired.items():
        row, _, ref = name.partition("-vs-")
        heads = "all test heads" if ref.endswith("-all") else "Table 1 run"
        ref = ref.removesuffix("-all")
        lines.append(
            f"| {ROW_LABELS.get(row, row)} | {ROW_LABELS.get('prediction' if ref == 'ours' else ref, ref)} | "
            f"{heads} | {p['n']} | {_signed(p['side_x1e2_diff_mean'], p['side_x1e2_diff_se'], 3)} | "
            f"{_signed(p['mad_diff_mean'], p['mad_diff_se'], 2)} | {p['side_lower']} of {p['n']} | "
            f"{p['mad_lower']} of {p['n']} |"
        )
    return "\n".join(lines) + "\n"


def _signed(mean: float, se: float | None, digits: int) -> str:
    return f"{mean:+.{digits}f}" + (f" ± {se:.{digits}f}" if se is not None else "")


_CAPTION = "SIDE in units of 10^-2, MAD in degrees; mean ± std over the N test heads."


def run_tables(
    eval_dir: str | Path,
    out_dir: str | Path,
    priors: Sequence[str],
    perceptual: Sequence[str],
    default_row: tuple[str, str] | None = None,
    peers: Sequence[str] = (),
) -> dict[str, Path]:
    """Read the benchmark's evaluation folders and write the report files (module docstring).

    priors / perceptual: the Table 2 and ablation rows, in order (bench.priors, bench.perceptual);
    every one must have been evaluated. default_row: (method.perceptual, method.prior.variant): the
    ablation's first row, the default perceptual loss, is read from the Table 2 run of that prior
    (which must be in priors) unless perceptual lists the default itself. Returns ``{file name:
    path}`` of what was written.
    """
    out_dir = Path(out_dir)
    test = read_run(eval_dir, TABLE1_RUN)
    prior_runs = {variant: read_run(eval_dir, prior_run(variant)) for variant in priors}
    perceptual_runs = {name: read_run(eval_dir, perceptual_run(name)) for name in perceptual}
    tp_labels = {name: f"GAN2Shape, perceptual loss: {name}" for name in perceptual}
    if default_row is not None and default_row[0] not in perceptual:
        name, variant = default_row
        if variant not in prior_runs:
            raise ConfigError(
                "bench.priors",
                f"the perceptual ablation takes its '{name}' row (method.perceptual) from the Table 2 run of the "
                f"'{variant}' prior (method.prior.variant), but bench.priors {list(priors)} does not have it: "
                f"add '{variant}' to bench.priors or '{name}' to bench.perceptual",
            )
        perceptual_runs = {name: prior_runs[variant], **perceptual_runs}
        tp_labels = {name: f"GAN2Shape, perceptual loss: {name} (default; the Table 2 {variant} run)", **tp_labels}

    final_k = max(test)
    t1 = table1_rows(test)
    t1_labels = {f"stage{k}": f"GAN2Shape, after stage {k}" for k in test}
    t1_labels["ours"] = f"{ROW_LABELS['prediction']}, final (stage {final_k})"
    t2 = final_rows(prior_runs)
    t2_labels = {variant: f"GAN2Shape, {variant} prior" for variant in priors}
    tp = final_rows(perceptual_runs)

    t1_text = (
        "Table 1: depth of the synthetic test heads, baselines and ours (joint pre-training, then "
        f"instance runs). {_CAPTION}\n\n" + markdown_table(t1, t1_labels)
    )
    tables = {"table1": t1}
    if peers:
        t1, t1_all, paired = peer_tables(eval_dir, peers, test, t1)
        tables = {"table1": t1, "table1_all": t1_all, "table1_paired": paired}
        t1_text = (
            f"Table 1: depth of the synthetic test heads, on the {t1['ours']['n']} heads of the GAN2Shape run (joint "
            "pre-training, then instance runs); the supervised and Unsup3d rows are trained on the train heads. "
            f"{_CAPTION} Gap closed: (average GT - row) / (average GT - supervised).\n\n"
            + markdown_table(t1, t1_labels, _GAP_COLUMNS)
            + f"\nOn all {next(iter(t1_all.values()))['n']} test heads (GAN2Shape is run on the heads above only):\n\n"
            + markdown_table(t1_all, None, _GAP_COLUMNS)
            + "\nPaired differences, row - reference per head (mean ± standard error), and the heads where the row "
            "is lower:\n\n" + paired_markdown(paired)
        )
    texts = {
        "table1.md": t1_text,
        "table2.md": "Table 2: shape priors (instance runs from scratch, final stage). "
        f"{_CAPTION}\n\n" + markdown_table(t2, t2_labels),
        "perceptual.md": "Perceptual-loss ablation (instance runs from scratch, method.prior's shape prior, final "
        f"stage). {_CAPTION}\n\n" + markdown_table(tp, tp_labels),
        "stages.csv": stages_csv(test),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    written = {name: write_text_atomic(out_dir / name, text) for name, text in texts.items()}
    for table in ("table1_all", "table1_paired"):
        tables.setdefault(table, {})  # without peers: their files of an earlier call go
    for table, rows in [*tables.items(), ("table2", t2), ("perceptual", tp)]:
        folder = out_dir / "metrics" / table
        for stale in folder.glob("*.json"):  # rows of an earlier call that this one does not have
            if stale.stem not in rows:
                stale.unlink()
        for name, row in rows.items():
            written[f"metrics/{table}/{name}.json"] = write_metrics_json(folder / f"{name}.json", row)
    return written


#: the order of known rows in docs/results.md (others follow by name)
_PRIOR_ORDER = ("ellipsoid", "asymmetric", "shifted", "weaker", "flat")
_PERCEPTUAL_ORDER = ("none", "discriminator", "lpips")


def _read_rows(folder: Path) -> dict[str, dict[str, Any]]:
    rows = {}
    for path in sorted(folder.glob("*.json")):
        try:
            row = json.loads(path.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise InputError(f"{path} is not valid JSON ({exc}): rerun `gan2shape tables` (dvc repro tables)") from None
        missing = [key for key in SUMMARY_KEYS if key not in row]
        if missing:
            raise InputError(f"{path} lacks {missing}: rerun `gan2shape tables` (dvc repro tables)")
        rows[path.stem] = _summary(row)
    if not rows:
        raise InputError(f"{folder} holds no <row>.json: run the benchmark's tables stage (dvc repro tables)")
    return rows


def _ordered(rows: Mapping[str, Any], order: Sequence[str]) -> list[str]:
    return sorted(rows, key=lambda name: (order.index(name) if name in order else len(order), name))


def results_markdown(metrics_dir: str | Path, baselines_metrics: str | Path | None = None) -> str:
    """The text of docs/results.md, generated from the benchmark's metric files (nothing typed by hand).

    metrics_dir: ``results/bench/report/metrics`` as ``gan2shape tables`` writes it (``table1/``,
    ``table2/``, ``perceptual/``, one ``<row>.json`` per row). baselines_metrics: a ``metrics.json``
    of ``gan2shape evaluate`` with baseline rows (docs/baselines/metrics.json: all test heads), or None.
    Rows: Table 1 baselines in :data:`ROW_LABELS` order, then ``stage<k>`` by k, then ``ours``; Table 2 by
    prior, the ablation by perceptual-loss source. Raises InputError naming a missing or broken file.
    """
    metrics_dir = Path(metrics_dir)
    parts = [
        "# Results",
        "",
        "Generated by `gan2shape results-doc` from the metric files; do not edit by hand (a test compares it "
        "with what the command writes). Benchmark tables: `results/bench/report/metrics/` (`dvc metrics show "
        "results/bench/report/metrics`), the run recorded in `dvc.lock`; how they are made: "
        "[benchmark.md](benchmark.md). " + _CAPTION,
    ]
    if baselines_metrics is not None:
        baselines_metrics = Path(baselines_metrics)
        try:
            data = json.loads(baselines_metrics.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise InputError(f"cannot read {baselines_metrics} ({exc}): write it with `gan2shape evaluate`") from None
        rows = data.get("rows") if isinstance(data, dict) else None
        if not rows:
            raise InputError(f"{baselines_metrics} has no rows: write it with `gan2shape evaluate`")
        rows = {name: _summary(rows[name]) for name in _ordered(rows, list(ROW_LABELS))}
        parts += [
            "",
            f"## Baselines on every test head (`{baselines_metrics.as_posix()}`)",
            "",
            markdown_table(rows).rstrip("\n"),
        ]
    table1 = _read_rows(metrics_dir / "table1")
    stages = sorted(int(name[5:]) for name in table1 if name.startswith("stage") and name[5:].isdigit())
    order = [name for name in ROW_LABELS if name != "prediction"] + [f"stage{k}" for k in stages] + ["ours"]
    labels = {f"stage{k}": f"GAN2Shape, after stage {k}" for k in stages}
    labels["ours"] = f"{ROW_LABELS['prediction']}, final" + (f" (stage {stages[-1]})" if stages else "")
    table2 = _read_rows(metrics_dir / "table2")
    perceptual = _read_rows(metrics_dir / "perceptual")
    for title, rows, row_order, row_labels in (
        (
            "Table 1: projected test heads, baselines and ours (joint pre-training, then instance runs)",
            table1,
            order,
            labels,
        ),
        (
            "Table 2: shape priors (instance runs from scratch, final stage)",
            table2,
            _PRIOR_ORDER,
            {name: f"GAN2Shape, {name} prior" for name in table2},
        ),
        (
            "Perceptual-loss ablation (instance runs from scratch, final stage)",
            perceptual,
            _PERCEPTUAL_ORDER,
            {name: f"GAN2Shape, perceptual loss: {name}" for name in perceptual},
        ),
    ):
        ordered = {name: rows[name] for name in _ordered(rows, list(row_order))}
        parts += ["", f"## {title}", "", markdown_table(ordered, row_labels).rstrip("\n")]
    return "\n".join(parts) + "\n"
