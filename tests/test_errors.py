"""Errors a user can fix reach the terminal as one line (what is wrong, what to do), exit code != 0,
no traceback (``-v`` adds it), and leave no artifact written or changed."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from gan2shape.artifacts import write_artifact
from gan2shape.cli import main
from gan2shape.errors import ArtifactError, CheckpointError, ConfigError, Gan2ShapeError, InputError

ROOT = Path(__file__).resolve().parents[1]
PARAMS = ["--params", str(ROOT / "params.yaml")]
S = 32


def _error_line(result, exit_code: int = 1) -> str:
    """The one 'Error: ...' line of a failed command (and nothing like a traceback)."""
    assert result.exit_code == exit_code, result.output
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error")]
    assert len(errors) == 1, result.output
    return errors[0]


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _sphere(size: int = S) -> torch.Tensor:
    u, v = torch.meshgrid(torch.arange(size) - (size - 1) / 2, torch.arange(size) - (size - 1) / 2, indexing="ij")
    r2 = (u**2 + v**2) / (size / 3) ** 2
    return torch.where(r2 < 1, 1.0 - 0.05 * torch.sqrt((1 - r2).clamp(min=0)), torch.tensor(1.15))


def test_every_user_error_is_a_gan2shape_error():
    for cls in (ArtifactError, CheckpointError, ConfigError, InputError):
        assert issubclass(cls, Gan2ShapeError)
    assert issubclass(ConfigError, ValueError) and issubclass(InputError, ValueError)  # what callers caught


def test_a_prediction_of_other_ids_than_the_test_split_fails_in_one_line(tmp_path):
    depth = torch.stack([_sphere(), _sphere()])
    write_artifact(
        tmp_path / "test.h5",
        "heads",
        {"depth": depth, "mask": (depth < 1.1).to(torch.uint8)},
        ids=["te000", "te001"],
        attrs={"image_size": S, "camera_fov_deg": 10.0, "split": "test"},
    )
    # a valid shape.h5 of two GAN samples: their ids are not in the test split
    write_artifact(
        tmp_path / "shape.h5",
        "shape",
        {"recon_depth": depth, "recon_mask": torch.ones_like(depth)},
        ids=["s0_00000", "s0_00001"],
    )
    before = _digest(tmp_path / "shape.h5")
    result = CliRunner().invoke(
        main,
        [
            "evaluate",
            *PARAMS,
            "--test",
            str(tmp_path / "test.h5"),
            "--pred",
            str(tmp_path / "shape.h5"),
            "--out",
            str(tmp_path / "ev"),
        ],
    )
    line = _error_line(result)
    assert "test.h5 lacks 2 of the 2 ids of the prediction" in line and "s0_00000" in line
    assert "evaluate a prediction made from this test split" in line
    assert not (tmp_path / "ev" / "metrics.json").exists() and _digest(tmp_path / "shape.h5") == before


def test_a_checkpoint_of_random_bytes_fails_in_one_line_without_pytorchs_advice(tmp_path):
    bad = tmp_path / "random.pt"
    bad.write_bytes(np.random.default_rng(1).integers(0, 256, 1 << 20, dtype=np.uint8).tobytes())
    runner = CliRunner()
    result = runner.invoke(
        main,
        [
            "sample-instances",
            *PARAMS,
            "--n",
            "1",
            "--set",
            f"method.checkpoint={bad}",
            "--out",
            str(tmp_path / "instances.h5"),
            "--device",
            "cpu",
        ],
    )
    line = _error_line(result)
    assert "random.pt cannot be read" in line and "re-download or re-create it" in line
    assert "weights_only" not in result.output
    assert not (tmp_path / "instances.h5").exists()
    result = runner.invoke(main, ["export-gan", "--checkpoint", str(bad), "--out", str(tmp_path / "g.pt")])
    assert "random.pt cannot be read" in _error_line(result) and not (tmp_path / "g.pt").exists()


def test_a_typo_in_set_names_set_and_a_typo_in_the_file_names_the_file(tmp_path):
    result = CliRunner().invoke(main, ["check-params", *PARAMS, "--set", "method.lam_smoth=0.1"])
    line = _error_line(result, exit_code=2)
    assert "method.lam_smoth: unknown key; did you mean 'lam_smooth'?" in line
    assert line.endswith("(fix --set method.lam_smoth=0.1)") and "params.yaml" not in line
    result = CliRunner().invoke(main, ["check-params", *PARAMS, "--set", "heads.seed=[1"])
    assert "--set heads.seed=[1: the value is not valid YAML" in _error_line(result, exit_code=2)
    params = tmp_path / "params.yaml"
    params.write_text((ROOT / "params.yaml").read_text().replace("  n_test:", "  n_tset:", 1))
    result = CliRunner().invoke(main, ["check-params", "--params", str(params), "--set", "heads.seed=3"])
    line = _error_line(result, exit_code=2)
    assert "heads.n_tset: unknown key; did you mean 'n_test'?" in line and f"(fix this key in {params})" in line


def test_verbose_adds_the_traceback():
    result = CliRunner().invoke(main, ["-v", "check-params", *PARAMS, "--set", "heads.sede=1"])
    assert result.exit_code == 2 and "Traceback" in result.output and "ConfigError" in result.output


@pytest.fixture()
def shard(tiny_gan_path, tmp_path) -> dict[str, Path]:
    """instances.h5 of two samples of the tiny GAN (made by the CLI) and the params that read it."""
    sets = [
        f"method.checkpoint={tiny_gan_path}",
        f"method.image_size={S}",
        "method.f1_d=1",
        "method.perceptual_blocks=2",
        "method.nf=16",
        "method.enc_nf=16",
    ]
    args = [x for item in sets for x in ("--set", item)]
    made = CliRunner().invoke(
        main,
        ["sample-instances", *PARAMS, *args, "--n", "2", "--out", str(tmp_path / "instances.h5"), "--device", "cpu"],
    )
    assert made.exit_code == 0, made.output
    return {"instances": tmp_path / "instances.h5", "args": args}


def test_artifacts_of_another_shard_or_mode_fail_in_one_line(shard, tmp_path):
    """step1, pseudo, invert and step3 given an artifact of other instances, step1 one of another
    method.mode: the message names the file and the fix; no output appears, no input changes."""
    runner = CliRunner()
    other = write_artifact(
        tmp_path / "other_shape.h5",
        "shape",
        {"canon_depth": np.ones((2, S, S), np.float32)},
        ids=["s7_00000", "s7_00001"],
        attrs={"mode": "instance", "stage": 0},
    )
    step1 = ["step1", *PARAMS, *shard["args"], "--instances", str(shard["instances"]), "--device", "cpu"]
    result = runner.invoke(main, [*step1, "--shape", str(other), "--out", str(tmp_path / "albedo.h5")])
    line = _error_line(result)
    assert "other_shape.h5: instance ids differ from instances.h5" in line and "use artifacts of the same shard" in line
    same = write_artifact(
        tmp_path / "joint_shape.h5",
        "shape",
        {"canon_depth": np.ones((2, S, S), np.float32)},
        ids=["s0_00000", "s0_00001"],
        attrs={"mode": "joint", "stage": 0},
    )
    result = runner.invoke(main, [*step1, "--shape", str(same), "--out", str(tmp_path / "albedo.h5")])
    line = _error_line(result)
    assert "joint_shape.h5 was made in mode 'joint', the params say 'instance'" in line
    assert "rerun from the prior or fix method.mode" in line
    albedo = write_artifact(
        tmp_path / "albedo_other.h5",
        "albedo",
        {
            "canon_depth": np.ones((2, S, S), np.float32),
            "canon_albedo": np.zeros((2, 3, S, S), np.float32),
            "light": np.zeros((2, 4), np.float32),
            "view": np.zeros((2, 6), np.float32),
        },
        ids=["s7_00000", "s7_00001"],
        attrs={"mode": "instance", "stage": 1},
    )
    result = runner.invoke(
        main,
        [
            "pseudo",
            *PARAMS,
            *shard["args"],
            "--instances",
            str(shard["instances"]),
            "--albedo",
            str(albedo),
            "--out",
            str(tmp_path / "pseudo.h5"),
            "--device",
            "cpu",
        ],
    )
    assert "albedo_other.h5: instance ids differ from instances.h5" in _error_line(result)
    pseudo = write_artifact(
        tmp_path / "pseudo_other.h5",
        "pseudo",
        {"image": np.zeros((2, 1, 3, S, S), np.float16), "mask": np.zeros((2, 1, 1, S, S), np.float16)},
        ids=["s7_00000", "s7_00001"],
        attrs={"mode": "instance", "stage": 1},
    )
    result = runner.invoke(
        main,
        [
            "invert",
            *PARAMS,
            *shard["args"],
            "--instances",
            str(shard["instances"]),
            "--pseudo",
            str(pseudo),
            "--out",
            str(tmp_path / "projected_new.h5"),
            "--device",
            "cpu",
        ],
    )
    assert "pseudo_other.h5: instance ids differ from instances.h5" in _error_line(result)
    projected = write_artifact(
        tmp_path / "projected.h5",
        "projected",
        {"image": np.zeros((2, 1, 3, S, S)), "mask": np.zeros((2, 1, S, S))},
        ids=["s0_00000", "s0_00001"],
    )
    before = {p: _digest(p) for p in (other, same, albedo, pseudo, projected, shard["instances"])}
    result = runner.invoke(
        main,
        [
            "step3",
            *PARAMS,
            *shard["args"],
            "--instances",
            str(shard["instances"]),
            "--albedo",
            str(albedo),
            "--projected",
            str(projected),
            "--out",
            str(tmp_path / "shape.h5"),
            "--device",
            "cpu",
        ],
    )
    assert "albedo_other.h5: instance ids differ from instances.h5" in _error_line(result)
    assert not any((tmp_path / name).exists() for name in ("albedo.h5", "pseudo.h5", "projected_new.h5", "shape.h5"))
    assert {p: _digest(p) for p in before} == before
