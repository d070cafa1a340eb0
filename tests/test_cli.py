"""The click CLI: parameter validation reaches the user as a clear usage error."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from gan2shape.cli import main

ROOT = Path(__file__).resolve().parents[1]


def test_check_params_prints_effective_config():
    result = CliRunner().invoke(main, ["check-params", "--params", str(ROOT / "params.yaml"), "--set", "heads.n_test=7"])
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
    result = runner.invoke(main, ["sample-instances", "--params", str(ROOT / "params.yaml"), "--n", "1",
                                  "--set", f"method.checkpoint={tmp_path / 'nope.pt'}", "--out",
                                  str(tmp_path / "i.h5"), "--device", "cpu"])
    assert result.exit_code == 1 and "nope.pt" in result.output and "Traceback" not in result.output
    junk = tmp_path / "junk.h5"
    junk.write_text("not hdf5")
    result = runner.invoke(main, ["evaluate", "--params", str(ROOT / "params.yaml"), "--test", str(junk),
                                  "--out", str(tmp_path / "ev")])
    assert result.exit_code == 1 and "junk.h5" in result.output and "cannot be opened as HDF5" in result.output
    assert not (tmp_path / "ev" / "metrics.json").exists()


def test_train_gan_init_of_another_architecture_fails_with_one_clear_line(tmp_path):
    runner = CliRunner()
    params = ["--params", str(ROOT / "params.yaml")]
    made = runner.invoke(main, ["make-heads", *params, "--out", str(tmp_path / "heads"), "--set", "heads.n_train=4",
                                "--set", "heads.n_test=1", "--set", "heads.batch_size=4"])
    assert made.exit_code == 0, made.output
    result = runner.invoke(main, ["train-gan", *params, "--data", str(tmp_path / "heads" / "train.h5"),
                                  "--out", str(tmp_path / "gan"), "--init", str(ROOT / "data" / "stylegan2_heads64.pt"),
                                  "--set", "gan.channel_max=64", "--device", "cpu"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "cannot warm-start" in result.output and "channel_max: file 128 vs config 64" in result.output
    assert not (tmp_path / "gan" / "checkpoint.pt").exists()
