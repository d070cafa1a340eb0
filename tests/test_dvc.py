"""The benchmark pipeline (dvc.yaml) and its CPU variant (bench-small/dvc.yaml).

Checks: the bench section of params.yaml validates (and bad values fail with their key);
bench-small/dvc.yaml is what bench-small/generate.py makes of dvc.yaml (every stage, with the small
variant's paths, params and options); the small variant's overrides give consistent settings
(enough heads, one image size, its own generator); every params key a stage names exists; and, end
to end, `dvc repro bench-small/dvc.yaml` in a fresh copy of the repository writes Table 1, Table 2
and the ablation with the configured rows, the configured head counts and finite numbers, a stage
count matching the profile, identical rows for the one configuration that two runs share, and
leaves the pipeline up to date.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from gan2shape.config import ConfigError, load_params

ROOT = Path(__file__).resolve().parents[1]
SMALL_DVC = "bench-small/dvc.yaml"
HAS_DVC = importlib.util.find_spec("dvc") is not None


def _small_params():
    params, _ = load_params(ROOT / "params.yaml")
    small = params.bench.small
    effective, _ = load_params(ROOT / "params.yaml", small.options.get("set", ()))
    return params, small, effective


def test_bench_section_validates() -> None:
    params, _ = load_params(ROOT / "params.yaml")
    for variant in (params.bench, params.bench.small):
        assert variant.profile in params.method.profiles and variant.joint_profile in params.method.profiles
    assert params.bench.variant(True) is params.bench.small and params.bench.variant(False) is params.bench
    for override, key in (
        ("bench.n_prior=51", "bench.n_prior"),
        ("bench.priors=[round]", "bench.priors"),
        ("bench.perceptual=[none, none]", "bench.perceptual"),
        ("bench.n_test=0", "bench.n_test"),
        ("bench.small.options={args: [x]}", "bench.small.options.args"),
        ("bench.small.options={set: [heads.n_test]}", "bench.small.options.set"),
        ("bench.device=gpu", "bench.device"),
    ):
        with pytest.raises(ConfigError) as err:
            load_params(ROOT / "params.yaml", [override])
        assert err.value.key == key, override


def _generator():
    spec = importlib.util.spec_from_file_location("bench_small_generate", ROOT / "bench-small" / "generate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_small_variant_is_generated_from_dvc_yaml() -> None:
    gen = _generator()
    assert (ROOT / SMALL_DVC).read_text() == gen.generate((ROOT / "dvc.yaml").read_text()), (
        "bench-small/dvc.yaml is out of date: run `python bench-small/generate.py`"
    )
    full = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    small = yaml.safe_load((ROOT / SMALL_DVC).read_text())["stages"]
    assert list(small) == list(full)  # the same chain, stage for stage
    text = (ROOT / SMALL_DVC).read_text()
    assert "results/bench/" not in text and "data/stylegan2" not in text and "${method.checkpoint}" not in text
    for name, stage in small.items():
        body = stage.get("do", stage)
        assert body["wdir"] == ".." and body["params"][0] == "bench.small.options", name
        commands = body["cmd"] if isinstance(body["cmd"], list) else [body["cmd"]]
        for cmd in commands:
            for call in cmd.split("gan2shape -q ")[1:]:
                if call.split()[0] != "export-gan":  # converts a checkpoint: reads no config
                    assert call.split()[1] == "${bench.small.options}", (name, call)
    # an edit of dvc.yaml reaches the small variant (and the check says how to fix a stale file)
    edited = gen.generate((ROOT / "dvc.yaml").read_text().replace("--peer unsup3d", "--peer unsup3d --peer x"))
    assert "--peer unsup3d --peer x" in edited and edited != text


def test_small_variant_is_consistent() -> None:
    _, small, eff = _small_params()
    assert eff.heads.n_test >= max(small.n_test, small.n_prior) and eff.heads.n_train >= small.n_joint
    assert eff.heads.image_size == eff.gan.size == eff.method.image_size
    assert eff.method.f1_d <= eff.gan.n_mlp
    # the small variant reconstructs with the generator its own gan stage writes
    gan_outs = [
        next(iter(o)) if isinstance(o, dict) else o
        for o in yaml.safe_load((ROOT / SMALL_DVC).read_text())["stages"]["gan"]["outs"]
    ]
    assert eff.method.checkpoint in gan_outs


@pytest.mark.parametrize("dvc_file", ["dvc.yaml", SMALL_DVC])
def test_stage_params_exist(dvc_file: str) -> None:
    tree = yaml.safe_load((ROOT / "params.yaml").read_text())
    stages = yaml.safe_load((ROOT / dvc_file).read_text())["stages"]
    for name, stage in stages.items():
        for key in stage.get("do", stage).get("params", []):
            node = tree
            for part in key.split("."):
                assert isinstance(node, dict) and part in node, f"{dvc_file}: stage {name} names params key {key}"
                node = node[part]


def _copy_repo(dest: Path) -> None:
    for name in (
        "params.yaml",
        "dvc.yaml",
        SMALL_DVC,
        ".dvcignore",
        ".gitignore",
        ".dvc/config",
        ".dvc/.gitignore",
        "scripts/dvc_parallel.py",
    ):
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, dest / name)
    shutil.copytree(ROOT / "gan2shape", dest / "gan2shape", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))


@pytest.mark.skipif(not HAS_DVC, reason="dvc is not installed")
def test_the_shipped_generator_is_up_to_date_for_dvc(tmp_path: Path) -> None:
    """The frozen gan stage's output, data/stylegan2_heads64.pt, has a dvc.lock entry with its hash, so that
    `dvc status` in a clone does not list it as modified (it did without an entry)."""
    import hashlib

    shipped = ROOT / "data" / "stylegan2_heads64.pt"
    (out,) = yaml.safe_load((ROOT / "dvc.lock").read_text())["stages"]["gan"]["outs"]
    assert out["path"] == "data/stylegan2_heads64.pt" and out["size"] == shipped.stat().st_size
    assert out["md5"] == hashlib.md5(shipped.read_bytes()).hexdigest()
    repo, _, dvc = _small_repo(tmp_path)
    for name in ("dvc.lock", "data/stylegan2_heads64.pt"):
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, repo / name)
    assert "up to date" in dvc("status", "gan")


def _finite_row(row: dict, n: int) -> None:
    assert row["n"] == n
    for key in ("side_x1e2_mean", "side_x1e2_std", "mad_mean", "mad_std"):
        assert isinstance(row[key], float) and math.isfinite(row[key]), (key, row)


def _small_repo(tmp_path: Path):
    """A fresh copy of the pipeline in tmp_path/repo and a `dvc ARGS...` runner there (asserts exit 0)."""
    repo = tmp_path / "repo"
    _copy_repo(repo)
    # `gan2shape` runs this interpreter on the copied code, installed or not
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "gan2shape").write_text(f'#!/bin/sh\nexec "{sys.executable}" -m gan2shape.cli "$@"\n')
    (bin_dir / "gan2shape").chmod(0o755)
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONPATH": str(repo),
        "PYTHONDONTWRITEBYTECODE": "1",
        "DVC_NO_ANALYTICS": "1",
    }
    if shutil.which("git"):
        subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    else:
        (repo / ".dvc" / "config.local").write_text("[core]\n    no_scm = true\n")

    def dvc(*args: str) -> str:
        proc = subprocess.run(
            [sys.executable, "-m", "dvc", *args], cwd=repo, env=env, capture_output=True, text=True, timeout=1800
        )
        assert proc.returncode == 0, f"dvc {' '.join(args)} failed:\n{proc.stdout[-6000:]}\n{proc.stderr[-6000:]}"
        return proc.stdout

    return repo, env, dvc


def _shown_metrics(dvc) -> dict:
    """{table: {row: metrics}} from `dvc metrics show` of the small variant's report."""
    shown = json.loads(dvc("metrics", "show", "--json", "results/bench-small/report/metrics"))
    metrics: dict = {}
    for path, entry in shown[""]["data"].items():
        assert "data" in entry, (path, entry)
        metrics.setdefault(Path(path).parent.name, {})[Path(path).stem] = entry["data"]
    return metrics


