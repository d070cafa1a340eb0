"""User masks for the prior's 'mask' box source (gan2shape.method.masks, instances.h5 'mask').

Checks: masks are read by instance id from an artifact or a PNG folder, resized with nearest
sampling to a known box; missing ids and sizes are refused with clear messages; instances.h5
round-trips the mask; the stage-0 prior sits exactly over each instance's mask box (centre and
extent as numbers); box_source=mask without masks names the key and the fix; the CLI option works.
Object masks of step 2: canonical_mask is the identity for a frontal view and round-trips a turned
one; pseudo-samples carry the mask rendered in their own view. Pseudo-sample views: the canonical
origin draws around the distribution's mean, the target origin the same deviations around each
instance's own view. The still background: fill_background keeps background pixels, fills a
constant exactly and a ramp within its range; pseudo_background 'target' composites the rendered
object over it, pixel for pixel, and refuses instances without masks.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from gan2shape.artifacts import read_artifact, write_artifact
from gan2shape.config import ConfigError, load_params
from gan2shape.errors import ArtifactError, InputError
from gan2shape.evaluate.metrics import erode_mask
from gan2shape.method.context import make_context
from gan2shape.method.instances import read_instance_masks, read_instances, sample_instances, write_instances
from gan2shape.method.masks import canonical_mask, fill_background, read_masks
from gan2shape.method.steps import run_prior, run_pseudo, run_step1
from gan2shape.render import Camera, render_view
from gan2shape.render.prior import box_from_mask, prior_variant

S = 32
PROFILE = (
    "{stages: 1, prior_iters: 0, step1_iters: [1, 1], step2_iters: [1, 1], step3_iters: [1, 1], "
    "collect_batches: 1, batch_size: 1}"
)


def _rect(size: int, x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
    """(size, size) uint8 mask, 1 on columns x0..x1 and rows y0..y1 (inclusive)."""
    m = np.zeros((size, size), np.uint8)
    m[y0 : y1 + 1, x0 : x1 + 1] = 1
    return m


def _overrides(tiny_gan_path: Path, *extra: str) -> list[str]:
    return [
        f"method.checkpoint={tiny_gan_path}",
        f"method.image_size={S}",
        "method.f1_d=1",
        "method.perceptual_blocks=2",
        f"method.profiles.tiny={PROFILE}",
        "method.profile=tiny",
        *extra,
    ]


def _context(tiny_gan_path: Path, *extra: str):
    params, text = load_params("params.yaml", _overrides(tiny_gan_path, *extra))
    return make_context(params, text, device="cpu", progress=False, nf=16, enc_nf=16)


def test_masks_from_an_artifact_by_id_resized_nearest(tmp_path, caplog):
    # 64 px masks; 'nearest-exact' to 32 px samples input pixel 2j+1 for output pixel j.
    masks = np.stack([_rect(64, 16, 20, 47, 51), _rect(64, 2, 4, 9, 61), _rect(64, 30, 30, 33, 33)])
    path = write_artifact(tmp_path / "heads.h5", "heads", {"mask": masks}, ids=["a", "b", "c"])
    with caplog.at_level(logging.INFO, logger="gan2shape.method.masks"):
        out = read_masks(path, ["c", "a"], S)
    assert "resized to method.image_size 32 (nearest)" in caplog.text
    assert out.shape == (2, S, S) and out.dtype == torch.uint8 and set(out.unique().tolist()) == {0, 1}
    boxes = box_from_mask(out, raise_top_frac=0.0)
    assert boxes[1].tolist() == [8.0, 10.0, 23.0, 25.0]  # 'a': columns 2j+1 in 16..47, rows 2j+1 in 20..51
    assert boxes[0].tolist() == [15.0, 15.0, 16.0, 16.0]  # 'c': 30..33 -> 15..16
    # Same size: no resize, values kept; a (N, 1, S, S) float mask works too.
    soft = write_artifact(
        tmp_path / "soft.h5", "x", {"mask": masks[:, None, ::2, ::2].astype(np.float32)}, ids=["a", "b", "c"]
    )
    np.testing.assert_array_equal(read_masks(soft, ["b"], S)[0].numpy(), masks[1, ::2, ::2])
    with pytest.raises(ArtifactError, match=r"no mask for instance id\(s\) \['zz'\]"):
        read_masks(path, ["a", "zz"], S)


def test_masks_from_a_png_folder(tmp_path):
    folder = tmp_path / "masks"
    folder.mkdir()
    Image.fromarray(_rect(S, 3, 5, 20, 28) * 255).save(folder / "s2_00000.png")
    Image.fromarray(np.repeat(_rect(S, 10, 1, 12, 30)[:, :, None] * 255, 3, axis=2)).save(folder / "s2_00001.png")
    out = read_masks(folder, ["s2_00001", "s2_00000"], S)
    assert box_from_mask(out, raise_top_frac=0.0).tolist() == [[10, 1, 12, 30], [3, 5, 20, 28]]
    with pytest.raises(InputError, match="s2_00002"):
        read_masks(folder, ["s2_00002"], S)
    Image.fromarray(_rect(16, 3, 5, 10, 12) * 255).save(folder / "s2_00002.png")
    with pytest.raises(InputError, match="different sizes"):
        read_masks(folder, ["s2_00000", "s2_00002"], S)


def test_prior_sits_over_the_mask_box(tiny_gan_path, tmp_path):
    ctx = _context(tiny_gan_path, "method.prior.box_source=mask", "method.prior.raise_top_frac=0.0")
    inst = sample_instances(ctx.generator, 2, seed=3, image_size=S)
    # Box widths 15 and 17 (odd spans): half-integer centres (13.5, 17.5) and (20.5, 12.5).
    inst.mask = torch.from_numpy(np.stack([_rect(S, 6, 9, 21, 26), _rect(S, 12, 4, 29, 21)]))
    write_instances(tmp_path / "instances.h5", inst)
    again = read_instances(tmp_path / "instances.h5", S)
    assert torch.equal(again.mask, inst.mask)
    ids, mask_only = read_instance_masks(tmp_path / "instances.h5", S)  # what step 2a reads
    assert ids == inst.ids and torch.equal(mask_only, inst.mask)
    with pytest.raises(ArtifactError, match=r"per-instance shape \(32, 32\), expected \(16, 16\)"):
        read_instance_masks(tmp_path / "instances.h5", 16)
    path = run_prior(ctx, tmp_path / "instances.h5", tmp_path / "shape.h5")
    with read_artifact(path, "shape") as art:
        prior = art.tensor("prior_depth")
    far, near = ctx.config.prior.far, ctx.config.prior.near
    boxes = [(6, 9, 21, 26), (12, 4, 29, 21)]
    for depth, (x0, y0, x1, y1) in zip(prior, boxes):
        rise = (far - depth).double()
        inside = torch.nonzero(rise > 0)
        # extent: the cap covers the box minus its rim pixels (the ellipse passes between pixel centres)
        assert inside[:, 1].min() == x0 + 1 and inside[:, 1].max() == x1 - 1
        assert inside[:, 0].min() == y0 + 1 and inside[:, 0].max() == y1 - 1
        # centre: the rise-weighted centroid is the box centre (the cap is symmetric about it)
        rows, cols = torch.meshgrid(torch.arange(S).double(), torch.arange(S).double(), indexing="ij")
        cy, cx = float((rise * rows).sum() / rise.sum()), float((rise * cols).sum() / rise.sum())
        assert cx == pytest.approx((x0 + x1) / 2, abs=1e-4) and cy == pytest.approx((y0 + y1) / 2, abs=1e-4)
        # the lowest depth sits on the 2x2 pixels around the centre, close to near
        lowest = torch.nonzero(depth == depth.min())
        assert set(map(tuple, lowest.tolist())) <= {
            (r, c) for r in (y0 + y1) // 2 + np.arange(2) for c in (x0 + x1) // 2 + np.arange(2)
        }
        assert near < float(depth.min()) < near + 0.01
    # The default raise_top_frac (1/6, the synface rule) moves the box top up by 1/6 of its height.
    ctx = _context(tiny_gan_path, "method.prior.box_source=mask")
    path = run_prior(ctx, tmp_path / "instances.h5", tmp_path / "shape_raised.h5")
    with read_artifact(path, "shape") as art:
        raised = art.tensor("prior_depth")
    box = torch.tensor([[6, 9 - 17 / 6, 21, 26], [12, 4 - 17 / 6, 29, 21]])
    torch.testing.assert_close(raised, prior_variant("ellipsoid", box, S, near=near, far=far), rtol=0, atol=1e-6)


def test_mask_source_without_masks_names_the_key(tiny_gan_path, tmp_path):
    ctx = _context(tiny_gan_path, "method.prior.box_source=mask")
    write_instances(tmp_path / "instances.h5", sample_instances(ctx.generator, 1, seed=3, image_size=S))
    assert read_instances(tmp_path / "instances.h5", S).mask is None
    assert read_instance_masks(tmp_path / "instances.h5", S)[1] is None
    with pytest.raises(ConfigError, match=r"method\.prior\.box_source.*--masks.*box_source=centered"):
        run_prior(ctx, tmp_path / "instances.h5", tmp_path / "shape.h5")


def test_cli_sample_instances_with_masks(tiny_gan_path, tmp_path, monkeypatch):
    from click.testing import CliRunner

    from gan2shape.cli import main

    monkeypatch.chdir(Path(__file__).resolve().parents[1])
    folder = tmp_path / "masks"
    folder.mkdir()
    Image.fromarray(_rect(2 * S, 8, 10, 40, 50) * 255).save(folder / "s2_00000.png")
    sets = [x for item in _overrides(tiny_gan_path) for x in ("--set", item)]
    runner = CliRunner()
    base = ["-q", "sample-instances", *sets, "--seed", "2", "--masks", str(folder), "--device", "cpu"]
    res = runner.invoke(main, [*base, "--n", "1", "--out", str(tmp_path / "instances.h5")])
    assert res.exit_code == 0, res.output
    inst = read_instances(tmp_path / "instances.h5", S)
    assert inst.mask is not None  # 64 px -> 32 px: columns 2j+1 in 8..40, rows 2j+1 in 10..50
    assert box_from_mask(inst.mask, raise_top_frac=0.0).tolist() == [[4, 5, 19, 24]]
    res = runner.invoke(main, [*base, "--n", "2", "--out", str(tmp_path / "two.h5")])
    assert res.exit_code == 1 and "s2_00001" in res.output and not (tmp_path / "two.h5").exists()


def _cap(size: int, near: float = 0.92, far: float = 1.02) -> torch.Tensor:
    """(1, size, size) canonical depth: an ellipsoid cap of radius size/3 centred in the image."""
    c = (size - 1) / 2
    rows, cols = torch.meshgrid(torch.arange(size).float(), torch.arange(size).float(), indexing="ij")
    r2 = ((rows - c) ** 2 + (cols - c) ** 2) / (size / 3) ** 2
    return (far - (far - near) * (1 - r2).clamp(min=0).sqrt())[None]


def test_canonical_mask_identity_and_round_trip():
    cam = Camera(S)
    depth = _cap(S)
    mask = torch.from_numpy(_rect(S, 9, 7, 22, 25))[None]
    # Frontal view: every canonical pixel lands on itself, so the mask is unchanged.
    same = canonical_mask(mask, depth, torch.zeros(1, 6), cam)
    assert same.shape == (1, 1, S, S)
    assert torch.allclose(same[:, 0], mask.float(), atol=1e-4)
    # Turned view: carry the mask to the canonical frame, render it back from that view: the
    # mask's interior comes back as 1 and the far outside as 0 (bilinear blur at the edge, and a
    # little where the cap's steep rim stretches the warp).
    view = torch.tensor([[0.15, 0.35, 0.05, 0.0, 0.0, 0.0]])
    canon = canonical_mask(mask, depth, view, cam)
    assert not torch.allclose(canon[:, 0], mask.float(), atol=0.1)  # the warp did move it
    back = render_view(canon, depth, view, cam)
    valid = back.mask[:, 0] > 0
    inside = (erode_mask(mask, 2) > 0) & valid
    outside = (erode_mask(1 - mask, 2) > 0) & valid
    assert inside.sum() >= 140 and outside.sum() > 300
    got_in, got_out = back.image[:, 0][inside], back.image[:, 0][outside]
    assert float(got_in.min()) > 0.9 and float(got_in.mean()) > 0.995
    assert float(got_out.max()) < 0.1 and float(got_out.mean()) < 0.005
    with pytest.raises(ValueError, match="mask must have shape"):
        canonical_mask(mask[:, :-1], depth, view, cam)


def test_pseudo_samples_carry_the_object_mask(tiny_gan_path, tmp_path):
    ctx = _context(tiny_gan_path, "method.prior.box_source=mask")
    inst = sample_instances(ctx.generator, 2, seed=5, image_size=S)
    inst.mask = torch.from_numpy(np.stack([_rect(S, 8, 6, 23, 27), _rect(S, 10, 10, 21, 21)]))
    write_instances(tmp_path / "instances.h5", inst)
    shape = run_prior(ctx, tmp_path / "instances.h5", tmp_path / "shape.h5")
    albedo = run_step1(ctx, tmp_path / "instances.h5", shape, tmp_path / "albedo.h5")
    plain = run_pseudo(ctx, albedo, tmp_path / "pseudo_plain.h5")
    masked = run_pseudo(ctx, albedo, tmp_path / "pseudo_masked.h5", instances_path=tmp_path / "instances.h5")
    with read_artifact(plain, "pseudo") as a, read_artifact(masked, "pseudo") as b:
        assert not bool(a.attrs["object_mask"])
        assert bool(b.attrs["object_mask"])
        m_plain, m_obj = a.tensor("mask").float(), b.tensor("mask").float()  # stored as float16
        views = b.tensor("view")
        assert torch.equal(a.tensor("image"), b.tensor("image"))  # the mask changes nothing else
    with read_artifact(albedo, "albedo") as art:
        depth, target_view = art.tensor("canon_depth"), art.tensor("view")
    assert set(m_plain.unique().tolist()) <= {0.0, 1.0}
    assert bool((m_obj <= m_plain + 1e-6).all()) and float(m_obj.min()) >= 0.0
    # The same mask, rebuilt from its definition: the canonical mask rendered from each sample's view.
    n, m = views.shape[:2]
    canon = canonical_mask(inst.mask, depth, target_view, ctx.camera)
    again = render_view(
        canon.repeat_interleave(m, 0), depth.repeat_interleave(m, 0), views.reshape(n * m, 6), ctx.camera
    )
    expected = (again.mask * again.image.clamp(0, 1)).reshape(n, m, 1, S, S)
    assert torch.allclose(m_obj, expected, atol=1e-3)  # float16 storage: 2^-11 relative
    # Views turn the object (foreshortening shrinks its area), they neither erase nor grow it.
    area = m_obj.flatten(2).sum(2) / inst.mask.flatten(1).sum(1, keepdim=True).float()
    assert 0.1 < float(area.min()) and float(area.max()) < 1.3 and 0.5 < float(area.mean()) < 1.1


def test_pseudo_views_around_the_target(tiny_gan_path, tmp_path):
    from gan2shape.method.sampling import ViewDistribution

    given = ("method.view_source=heads", "method.view_scale=1.0")  # use the distributions below as they are
    ctx = _context(tiny_gan_path, *given, "method.view_origin=canonical")
    around = _context(tiny_gan_path, *given, "method.view_origin=target")
    write_instances(tmp_path / "instances.h5", sample_instances(ctx.generator, 2, seed=6, image_size=S))
    shape = run_prior(ctx, tmp_path / "instances.h5", tmp_path / "shape.h5")
    albedo = run_step1(ctx, tmp_path / "instances.h5", shape, tmp_path / "albedo.h5")
    with read_artifact(albedo, "albedo") as art:
        target = art.tensor("view")
    assert not torch.allclose(target[0], target[1])  # distinct targets, so the origin test can bite
    mean = torch.tensor([0.05, 0.3, 0.0, 0.0, 0.0, 0.0], dtype=torch.float64)
    cov = torch.diag(torch.tensor([0.01, 0.09, 0.0025, 0.0, 0.0, 0.0], dtype=torch.float64))
    views = {}
    for name, c in (("canonical", ctx), ("target", around)):
        for spread, dist in (
            ("fixed", ViewDistribution(mean, torch.zeros(6, 6))),
            ("wide", ViewDistribution(mean, cov)),
        ):
            path = run_pseudo(c, albedo, tmp_path / f"pseudo_{name}_{spread}.h5", views=dist)
            with read_artifact(path, "pseudo") as art:
                views[name, spread] = art.tensor("view")
    m = views["canonical", "fixed"].shape[1]
    # No spread: the canonical origin gives the distribution's mean, the target origin the target's view.
    assert torch.allclose(views["canonical", "fixed"], mean.float().expand(2, m, 6), atol=1e-6)
    assert torch.allclose(views["target", "fixed"], target[:, None].expand(-1, m, -1), atol=1e-6)
    # With spread: the same draws (same seed), only the origin moves from the mean to each target view.
    dev_canon = views["canonical", "wide"] - mean.float()
    dev_target = views["target", "wide"] - target[:, None]
    assert float(dev_canon.abs().max()) > 0.05
    assert torch.allclose(dev_canon, dev_target, atol=1e-5)


def test_fill_background_keeps_the_background_and_fills_within_its_range():
    ramp = torch.linspace(-1, 1, 40).view(1, 1, 1, 40).expand(2, 3, 36, 40).clone()  # varies along x only
    mask = torch.zeros(2, 36, 40)
    mask[0, 8:28, 12:30] = 1
    mask[1, 0:20, 0:15] = 1  # touching the border
    out = fill_background(ramp, mask, dilate=2)
    grown = torch.nn.functional.max_pool2d(mask[:, None], 5, stride=1, padding=2) > 0.5
    background = (~grown).expand_as(ramp)
    assert torch.equal(out[background], ramp[background])  # background pixels untouched
    assert float(out.min()) >= -1.0 and float(out.max()) <= 1.0  # weighted means of background values
    # An enclosed hole in a ramp is filled with a rising ramp close to it (push-pull smooths toward
    # the hole's middle); a hole at the border is filled from the background beside it.
    row, true = out[0, 0, 18, 10:32], ramp[0, 0, 18, 10:32]
    assert float((row - true).abs().max()) < 0.35
    assert float(torch.corrcoef(torch.stack([row, true]))[0, 1]) > 0.95
    assert float((out - ramp)[~background].abs().mean()) > 0.01  # the object's pixels were replaced
    # A constant background is filled exactly; a mask of the whole image leaves nothing to fill from.
    const = torch.full((1, 3, 33, 33), 0.3)
    hole = torch.zeros(1, 33, 33)
    hole[0, 5:30, 2:31] = 1
    assert torch.allclose(fill_background(const, hole), const, atol=1e-6)
    assert torch.equal(fill_background(const, torch.ones(1, 1, 33, 33)), torch.zeros_like(const))
    with pytest.raises(ValueError, match="mask must be"):
        fill_background(const, torch.ones(1, 32, 33))
    with pytest.raises(ValueError, match="dilate"):
        fill_background(const, hole, dilate=-1)


def test_pseudo_samples_over_the_targets_still_background(tiny_gan_path, tmp_path):
    ctx = _context(tiny_gan_path)
    still = _context(tiny_gan_path, "method.pseudo_background=target")
    inst = sample_instances(ctx.generator, 2, seed=7, image_size=S)
    write_instances(tmp_path / "bare.h5", inst)
    inst.mask = torch.from_numpy(np.stack([_rect(S, 8, 6, 23, 27), _rect(S, 10, 10, 21, 21)]))
    write_instances(tmp_path / "instances.h5", inst)
    shape = run_prior(ctx, tmp_path / "instances.h5", tmp_path / "shape.h5")
    albedo = run_step1(ctx, tmp_path / "instances.h5", shape, tmp_path / "albedo.h5")
    painted = run_pseudo(ctx, albedo, tmp_path / "painted.h5", instances_path=tmp_path / "instances.h5")
    over = run_pseudo(still, albedo, tmp_path / "still.h5", instances_path=tmp_path / "instances.h5")
    with read_artifact(painted, "pseudo") as a, read_artifact(over, "pseudo") as b:
        assert a.attrs["background"] == "render" and b.attrs["background"] == "target"
        img_a, img_b = a.tensor("image").float(), b.tensor("image").float()
        mask_a, mask_b = a.tensor("mask").float(), b.tensor("mask").float()
        assert torch.equal(a.tensor("view"), b.tensor("view")) and torch.equal(a.tensor("light"), b.tensor("light"))
    assert torch.equal(mask_a, mask_b)  # the losses' masks do not change
    fill = fill_background(inst.image, inst.mask)[:, None]  # (N, 1, 3, S, S)
    expected = mask_a * img_a + (1 - mask_a) * fill
    assert torch.allclose(img_b, expected, atol=4e-3)  # float16 storage of both images
    outside, inside = (mask_a == 0).expand_as(img_a), (mask_a == 1).expand_as(img_a)
    assert outside.sum() > 500 and inside.sum() > 500
    assert torch.allclose(img_b[outside], fill.expand_as(img_b)[outside], atol=2e-3)  # the still background
    assert torch.equal(img_b[inside], img_a[inside])  # the rendered object
    assert float((img_b - img_a)[outside].abs().mean()) > 0.01  # not the painted card any more
    # Without masks (or without instances) 'target' is refused before any work, naming key and fix.
    for given in ({"instances_path": tmp_path / "bare.h5"}, {}):
        with pytest.raises(ConfigError, match="pseudo_background.*sample-instances .* --masks"):
            run_pseudo(still, albedo, tmp_path / "refused.h5", **given)
    assert not (tmp_path / "refused.h5").exists()
