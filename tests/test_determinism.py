"""Deterministic method steps on the CPU, through the CLI as the workflow runs them (issue 21).

For each step that trains (step 1, step 2b 'invert', step 3): a run killed with SIGKILL while it
trains and then rerun writes exactly the artifact of an uninterrupted run (every dataset and every
network, bit for bit), with two torch threads as on the 2-core demo machine. A step keeps no state
between runs (artifacts are written atomically at its end), so this also checks that two runs with
the same seed agree. Tiny sizes (32 px GAN, 16-channel networks); slow (a dozen CLI processes).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from gan2shape.artifacts import read_artifact
from gan2shape.config import load_params
from gan2shape.method.context import make_context
from gan2shape.method.instances import sample_instances, write_instances
from gan2shape.method.steps import (
    run_invert,
    run_prior,
    run_pseudo,
    run_step1,
)

ROOT = Path(__file__).resolve().parents[1]
S = 32
N = 2
# enough iterations that the kill lands while the step trains
PROFILE = (
    "{stages: 1, prior_iters: 3, step1_iters: [40, 2], step2_iters: [25, 2], step3_iters: [40, 2], "
    "collect_batches: 2, batch_size: 2}"
)


def _overrides(gan: Path) -> list[str]:
    return [
        f"method.checkpoint={gan}",
        f"method.image_size={S}",
        "method.f1_d=1",
        "method.perceptual_blocks=2",
        f"method.profiles.tiny={PROFILE}",
        "method.profile=tiny",
    ]


@pytest.fixture(scope="module")
def shard(tiny_gan_path, tmp_path_factory) -> Path:
    """instances.h5, stage0/shape.h5 and stage1's albedo, pseudo and projected artifacts."""
    params, text = load_params(ROOT / "params.yaml", _overrides(tiny_gan_path))
    ctx = make_context(params, text, device="cpu", progress=False)
    d = tmp_path_factory.mktemp("det_shard")
    write_instances(d / "instances.h5", sample_instances(ctx.generator, N, seed=3, image_size=S))
    run_prior(ctx, d / "instances.h5", d / "stage0/shape.h5")
    run_step1(ctx, d / "instances.h5", d / "stage0/shape.h5", d / "stage1/albedo.h5")
    run_pseudo(ctx, d / "stage1/albedo.h5", d / "stage1/pseudo.h5")
    run_invert(ctx, d / "instances.h5", d / "stage1/pseudo.h5", d / "stage1/projected.h5")
    return d


def _command(gan: Path, d: Path, step: str, out: Path, log: Path) -> list[str]:
    sets = [a for o in _overrides(gan) for a in ("--set", o)]
    args = {
        "step1": ["--instances", d / "instances.h5", "--shape", d / "stage0/shape.h5"],
        "invert": ["--instances", d / "instances.h5", "--pseudo", d / "stage1/pseudo.h5"],
        "step3": [
            "--instances",
            d / "instances.h5",
            "--albedo",
            d / "stage1/albedo.h5",
            "--projected",
            d / "stage1/projected.h5",
        ],
    }[step]
    return [
        sys.executable,
        "-m",
        "gan2shape.cli",
        "-q",
        "--log",
        str(log),
        "--threads",
        "2",
        step,
        "--params",
        str(ROOT / "params.yaml"),
        *sets,
        *map(str, args),
        "--out",
        str(out),
        "--device",
        "cpu",
    ]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("OMP_NUM_THREADS", None)  # --threads 2 decides
    return env


def _run(cmd: list[str]) -> None:
    res = subprocess.run(cmd, check=False, env=_env(), capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-4000:]


def _kill_while_training(cmd: list[str], log: Path, out: Path) -> None:
    """Start the command, SIGKILL it once it trains (its log shows a training phase), check it left
    nothing at its output path."""
    proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    try:
        while not (log.exists() and " step " in log.read_text()):
            assert proc.poll() is None, "the step ended before it could be killed"
            assert time.monotonic() < deadline, "the step did not start training in time"
            time.sleep(0.02)
        time.sleep(0.3)
        assert proc.poll() is None, "the step ended before it could be killed"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    assert not out.exists()


def _same_artifact(a: Path, b: Path) -> None:
    with read_artifact(a) as x, read_artifact(b) as y:
        assert x.names == y.names and x.network_names == y.network_names and x.ids == y.ids
        assert x.attrs["loss_history"] == y.attrs["loss_history"]
        for name in x.names:
            assert np.array_equal(x.array(name), y.array(name)), f"dataset {name!r} differs"
        for net in x.network_names:
            wa, wb = x.network(net), y.network(net)
            assert wa.keys() == wb.keys()
            for key in wa:
                assert np.array_equal(wa[key].numpy(), wb[key].numpy()), f"network {net}.{key} differs"


@pytest.mark.slow
@pytest.mark.parametrize("step", ["step1", "invert", "step3"])
def test_killed_and_rerun_step_equals_an_uninterrupted_run(tiny_gan_path, shard, tmp_path, step):
    ref, out = tmp_path / "ref.h5", tmp_path / "out.h5"
    _run(_command(tiny_gan_path, shard, step, ref, tmp_path / "ref.log"))
    cmd = _command(tiny_gan_path, shard, step, out, tmp_path / "out.log")
    _kill_while_training(cmd, tmp_path / "out.log", out)
    _run(cmd)
    _same_artifact(out, ref)
