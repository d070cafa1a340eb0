"""The click CLI: parameter validation reaches the user as a clear usage error."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from gan2shape.cli import main

ROOT = Path(__file__).resolve().parents[1]


def test_check_params_prints_effective_config():
    result = CliRunner().invoke(
        main, ["check-params", "--params", str(ROOT / "params.yaml"), "--set", "heads.n_test=7"]
    )
    assert result.exit_code == 0, result.output
    assert "n_test: 7" in result.output


def test_unknown_key_fails_with_its_name():
    result = CliRunner().invoke(main, ["check-params", "--params", str(ROOT / "params.yaml"), "--set", "heads.sede=1"])
    assert result.exit_code == 2
    assert "heads.sede" in result.output and "did you mean 'seed'" in result.output


def test_missing_params_file():
    result = CliRunner().invoke(main, ["check-params", "--params", "/nonexistent/params.yaml"])
    assert result.exit_code == 2 and "does not exist" in result.output


def test_missing_checkpoint_and_bad_artifact_fail_with_one_clear_line(tmp_path):
    runner = CliRunner()
    result = runner.invoke(
        main,
        [
            "sample-instances",
            "--params",
            str(ROOT / "params.yaml"),
            "--n",
            "1",
            "--set",
            f"method.checkpoint={tmp_path / 'nope.pt'}",
            "--out",
            str(tmp_path / "i.h5"),
            "--device",
            "cpu",
        ],
    )
    assert result.exit_code == 1 and "nope.pt" in result.output and "Traceback" not in result.output
    junk = tmp_path / "junk.h5"
    junk.write_text("not hdf5")
    result = runner.invoke(
        main, ["evaluate", "--params", str(ROOT / "params.yaml"), "--test", str(junk), "--out", str(tmp_path / "ev")]
    )
    assert result.exit_code == 1 and "junk.h5" in result.output and "cannot be opened as HDF5" in result.output
    assert not (tmp_path / "ev" / "metrics.json").exists()


def test_train_gan_init_of_another_architecture_fails_with_one_clear_line(tmp_path):
    runner = CliRunner()
    params = ["--params", str(ROOT / "params.yaml")]
    made = runner.invoke(
        main,
        [
            "make-heads",
            *params,
            "--out",
            str(tmp_path / "heads"),
            "--set",
            "heads.n_train=4",
            "--set",
            "heads.n_test=1",
            "--set",
            "heads.batch_size=4",
        ],
    )
    assert made.exit_code == 0, made.output
    result = runner.invoke(
        main,
        [
            "train-gan",
            *params,
            "--data",
            str(tmp_path / "heads" / "train.h5"),
            "--out",
            str(tmp_path / "gan"),
            "--init",
            str(ROOT / "data" / "stylegan2_heads64.pt"),
            "--set",
            "gan.channel_max=64",
            "--device",
            "cpu",
        ],
    )
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "cannot warm-start" in result.output and "channel_max: file 128 vs config 64" in result.output
    assert not (tmp_path / "gan" / "checkpoint.pt").exists()


def _gan2shape(*args: str) -> subprocess.CompletedProcess:
    """The CLI in its own process (--log redirects the process's own stdout and stderr)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run(
        [sys.executable, "-m", "gan2shape.cli", *args], capture_output=True, text=True, env=env, timeout=300
    )


def test_log_sends_everything_to_the_file_and_one_line_per_phase_to_the_terminal(tmp_path):
    log = tmp_path / "logs" / "make_heads.log"
    res = _gan2shape(
        "-q",
        "--log",
        str(log),
        "make-heads",
        "--params",
        str(ROOT / "params.yaml"),
        "--out",
        str(tmp_path / "heads"),
        "--set",
        "heads.n_train=4",
        "--set",
        "heads.n_test=2",
        "--set",
        "heads.image_size=16",
        "--set",
        "heads.batch_size=4",
        "--device",
        "cpu",
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout == ""
    assert res.stderr.splitlines()[0] == "gan2shape make-heads: heads train: 4 img"
    assert "gan2shape make-heads: heads test: done, 2 img in " in res.stderr
    text = log.read_text()
    assert "gan2shape.progress INFO: heads train: 4 img" in text and '"n_train": 4' in text  # phases and output


def test_log_shows_an_error_on_the_terminal_and_in_the_log(tmp_path):
    log = tmp_path / "evaluate.log"
    res = _gan2shape(
        "-q",
        "--log",
        str(log),
        "evaluate",
        "--params",
        str(ROOT / "params.yaml"),
        "--test",
        str(tmp_path / "nope.h5"),
        "--out",
        str(tmp_path / "ev"),
    )
    assert res.returncode == 1 and res.stdout == ""
    assert res.stderr.strip() == (
        f"gan2shape evaluate: Error: {tmp_path / 'nope.h5'} does not exist: run the step "
        f"that produces it first (log: {log})"
    )
    assert f"Error: {tmp_path / 'nope.h5'} does not exist" in log.read_text() and "Traceback" not in log.read_text()
