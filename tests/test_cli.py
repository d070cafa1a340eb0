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
