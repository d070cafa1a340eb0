"""flip1 (method.flip1_stage1): the mirrored-shape term of step 1, on a tiny random GAN (32 px).

Checks: the per-stage switches; step 1's loss in stage 1 is the flipped photo_loss exactly when the
switch is on, and step 1 of stage 2 is unaffected; for a left-right symmetric depth and albedo the
flipped term equals the unflipped one (and it differs for an asymmetric albedo).
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import h5py
import pytest
import torch

from gan2shape.artifacts import read_artifact
from gan2shape.config import MethodConfig, load_params
from gan2shape.method.context import load_nets, make_context
from gan2shape.method.forward import photo_loss, predict
from gan2shape.method.instances import read_instances, sample_instances, write_instances
from gan2shape.method.steps import run_prior, run_step1, stage_flips
from gan2shape.model.losses import smoothness

S = 32
N = 2
PROFILE = (
    "{stages: 1, prior_iters: 0, step1_iters: [1, 1], step2_iters: [1, 1], step3_iters: [1, 1], "
    "collect_batches: 1, batch_size: 1}"
)


@pytest.fixture(scope="module")
def setup(tmp_path_factory, tiny_gan_path):
    root = tmp_path_factory.mktemp("flip1")

    def context(flip1: bool):
        params, text = load_params(
            "params.yaml",
            [
                f"method.checkpoint={tiny_gan_path}",
                f"method.image_size={S}",
                "method.f1_d=1",
                "method.perceptual_blocks=2",
                f"method.profiles.tiny={PROFILE}",
                "method.profile=tiny",
                f"method.flip1_stage1={str(flip1).lower()}",
            ],
        )
        return make_context(params, text, device="cpu", progress=False, nf=16, enc_nf=16)

    off, on = context(False), context(True)
    write_instances(root / "instances.h5", sample_instances(off.generator, N, seed=3, image_size=S))
    stage0 = run_prior(off, root / "instances.h5", root / "stage0.h5")
    # The same networks labelled stage 1: step 1 from it is step 1 of stage 2.
    stage1 = root / "stage1.h5"
    shutil.copy(stage0, stage1)
    with h5py.File(stage1, "r+") as f:
        f.attrs["stage"] = 1
    return {"off": off, "on": on, "root": root, "instances": root / "instances.h5", "stage0": stage0, "stage1": stage1}


def test_stage_flips_follow_the_switches():
    reference = MethodConfig(flip1_stage1=False)  # synface's flips: flip3 = [True, False, ...], no flip1
    assert stage_flips(reference, 1) == (False, True)
    assert stage_flips(MethodConfig(), 1) == (True, True)  # the defaults add flip1 in stage 1
    cfg = MethodConfig(flip1_stage1=True, flip3_stage1=False)
    assert stage_flips(cfg, 1) == (True, False)
    assert stage_flips(cfg, 2) == (False, False) and stage_flips(MethodConfig(), 3) == (False, False)


def _first_loss(ctx, setup, shape: Path, name: str) -> float:
    path = run_step1(ctx, setup["instances"], shape, setup["root"] / name)
    with read_artifact(path, "albedo") as art:
        assert art.attrs["stage"] == (1 if shape == setup["stage0"] else 2)
        return art.attrs["loss_history"][0]  # the loss at the loaded weights, before any update


def test_flip1_changes_step1_loss_exactly_when_on(setup):
    off, on = setup["off"], setup["on"]
    loss_off = _first_loss(off, setup, setup["stage0"], "off.h5")
    loss_on = _first_loss(on, setup, setup["stage0"], "on.h5")
    assert loss_on > loss_off + 1e-3
    # Both are photo_loss of the loaded networks' prediction, with and without the flipped term.
    inst = read_instances(setup["instances"], S)
    with read_artifact(setup["stage0"], "shape") as art, torch.no_grad():
        f = predict(on, load_nets(on, art, N), inst.image)
        plain = float(photo_loss(on, f, inst.image)[0].mean())
        flipped = float(photo_loss(on, f, inst.image, flip=True)[0].mean())
    assert loss_off == pytest.approx(plain, rel=1e-5)
    assert loss_on == pytest.approx(flipped, rel=1e-5)
    # Stage 2: the switch is for stage 1 only, the loss is the same bit for bit.
    assert _first_loss(on, setup, setup["stage1"], "on2.h5") == _first_loss(off, setup, setup["stage1"], "off2.h5")


def test_flipped_term_equals_unflipped_for_a_symmetric_shape(setup):
    ctx = setup["on"]
    g = torch.Generator().manual_seed(0)
    raw = torch.randn(N, S, S, generator=g) * 0.02 + 1.0
    depth = (raw + raw.flip(2)) / 2  # left-right symmetric canonical depth
    alb = torch.rand(N, 3, S, S, generator=g) * 2 - 1
    albedo = (alb + alb.flip(3)) / 2
    view = torch.tensor([[0.1, 0.3, 0.05, 0.02, -0.01, 0.0], [-0.2, -0.4, 0.0, 0.0, 0.03, 0.0]])
    f = {
        "depth": depth,
        "albedo": albedo,
        "view": view,
        "ambient": torch.tensor([0.4, 0.6]),
        "diffuse": torch.tensor([0.5, 0.3]),
        "light_dir": torch.nn.functional.normalize(torch.tensor([[0.3, -0.2, 1.0], [-0.5, 0.4, 1.0]]), dim=1),
    }
    target = torch.rand(N, 3, S, S, generator=g) * 2 - 1
    with torch.no_grad():
        off, rec = photo_loss(ctx, f, target)
        on, _ = photo_loss(ctx, f, target, flip=True)
        smooth = ctx.config.lam_smooth * (smoothness(depth) + smoothness(rec["diffuse_shading"]))
    assert bool((smooth > 0).all())
    # on = unflipped + flipped + smoothness, off = unflipped + smoothness: flipped term = unflipped term
    torch.testing.assert_close(on - off, off - smooth, rtol=1e-5, atol=1e-6)
    # With an asymmetric albedo the mirrored render differs, so the flipped term is not a copy.
    f_asym = {**f, "albedo": alb}
    with torch.no_grad():
        off, rec = photo_loss(ctx, f_asym, target)
        on, _ = photo_loss(ctx, f_asym, target, flip=True)
    assert not torch.allclose(on - off, off - smooth, rtol=1e-3)


def test_joint_mode_takes_its_own_smoothness_weight(setup):
    """method.lam_smooth_joint: photo_loss in joint mode weighs the smoothness terms with it; null keeps
    lam_smooth; instance mode ignores it."""
    ctx = setup["off"]
    g = torch.Generator().manual_seed(1)
    depth = 1.0 + torch.randn(N, S, S, generator=g) * 0.02
    f = {
        "depth": depth,
        "albedo": torch.rand(N, 3, S, S, generator=g) * 2 - 1,
        "view": torch.zeros(N, 6),
        "ambient": torch.tensor([0.4, 0.6]),
        "diffuse": torch.tensor([0.5, 0.3]),
        "light_dir": torch.nn.functional.normalize(torch.tensor([[0.3, -0.2, 1.0], [-0.5, 0.4, 1.0]]), dim=1),
    }
    target = torch.rand(N, 3, S, S, generator=g) * 2 - 1

    def loss(**changes):
        c = dataclasses.replace(ctx, config=dataclasses.replace(ctx.config, **changes))
        with torch.no_grad():
            return photo_loss(c, f, target)

    base, rec = loss(mode="instance", lam_smooth_joint=0.5)
    rough = smoothness(depth) + smoothness(rec["diffuse_shading"])
    assert bool((rough > 0.01).all())
    plain = base - ctx.config.lam_smooth * rough  # instance mode: lam_smooth
    torch.testing.assert_close(loss(mode="joint", lam_smooth_joint=0.5)[0], plain + 0.5 * rough)
    torch.testing.assert_close(loss(mode="joint", lam_smooth_joint=None)[0], base)
    torch.testing.assert_close(loss(mode="joint", lam_smooth_joint=0.0)[0], plain)


def test_step1_view_light_trains_view_and_light_nets(setup, tiny_gan_path):
    """method.step1_view_light: step 1 updates the view and light nets as well as the albedo net; off
    (the reference), they leave step 1 exactly as they came in."""
    params, text = load_params(
        "params.yaml",
        [
            f"method.checkpoint={tiny_gan_path}",
            f"method.image_size={S}",
            "method.f1_d=1",
            "method.perceptual_blocks=2",
            f"method.profiles.tiny={PROFILE}",
            "method.profile=tiny",
            "method.step1_view_light=true",
        ],
    )
    vl = make_context(params, text, device="cpu", progress=False, nf=16, enc_nf=16)
    changed = {}
    for name, ctx in (("off", setup["off"]), ("on", vl)):
        out = run_step1(ctx, setup["instances"], setup["stage0"], setup["root"] / f"vl_{name}.h5")
        with read_artifact(setup["stage0"], "shape") as a0, read_artifact(out, "albedo") as a1:
            before, after = load_nets(ctx, a0, N), load_nets(ctx, a1, N)
        changed[name] = {
            net: max(
                float((p0 - p1).detach().abs().max())
                for p0, p1 in zip(before[net].parameters(), after[net].parameters())
            )
            for net in ("albedo", "view", "light", "depth")
        }
    assert changed["off"]["view"] == 0.0 and changed["off"]["light"] == 0.0 and changed["off"]["albedo"] > 0
    assert changed["on"]["view"] > 0 and changed["on"]["light"] > 0 and changed["on"]["albedo"] > 0
    assert changed["on"]["depth"] == 0.0 and changed["off"]["depth"] == 0.0