@pytest.mark.slow
@pytest.mark.skipif(not HAS_DVC, reason="dvc is not installed (pip install -e '.[workflow]')")
def test_dvc_repro_small(tmp_path: Path) -> None:
    params, small, _ = _small_params()
    repo, env, dvc = _small_repo(tmp_path)
    dvc("repro", SMALL_DVC)

    report = repo / "results" / "bench-small" / "report"
    metrics = _shown_metrics(dvc)

    stages = params.method.profiles[small.profile].stages
    t1 = metrics["table1"]
    peers = ["supervised", "unsup3d"]
    assert sorted(t1) == sorted(
        [*params.evaluate.baselines, *peers, *(f"stage{k}" for k in range(1, stages + 1)), "ours"]
    )
    for row in t1.values():
        _finite_row(row, small.n_test)
    assert t1["supervised"]["gap_closed_side"] == 1.0 and t1["average_gt_depth"]["gap_closed_mad"] == 0.0
    assert t1["ours"] == t1[f"stage{stages}"]
    n_heads = int(next(o for o in small.options["set"] if o.startswith("heads.n_test=")).split("=")[1])
    assert sorted(metrics["table1_all"]) == sorted([*params.evaluate.baselines, *peers])
    for row in metrics["table1_all"].values():
        _finite_row(row, n_heads)
    paired = metrics["table1_paired"]
    assert sorted(paired) == sorted(
        f"{p}-vs-{r}" for p in peers for r in ("average_gt_depth", "ours", "average_gt_depth-all")
    )
    assert {p["n"] for name, p in paired.items() if not name.endswith("-all")} == {small.n_test}
    assert sorted(metrics["table2"]) == sorted(small.priors)
    # the ablation: its own runs, plus the default perceptual loss's row, which is the Table 2 run of the
    # default prior (the same configuration; test_tables checks that it is read from there)
    assert sorted(metrics["perceptual"]) == sorted({params.method.perceptual, *small.perceptual})
    for row in [*metrics["table2"].values(), *metrics["perceptual"].values()]:
        _finite_row(row, small.n_prior)

    md1 = (report / "table1.md").read_text().split("\n\n")[1].splitlines()  # the table of the run's heads
    assert len(md1) == 2 + len(t1) and md1[-1].startswith("| GAN2Shape (ours), final")
    assert md1[2].startswith("| Supervised (GT depth)")
    assert len((report / "table2.md").read_text().splitlines()) == 4 + len(small.priors)
    with open(report / "stages.csv", newline="") as f:
        assert [int(r["stage"]) for r in csv.DictReader(f)] == list(range(1, stages + 1))

    assert "up to date" in dvc("status", SMALL_DVC)
    # the full pipeline resolves against params.yaml (templating, foreach rows) without running
    listed = dvc("stage", "list", "dvc.yaml", "--name-only").split()
    assert {"heads", "gan", "joint", "test", "tables"} <= set(listed)
    assert {f"prior@{v}" for v in params.bench.priors} <= set(listed)
    assert {f"eval_perceptual@{p}" for p in params.bench.perceptual} <= set(listed)


