"""The benchmark report (gan2shape.evaluate.report, ``gan2shape tables``) from known metrics files.

Checks: Table 1 has the baselines (in their canonical order), one row per stage and the final row,
with the numbers of the input files; Table 2 and the ablation follow the requested order and take
each run's final stage (stage10 after stage2); the markdown rounds SIDE to 3 and MAD to 2 decimals
and omits an undefined std; stages.csv lists the Table 1 run per stage; missing or incomplete
evaluations fail with the folder's name; the CLI picks bench or bench.small rows.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from gan2shape.cli import main
from gan2shape.errors import InputError
from gan2shape.evaluate.report import perceptual_run, prior_run, read_peer, read_run, run_tables, table1_rows
from gan2shape.evaluate.tables import markdown_table, write_metrics_json

ROOT = Path(__file__).resolve().parents[1]


def _row(n: int, side: float, side_std: float | None, mad: float, mad_std: float | None) -> dict:
    return {"n": n, "side_x1e2_mean": side, "side_x1e2_std": side_std, "mad_mean": mad, "mad_std": mad_std}


BASELINES = {
    "ellipsoid_prior": _row(3, 2.5, 0.25, 40.0, 4.0),
    "average_gt_depth": _row(3, 1.25, 0.125, 30.0, 3.0),
    "null_depth": _row(3, 1.5, 0.5, 35.0, 5.0),
}


def _write(eval_dir: Path, run: str, stage: int, prediction: dict, baselines: bool = True) -> None:
    rows = dict(BASELINES) if baselines else {}
    rows["prediction"] = prediction
    write_metrics_json(eval_dir / run / f"stage{stage}" / "metrics.json", {"rows": rows, "erode_pixels": 1})


def _metrics(out: Path, table: str) -> dict[str, dict]:
    """The metrics files of one table: {row: content}."""
    return {p.stem: json.loads(p.read_text()) for p in (out / "metrics" / table).glob("*.json")}


@pytest.fixture
def eval_dir(tmp_path: Path) -> Path:
    d = tmp_path / "eval"
    _write(d, "test", 1, _row(3, 1.23456, 0.1, 12.3456, 1.0))
    _write(d, "test", 2, _row(3, 0.98765, 0.05, 10.005, 0.5))
    (d / "test" / "stage0").mkdir()  # no metrics at stage 0 (the prior has no reconstruction)
    _write(d, prior_run("ellipsoid"), 1, _row(2, 1.0, 0.1, 11.0, 1.0))
    _write(d, prior_run("flat"), 2, _row(2, 9.0, 0.9, 99.0, 9.0))
    _write(d, prior_run("flat"), 10, _row(2, 3.0, None, 33.0, None))
    _write(d, perceptual_run("discriminator"), 1, _row(2, 1.0, 0.1, 11.0, 1.0))
    _write(d, perceptual_run("none"), 1, _row(2, 1.5, 0.2, 15.0, 2.0))
    return d


def test_table1_rows_order_and_values(eval_dir: Path) -> None:
    stages = read_run(eval_dir, "test")
    assert list(stages) == [1, 2]
    rows = table1_rows(stages)
    assert list(rows) == ["null_depth", "average_gt_depth", "ellipsoid_prior", "stage1", "stage2", "ours"]
    assert rows["null_depth"] == BASELINES["null_depth"]
    assert rows["stage1"]["side_x1e2_mean"] == 1.23456
    assert rows["ours"] == rows["stage2"] == _row(3, 0.98765, 0.05, 10.005, 0.5)


def test_run_tables_files(eval_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "report"
    written = run_tables(eval_dir, out, priors=["flat", "ellipsoid"], perceptual=["none", "discriminator"])
    t1_rows = ["null_depth", "average_gt_depth", "ellipsoid_prior", "stage1", "stage2", "ours"]
    assert sorted(written) == sorted(
        ["table1.md", "table2.md", "perceptual.md", "stages.csv"]
        + [f"metrics/table1/{r}.json" for r in t1_rows]
        + [
            "metrics/table2/flat.json",
            "metrics/table2/ellipsoid.json",
            "metrics/perceptual/none.json",
            "metrics/perceptual/discriminator.json",
        ]
    )
    assert _metrics(out, "table1") == {r: table1_rows(read_run(eval_dir, "test"))[r] for r in t1_rows}
    assert _metrics(out, "table1")["ours"]["mad_mean"] == 10.005

    md1 = (out / "table1.md").read_text().splitlines()
    assert md1[2] == "| Method | N | SIDE (x10^-2) | MAD (deg) |"
    assert md1[4] == "| Constant null depth | 3 | 1.500 ± 0.500 | 35.00 ± 5.00 |"
    assert "| GAN2Shape, after stage 1 | 3 | 1.235 ± 0.100 | 12.35 ± 1.00 |" in md1
    assert md1[-1] == "| GAN2Shape (ours), final (stage 2) | 3 | 0.988 ± 0.050 | 10.01 ± 0.50 |"
    assert len(md1) == 4 + 6  # caption, blank, header, rule, six rows

    # Table 2: requested order; the final stage is stage10 (numeric, not text order); no std at n/a
    t2 = _metrics(out, "table2")
    assert t2["flat"] == _row(2, 3.0, None, 33.0, None) and t2["ellipsoid"]["mad_mean"] == 11.0
    md2 = (out / "table2.md").read_text().splitlines()
    assert md2[4:] == [
        "| GAN2Shape, flat prior | 2 | 3.000 | 33.00 |",
        "| GAN2Shape, ellipsoid prior | 2 | 1.000 ± 0.100 | 11.00 ± 1.00 |",
    ]

    tp = _metrics(out, "perceptual")
    assert sorted(tp) == ["discriminator", "none"] and tp["none"]["side_x1e2_mean"] == 1.5
    assert (out / "perceptual.md").read_text().splitlines()[4].startswith("| GAN2Shape, perceptual loss: none |")

    # a second call with fewer rows leaves no metrics file of the first one behind
    run_tables(eval_dir, out, priors=["ellipsoid"], perceptual=["none"])
    assert sorted(_metrics(out, "table2")) == ["ellipsoid"] and sorted(_metrics(out, "perceptual")) == ["none"]

    with open(out / "stages.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert [r["stage"] for r in table] == ["1", "2"]
    assert float(table[0]["side_x1e2_mean"]) == pytest.approx(1.23456)
    assert float(table[1]["mad_std"]) == 0.5 and table[1]["n"] == "3"


def test_default_perceptual_row_from_the_prior_run(eval_dir: Path, tmp_path: Path) -> None:
    """The ablation's default row is the Table 2 run of the default prior (no separate run), first;
    listed in perceptual, the default's own run is used instead; neither present is an error."""
    out = tmp_path / "report"
    run_tables(
        eval_dir, out, priors=["flat", "ellipsoid"], perceptual=["none"], default_row=("discriminator", "ellipsoid")
    )
    tp = _metrics(out, "perceptual")
    assert tp == {"discriminator": _metrics(out, "table2")["ellipsoid"], "none": _row(2, 1.5, 0.2, 15.0, 2.0)}
    md = (out / "perceptual.md").read_text().splitlines()
    assert md[4].startswith("| GAN2Shape, perceptual loss: discriminator (default; the Table 2 ellipsoid run) |")
    assert md[5].startswith("| GAN2Shape, perceptual loss: none |")
    _write(eval_dir, perceptual_run("discriminator"), 1, _row(2, 7.0, 0.1, 77.0, 1.0))
    run_tables(
        eval_dir,
        out,
        priors=["ellipsoid"],
        perceptual=["none", "discriminator"],
        default_row=("discriminator", "ellipsoid"),
    )
    assert _metrics(out, "perceptual")["discriminator"]["mad_mean"] == 77.0
    with pytest.raises(ValueError, match="bench.priors.*'flat'"):
        run_tables(eval_dir, out, priors=["ellipsoid"], perceptual=["none"], default_row=("discriminator", "flat"))


