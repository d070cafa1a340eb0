"""The manual stays true: docs/results.md is generated from the metric files (gan2shape results-doc), the
README names the commands .ci/run runs, and its links resolve."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from gan2shape.cli import main
from gan2shape.errors import InputError
from gan2shape.evaluate.report import results_markdown

ROOT = Path(__file__).resolve().parents[1]
METRICS = "results/bench/report/metrics"
BASELINES = "docs/baselines/metrics.json"


def test_committed_results_page_is_what_the_command_writes(monkeypatch):
    monkeypatch.chdir(ROOT)  # the page names its inputs by their paths in the repository
    assert (ROOT / "docs" / "results.md").read_text(encoding="utf-8") == results_markdown(METRICS, BASELINES), (
        "docs/results.md differs from the metric files: run `gan2shape results-doc` and commit it"
    )


def test_the_page_follows_the_metric_files(tmp_path, monkeypatch):
    shutil.copytree(ROOT / METRICS, tmp_path / "metrics")
    (tmp_path / "docs").mkdir()
    shutil.copy(ROOT / BASELINES, tmp_path / "docs" / "metrics.json")
    monkeypatch.chdir(tmp_path)
    row = tmp_path / "metrics" / "table2" / "flat.json"
    data = json.loads(row.read_text())
    data.update(side_x1e2_mean=0.123456, side_x1e2_std=0.5, mad_mean=12.345, mad_std=1.0, n=7)
    row.write_text(json.dumps(data))
    (tmp_path / "metrics" / "table1" / "stage2.json").write_text(
        (tmp_path / "metrics" / "table1" / "stage1.json").read_text()
    )
    result = CliRunner().invoke(
        main, ["results-doc", "--metrics", "metrics", "--baselines", "docs/metrics.json", "--out", "out/results.md"]
    )
    assert result.exit_code == 0, result.output
    text = (tmp_path / "out" / "results.md").read_text()
    assert "| GAN2Shape, flat prior | 7 | 0.123 ± 0.500 | 12.35 ± 1.00 |" in text
    table1 = text.split("## Table 1")[1].split("## Table 2")[0]
    names = [
        line.split("|")[1].strip() for line in table1.splitlines() if line.startswith("| ") and "Method" not in line
    ]
    assert names == [
        "Constant null depth",
        "Average GT depth",
        "Ellipsoid prior",
        "GAN2Shape, after stage 1",
        "GAN2Shape, after stage 2",
        "GAN2Shape (ours), final (stage 2)",
    ]
    # a broken or missing metric file is named
    row.write_text("{")
    with pytest.raises(InputError, match="flat.json is not valid JSON"):
        results_markdown("metrics", None)
    shutil.rmtree(tmp_path / "metrics" / "perceptual")
    row.write_text(json.dumps(data))
    with pytest.raises(InputError, match="perceptual holds no"):
        results_markdown("metrics", None)


def test_readme_is_short_and_names_the_commands_ci_runs():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 150
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    for marker in ("# --- README: set-up ---", "# --- README: tests ---"):
        command = ci[ci.index(marker) + 1]
        assert f"\n{command}\n" in readme, f"README lacks .ci/run's command {command!r}"


def test_links_of_the_manual_resolve():
    for page in [
        ROOT / "README.md",
        *sorted((ROOT / "docs").glob("*.md")),
        *sorted(ROOT.glob("experiments/*/README.md")),
    ]:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text(encoding="utf-8")):
            if "://" not in target:
                assert (page.parent / target).exists(), f"{page.relative_to(ROOT)} links to a missing {target}"