@pytest.mark.slow
@pytest.mark.skipif(not HAS_DVC, reason="dvc is not installed (pip install -e '.[workflow]')")
def test_dvc_parallel_small(tmp_path: Path) -> None:
    """scripts/dvc_parallel.py (the GPU benchmark's runner): the same pipeline with stages side by side,
    each recorded in dvc.lock, so that DVC then finds it up to date; a rerun redoes only what is missing."""
    params, small, _ = _small_params()
    repo, env, dvc = _small_repo(tmp_path)

    def parallel(*args: str) -> str:
        proc = subprocess.run(
            [
                sys.executable,
                str(repo / "scripts" / "dvc_parallel.py"),
                "--slots",
                "2",
                "--weight",
                "eval*=0",
                *args,
                SMALL_DVC,
            ],
            cwd=repo,
            env=env,
            capture_output=True,
            text=True,
            timeout=1800,
        )
        assert proc.returncode == 0, f"dvc_parallel failed:\n{proc.stdout[-6000:]}\n{proc.stderr[-6000:]}"
        return proc.stdout

    n_stages = len(dvc("stage", "list", SMALL_DVC, "--name-only").split())
    out = parallel()
    assert f"all {n_stages} stages done" in out
    starts = [line.split()[-1] for line in out.splitlines() if "] start" in line]
    assert starts.index("heads") < starts.index("gan") < starts.index("project_train") < starts.index("joint")
    assert starts.index("joint") < starts.index("test") and starts[-1] == "tables"
    assert "up to date" in dvc("status", SMALL_DVC)
    assert "Running stage" not in dvc("repro", SMALL_DVC)  # nothing left for DVC to do
    metrics = _shown_metrics(dvc)
    assert sorted(metrics["table2"]) == sorted(small.priors)
    for row in [*metrics["table2"].values(), *metrics["perceptual"].values()]:
        _finite_row(row, small.n_prior)
    # Resume: a lost run folder reruns that run, its evaluation and the tables, nothing else, and
    # (same seed, CPU) gives the same numbers.
    prior = small.priors[-1]
    shutil.rmtree(repo / "results" / "bench-small" / "runs" / f"prior-{prior}")
    out = parallel()
    assert f"3 of {n_stages} stages to run: prior@{prior}, eval_prior@{prior}, tables" in out
    assert _shown_metrics(dvc) == metrics
    assert "up to date" in dvc("status", SMALL_DVC)
    assert "every stage is up to date" in parallel()
    # --only, the continuation on a second machine: with the Table 1 run and a prior run lost, just the
    # matching stages run; the Table 1 run is left as it is (not rerun, though DVC calls it changed).
    runs = repo / "results" / "bench-small" / "runs"
    shutil.rmtree(runs / "test")
    shutil.rmtree(runs / f"prior-{prior}")
    out = parallel("--only", "prior@*", "--only", "eval_prior@*", "--only", "tables")
    assert f"3 of {n_stages} stages to run: prior@{prior}, eval_prior@{prior}, tables" in out
    assert not (runs / "test").exists() and _shown_metrics(dvc) == metrics