def test_missing_or_incomplete_runs(eval_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="prior-weaker"):
        run_tables(eval_dir, tmp_path / "r", priors=["weaker"], perceptual=["none"])
    _write(eval_dir, perceptual_run("lpips"), 1, _row(2, 1.0, 0.1, 1.0, 0.1))
    path = eval_dir / perceptual_run("lpips") / "stage1" / "metrics.json"
    data = json.loads(path.read_text())
    del data["rows"]["prediction"]  # evaluated without --pred
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="no 'prediction' row"):
        read_run(eval_dir, perceptual_run("lpips"))


def test_markdown_labels_override() -> None:
    rows = {"null_depth": _row(1, 1.0, None, 2.0, None), "x": _row(1, 1.0, None, 2.0, None)}
    text = markdown_table(rows, {"x": "Row X"})
    assert "| Constant null depth | 1 | 1.000 | 2.00 |" in text and "| Row X | 1 | 1.000 | 2.00 |" in text


def test_cli_tables_full_and_small(eval_dir: Path, tmp_path: Path) -> None:
    params = ROOT / "params.yaml"
    result = CliRunner().invoke(
        main,
        [
            "tables",
            "--params",
            str(params),
            "--set",
            "bench.priors=[ellipsoid, flat]",
            "--set",
            "bench.perceptual=[discriminator]",
            "--eval",
            str(eval_dir),
            "--out",
            str(tmp_path / "full"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert sorted(_metrics(tmp_path / "full", "table2")) == ["ellipsoid", "flat"]
    assert "Table 1" in result.output and "GAN2Shape, flat prior" in result.output

    result = CliRunner().invoke(
        main,
        [
            "tables",
            "--params",
            str(params),
            "--small",
            "--set",
            "bench.small.priors=[flat, ellipsoid]",
            "--set",
            "bench.small.perceptual=[none]",
            "--set",
            "method.perceptual=discriminator",
            "--eval",
            str(eval_dir),
            "--out",
            str(tmp_path / "small"),
        ],
    )
    assert result.exit_code == 0, result.output
    small = _metrics(tmp_path / "small", "perceptual")
    assert sorted(small) == ["discriminator", "none"]  # method.perceptual's row: the ellipsoid (default) prior run
    assert small["discriminator"] == _metrics(tmp_path / "small", "table2")["ellipsoid"]

    # neither list makes the default perceptual row: one clear message naming both keys, nothing written
    result = CliRunner().invoke(
        main,
        [
            "tables",
            "--params",
            str(params),
            "--small",
            "--set",
            "bench.small.priors=[flat]",
            "--set",
            "bench.small.perceptual=[none]",
            "--set",
            "method.perceptual=discriminator",
            "--eval",
            str(eval_dir),
            "--out",
            str(tmp_path / "bad"),
        ],
    )
    assert result.exit_code == 2 and "bench.priors" in result.output and "method.prior.variant" in result.output
    assert not (tmp_path / "bad").exists()

    # the full benchmark's priors include ones not evaluated here: one clear line, exit 1
    result = CliRunner().invoke(
        main, ["tables", "--params", str(params), "--eval", str(eval_dir), "--out", str(tmp_path / "x")]
    )
    assert result.exit_code == 1 and "prior-asymmetric" in result.output


def _per_image(rows: dict[str, tuple[list[str], list[float], list[float]]]) -> dict:
    return {
        name: {"ids": ids, "side": sides, "mad_deg": mads, "relief_ratio": [1.0] * len(ids)}
        for name, (ids, sides, mads) in rows.items()
    }


def _write_eval(folder: Path, rows: dict, per_image: dict) -> None:
    write_metrics_json(folder / "metrics.json", {"rows": rows, "erode_pixels": 1})
    write_metrics_json(folder / "per_image.json", per_image)


@pytest.fixture
def peer_eval_dir(tmp_path: Path) -> Path:
    """The Table 1 run on heads a, b; the peers on them (in the other order) and on all heads a, b, c."""
    d = tmp_path / "eval"
    avg = (["a", "b"], [0.012, 0.013], [29.0, 31.0])
    _write_eval(
        d / "test" / "stage1",
        {**BASELINES, "prediction": _row(2, 1.0, 0.1, 20.0, 1.0)},
        _per_image({"average_gt_depth": avg, "prediction": (["a", "b"], [0.010, 0.010], [20.0, 20.0])}),
    )
    for peer, row, sides, mads in (
        ("supervised", _row(2, 0.5, 0.05, 10.0, 1.0), [0.005, 0.006], [10.0, 11.0]),
        ("unsup3d", _row(2, 1.0, 0.1, 25.0, 2.0), [0.011, 0.009], [26.0, 24.0]),
    ):
        _write_eval(
            d / peer / "table1",
            {**BASELINES, "prediction": row},
            _per_image(
                {"average_gt_depth": (["b", "a"], avg[1][::-1], avg[2][::-1]), "prediction": (["b", "a"], sides, mads)}
            ),
        )
        all_rows = {k: {**v, "n": 3} for k, v in {**BASELINES, "prediction": row}.items()}
        _write_eval(
            d / peer / "all",
            all_rows,
            _per_image(
                {
                    "average_gt_depth": (["a", "b", "c"], [0.012, 0.013, 0.010], [29.0, 31.0, 30.0]),
                    "prediction": (["a", "b", "c"], [0.012, 0.011, 0.010], [20.0, 31.0, 30.0]),
                }
            ),
        )
    return d


def test_table1_with_peers_gap_closed_and_paired(peer_eval_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "report"
    run_tables(peer_eval_dir, out, priors=[], perceptual=[], peers=["supervised", "unsup3d"])
    t1 = _metrics(out, "table1")
    assert list(json.loads((out / "metrics" / "table1" / "supervised.json").read_text())) == sorted(
        ["n", "side_x1e2_mean", "side_x1e2_std", "mad_mean", "mad_std", "gap_closed_side", "gap_closed_mad"]
    )
    # gap closed = (average - row) / (average - supervised): average 1.25 / 30, supervised 0.5 / 10
    assert t1["supervised"]["gap_closed_side"] == 1.0 and t1["average_gt_depth"]["gap_closed_mad"] == 0.0
    assert t1["ours"]["gap_closed_side"] == pytest.approx(0.25 / 0.75)
    assert t1["ours"]["gap_closed_mad"] == pytest.approx(0.5)
    assert t1["unsup3d"]["gap_closed_mad"] == pytest.approx(0.25)
    assert t1["null_depth"]["gap_closed_side"] == pytest.approx(-0.25 / 0.75)
    assert sorted(_metrics(out, "table1_all")) == sorted([*BASELINES, "supervised", "unsup3d"])
    paired = _metrics(out, "table1_paired")
    assert sorted(paired) == sorted(
        f"{p}-vs-{r}" for p in ("supervised", "unsup3d") for r in ("average_gt_depth", "ours", "average_gt_depth-all")
    )
    # supervised - average GT, matched by id: b 0.005 - 0.013, a 0.006 - 0.012 -> x100: -0.8, -0.6
    p = paired["supervised-vs-average_gt_depth"]
    assert p["n"] == 2 and p["side_x1e2_diff_mean"] == pytest.approx(-0.7)
    assert p["side_x1e2_diff_se"] == pytest.approx(0.1) and p["side_lower"] == 2
    assert p["mad_diff_mean"] == pytest.approx(-19.5) and p["mad_lower"] == 2
    q = paired["unsup3d-vs-average_gt_depth-all"]
    assert q["n"] == 3 and q["side_x1e2_diff_mean"] == pytest.approx(-0.2 / 3) and q["side_lower"] == 1
    text = (out / "table1.md").read_text()
    assert "| Supervised (GT depth) | 2 | 0.500 ± 0.050 | 10.00 ± 1.00 | 1.00 | 1.00 |" in text
    assert "| Unsup3d | Average GT depth | Table 1 run | 2 |" in text
    lines = [line for line in text.splitlines() if line.startswith("| ")]
    assert [line.split(" | ")[0] for line in lines[1:9]] == [
        "| Supervised (GT depth)",
        "| Constant null depth",
        "| Average GT depth",
        "| Ellipsoid prior",
        "| Unsup3d",
        "| GAN2Shape, after stage 1",
        "| GAN2Shape (ours), final (stage 1)",
        "| Method",
    ]
    # without peers again: the peer-only metrics go
    run_tables(peer_eval_dir, out, priors=[], perceptual=[])
    assert not list((out / "metrics" / "table1_all").glob("*.json"))
    assert "gap_closed_side" not in _metrics(out, "table1")["ours"]


def test_peers_on_other_heads_are_refused(peer_eval_dir: Path, tmp_path: Path) -> None:
    folder = peer_eval_dir / "unsup3d" / "table1"
    per_image = json.loads((folder / "per_image.json").read_text())
    per_image["prediction"]["ids"] = ["a", "c"]
    write_metrics_json(folder / "per_image.json", per_image)
    with pytest.raises(InputError, match="other heads than the Table 1 run"):
        run_tables(peer_eval_dir, tmp_path / "r", priors=[], perceptual=[], peers=["supervised", "unsup3d"])
    with pytest.raises(FileNotFoundError, match="evaluate the 'nothing' row first"):
        read_peer(peer_eval_dir, "nothing", "all")
