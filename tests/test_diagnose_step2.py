"""The step-2 bench (gan2shape.diagnose.step2) on a tiny GAN: invariants of its measurements and one run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from gan2shape.config import load_params
from gan2shape.data.heads import make_heads
from gan2shape.diagnose.step2 import (
    edit_gain,
    follow,
    free_offset_projection,
    gt_turned_pseudo,
    run_diagnose_step2,
    yaw_direction,
)
from gan2shape.errors import ArtifactError
from gan2shape.evaluate.pose import PoseRegressor, save_pose_regressor
from gan2shape.method.context import make_context
from gan2shape.method.instances import sample_instances, write_instances
from gan2shape.method.reconstruct import run_reconstruct
from gan2shape.model.losses import feature_matching, masked_l1

S = 32
PROFILE = (
    "{stages: 1, prior_iters: 1, step1_iters: [1, 1], step2_iters: [2, 2], step3_iters: [1, 1], "
    "collect_batches: 2, batch_size: 2}"
)


def _overrides(gan: Path, *extra: str) -> list[str]:
    return [
        f"method.checkpoint={gan}",
        f"method.image_size={S}",
        "method.f1_d=1",
        "method.perceptual_blocks=2",
        "method.nf=16",
        "method.enc_nf=8",
        f"method.profiles.t={PROFILE}",
        "method.profile=t",
        "heads.image_size=32",
        "heads.n_train=2",
        "heads.n_test=3",
        *extra,
    ]


@pytest.fixture(scope="module")
def setup(tiny_gan_path, tmp_path_factory):
    root = tmp_path_factory.mktemp("bench")
    params, text = load_params("params.yaml", _overrides(tiny_gan_path))
    ctx = make_context(params, text, device="cpu", progress=False, nf=16, enc_nf=8)
    make_heads(params.heads, root / "heads", progress=False)
    inst = sample_instances(ctx.generator, 3, seed=2, image_size=S)
    inst.ids = ["test-000000", "test-000001", "test-000002"]  # stand-ins for projected test heads
    inst_path = write_instances(root / "inst.h5", inst)
    run_reconstruct(ctx, inst_path, root / "run")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        pose = PoseRegressor(S, nf=8).eval()
    pose_path = save_pose_regressor(root / "pose.h5", pose, {"held_out": None})
    return {
        "root": root,
        "params": params,
        "text": text,
        "ctx": ctx,
        "inst": inst,
        "inst_path": inst_path,
        "pose": pose,
        "pose_path": pose_path,
    }


def test_follow_invariants(setup):
    pose, inst = setup["pose"], setup["inst"]
    pseudo = torch.rand(3, 5, 3, S, S, generator=torch.Generator().manual_seed(1)) * 2 - 1
    requested = torch.randn(3, 5, generator=torch.Generator().manual_seed(2)) * 10
    ceiling = follow(pose, inst.image, pseudo, requested)
    # images that copy the pseudo-samples follow exactly as the ceiling, per instance too
    assert follow(pose, inst.image, pseudo.clone(), requested) == ceiling
    assert len(ceiling["per_instance_slope"]) == 3
    # images that never leave the target do not turn at all
    still = follow(pose, inst.image, inst.image[:, None].expand(-1, 5, -1, -1, -1), requested)
    assert still["slope"] == 0.0 and still["y_std"] == 0.0 and still["within"]["slope"] == 0.0
    # the fit within heads is the pooled fit of the per-head-centred readings (plain path)
    from gan2shape.evaluate.pose import DEG, line_fit, predict_pose

    yaw = predict_pose(pose, pseudo.reshape(15, 3, S, S))[:, 1].reshape(3, 5).numpy() * DEG
    req = requested.numpy()
    plain = line_fit(req - req.mean(1, keepdims=True), yaw - yaw.mean(1, keepdims=True))
    assert ceiling["within"]["slope"] == pytest.approx(plain["slope"], abs=2e-4)
    assert ceiling["within"]["r"] == pytest.approx(plain["r"], abs=2e-4)


def test_edit_gain_is_odd_in_the_direction_and_zero_without_one(setup):
    g, pose, inst = setup["ctx"].generator, setup["pose"], setup["inst"]
    direction = yaw_direction(g, pose, n=200, seed=0)
    assert direction["direction"].shape == (g.style_dim,) and direction["n"] == 200
    d = direction["direction"]
    plus = edit_gain(g, pose, inst.latent, inst.noise, d)
    minus = edit_gain(g, pose, inst.latent, inst.noise, -d)
    torch.testing.assert_close(
        torch.tensor(plus["per_instance"]), -torch.tensor(minus["per_instance"]), atol=1e-3, rtol=0
    )
    assert edit_gain(g, pose, inst.latent, inst.noise, torch.zeros_like(d))["per_instance"] == [0.0] * 3


def test_free_offsets_lower_the_step2_loss(setup):
    ctx, inst = setup["ctx"], setup["inst"]
    g, d = ctx.generator, ctx.discriminator
    pseudo = torch.rand(3, 2, 3, S, S, generator=torch.Generator().manual_seed(3)) * 2 - 1
    mask = torch.ones(3, 2, 1, S, S)

    def loss(images):
        x, y = images.reshape(6, 3, S, S), pseudo.reshape(6, 3, S, S)
        return masked_l1(x, y) + feature_matching(d.features(x, 2), d.features(y, 2))

    start = inst.image[:, None].expand(-1, 2, -1, -1, -1)  # offset 0: the instance itself
    out = free_offset_projection(
        g, d, inst, pseudo, mask, steps=20, lr=0.05, lam_regular=0.0, feature_blocks=2, chunk=4
    )
    assert out.shape == (3, 2, 3, S, S)
    assert (loss(out) < loss(start)).all()


def test_gt_turned_renders_without_spread_are_the_heads_in_their_own_view(setup, tiny_gan_path):
    from gan2shape.artifacts import read_artifact

    params, _ = load_params(
        "params.yaml",
        _overrides(
            tiny_gan_path, "method.view_yaw_deg=[0,0]", "method.view_pitch_deg=[0,0]", "method.view_roll_deg=[0,0]"
        ),
    )
    heads = setup["root"] / "heads" / "test.h5"
    gt = gt_turned_pseudo(params, heads, ["test-000002", "test-000000"], 3, seed=0, image_size=S)
    assert gt["image"].shape == (2, 3, 3, S, S) and gt["mask"].shape == (2, 3, 1, S, S)
    assert gt["view_delta"].abs().max() < 1e-6
    with read_artifact(heads, "heads") as art:
        masks = torch.from_numpy(art.array("mask")).float()
    torch.testing.assert_close(gt["mask"][0, :, 0], masks[2].expand(3, -1, -1))
    torch.testing.assert_close(gt["mask"][1, :, 0], masks[0].expand(3, -1, -1))
    with pytest.raises(ArtifactError, match="has no head"):
        gt_turned_pseudo(params, heads, ["test-000009"], 2, seed=0, image_size=S)


def test_the_bench_on_a_run_and_on_ground_truth_turns(setup):
    out = setup["root"] / "out"
    result = run_diagnose_step2(
        setup["params"],
        setup["text"],
        pose_path=setup["pose_path"],
        instances_path=setup["inst_path"],
        out_dir=out,
        run_dir=setup["root"] / "run",
        heads_path=setup["root"] / "heads" / "test.h5",
        gt_samples=3,
        free_samples=2,
        free_steps=2,
        direction_samples=100,
        progress=False,
    )
    saved = json.loads((out / "step2_bench.json").read_text())
    assert saved["ids"] == setup["inst"].ids and saved["n"] == 3
    for source in ("run", "gt_turned"):
        fits = result[source]
        assert set(fits) >= {"ceiling", "encoder", "free", "free_ceiling", "ratio_encoder", "ratio_free"}
        assert fits["ratio_encoder"] == pytest.approx(fits["encoder"]["slope"] / fits["ceiling"]["slope"], abs=1e-3)
        assert fits["ceiling"]["n"] == 3 * (4 if source == "run" else 3) and fits["free"]["n"] == 3 * 2
        assert (out / f"{source}_sheet.png").is_file()
    assert len(saved["edit"]["per_instance"]) == 3 and saved["typicality"]["tie_mean"] < 1e-6
    assert (out / "gt" / "projected.h5").is_file()
