"""SIDE / MAD metrics, evaluation masks, baselines and the evaluate step, on analytic cases."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from gan2shape.artifacts import ArtifactError, write_artifact
from gan2shape.config import EvaluateConfig, PriorConfig
from gan2shape.evaluate import (
    average_gt_depth,
    erode_mask,
    evaluate_baselines,
    evaluate_depth,
    evaluation_mask,
    mad,
    markdown_table,
    run_evaluate,
    side,
    summarize,
    write_metrics_json,
)
from gan2shape.evaluate.baselines import ellipsoid_prior_prediction
from gan2shape.evaluate.metrics import relief_ratio
from gan2shape.evaluate.sheet import depth_sheet
from gan2shape.render import Camera

S = 32
FOV = 10.0
BACKGROUND = 1.15


def _rays(size: int = S, fov_deg: float = FOV) -> tuple[torch.Tensor, torch.Tensor]:
    """(u, v) = K^-1 [x, y, 1] of every pixel, from the docs/METHOD.md camera (f = (S-1)/2 / tan(fov/2))."""
    f = (size - 1) / 2 / math.tan(math.radians(fov_deg) / 2)
    c = (size - 1) / 2
    coords = (torch.arange(size, dtype=torch.float64) - c) / f
    v, u = torch.meshgrid(coords, coords, indexing="ij")
    return u, v


def _tilted_plane(tilt_deg: float, azimuth_deg: float = 0.0, size: int = S) -> torch.Tensor:
    """Depth (H, W) of the plane through (0, 0, 1) whose normal is tilted by tilt_deg from the
    optical axis (towards azimuth_deg in the image plane): ray-plane intersection per pixel."""
    t, a = math.radians(tilt_deg), math.radians(azimuth_deg)
    n = (math.sin(t) * math.cos(a), math.sin(t) * math.sin(a), math.cos(t))
    u, v = _rays(size)
    return n[2] / (n[0] * u + n[1] * v + n[2])  # z with n . (z u, z v, z) = n . (0, 0, 1)


def _sphere_depth(center_xy=(0.0, 0.0), radius: float = 0.06, size: int = S) -> torch.Tensor:
    """Depth (H, W) of a sphere centred at (cx, cy, 1) seen by the camera; BACKGROUND elsewhere."""
    u, v = _rays(size)
    cx, cy = center_xy
    # |z (u, v, 1) - c|^2 = r^2  ->  a z^2 - 2 b z + (|c|^2 - r^2) = 0, nearest root
    a = u**2 + v**2 + 1
    b = u * cx + v * cy + 1.0
    cc = cx**2 + cy**2 + 1.0 - radius**2
    disc = b**2 - a * cc
    z = (b - disc.clamp(min=0).sqrt()) / a
    return torch.where(disc > 0, z, torch.full_like(z, BACKGROUND)).to(torch.float32)


def _interior(size: int = S, border: int = 1) -> torch.Tensor:
    m = torch.zeros(1, size, size)
    m[:, border:-border, border:-border] = 1
    return m


# ---------------------------------------------------------------------------------------------
# SIDE
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("c", [0.5, 0.9, 1.0, 1.37, 3.0])
def test_side_is_scale_invariant(c):
    g = torch.Generator().manual_seed(0)
    gt = 0.8 + 0.5 * torch.rand(4, 16, 16, generator=g)
    mask = (torch.rand(4, 16, 16, generator=g) > 0.3).float()
    values = side(c * gt, gt, mask)
    assert values.shape == (4,)
    assert values.dtype == torch.float64
    assert float(values.abs().max()) < 1e-7


@pytest.mark.parametrize("k", [0.5, 1.0, 1.6])
def test_relief_ratio_of_a_scaled_relief_is_the_scale_and_explains_side(k):
    g = torch.Generator().manual_seed(3)
    gt = 0.9 + 0.2 * torch.rand(3, 12, 12, generator=g, dtype=torch.float64)
    mask = (torch.rand(3, 12, 12, generator=g) > 0.3).double()
    pred = 1.7 * gt**k  # relief k times the truth's in log depth, any global scale
    np.testing.assert_allclose(relief_ratio(pred, gt, mask).numpy(), k, rtol=1e-9)
    # SIDE of such a prediction is |k - 1| times the truth's own log-depth spread
    lg, m = gt.log(), mask
    mean = (lg * m).flatten(1).sum(1) / m.flatten(1).sum(1)
    std = (((lg - mean.view(-1, 1, 1)) ** 2 * m).flatten(1).sum(1) / m.flatten(1).sum(1)).sqrt()
    np.testing.assert_allclose(side(pred, gt, mask).numpy(), abs(k - 1) * std.numpy(), atol=1e-12)
    # a constant prediction has no relief
    assert float(relief_ratio(torch.full_like(gt, 1.05), gt, mask).abs().max()) < 1e-12


def test_side_of_identical_maps_is_zero_and_matches_the_definition():
    g = torch.Generator().manual_seed(1)
    gt = 0.9 + 0.2 * torch.rand(3, 12, 12, generator=g)
    mask = torch.ones(3, 12, 12)
    assert torch.equal(side(gt, gt, mask), torch.zeros(3, dtype=torch.float64))
    # a hand case: delta = log 2 on half the pixels, 0 on the other half -> std = log(2)/2
    pred = gt.clone()
    pred[:, :, :6] *= 2
    expected = math.log(2) / 2
    np.testing.assert_allclose(side(pred, gt, mask).numpy(), expected, atol=1e-7)
    # only masked pixels count: masking out the doubled half gives 0
    half = torch.zeros(3, 12, 12)
    half[:, :, 6:] = 1
    assert float(side(pred, gt, half).abs().max()) < 1e-7


# ---------------------------------------------------------------------------------------------
# MAD
# ---------------------------------------------------------------------------------------------


def test_mad_of_identical_maps_is_zero():
    camera = Camera(S, fov_deg=FOV)
    gt = _sphere_depth().unsqueeze(0)
    values = mad(gt, gt, _interior(), camera)
    assert values.shape == (1,)
    assert float(values[0]) == pytest.approx(0.0, abs=1e-9)


@pytest.mark.parametrize("tilt", [5.0, 10.0, 20.0, 30.0])
@pytest.mark.parametrize("azimuth", [0.0, 90.0, 37.0])
def test_mad_of_a_tilted_plane_against_a_fronto_parallel_plane_is_the_tilt(tilt, azimuth):
    camera = Camera(S, fov_deg=FOV)
    plane = _tilted_plane(tilt, azimuth).unsqueeze(0)
    flat = torch.ones(1, S, S, dtype=torch.float64)
    mask = _interior()  # the 1-px border has placeholder normals
    assert float(mad(plane, flat, mask, camera)[0]) == pytest.approx(tilt, abs=1e-6)
    assert float(mad(flat, plane, mask, camera)[0]) == pytest.approx(tilt, abs=1e-6)
    # float32 input: still within round-off
    assert float(mad(plane.float(), flat.float(), mask, camera)[0]) == pytest.approx(tilt, abs=1e-3)


def test_mad_between_two_tilted_planes_is_their_relative_angle():
    camera = Camera(S, fov_deg=FOV)
    a = _tilted_plane(10.0, 0.0).unsqueeze(0)
    b = _tilted_plane(25.0, 0.0).unsqueeze(0)
    assert float(mad(a, b, _interior(), camera)[0]) == pytest.approx(15.0, abs=1e-6)


# ---------------------------------------------------------------------------------------------
# Masks
# ---------------------------------------------------------------------------------------------


def test_erode_mask_removes_exactly_the_one_pixel_rim_of_a_square():
    mask = torch.zeros(1, 20, 20)
    mask[0, 5:15, 5:15] = 1
    expected = torch.zeros(1, 20, 20)
    expected[0, 6:14, 6:14] = 1
    assert torch.equal(erode_mask(mask, 1), expected)
    expected2 = torch.zeros(1, 20, 20)
    expected2[0, 7:13, 7:13] = 1
    assert torch.equal(erode_mask(mask, 2), expected2)
    assert torch.equal(erode_mask(mask, 0), mask)
    # bool/uint8 input, and the reference's zero padding removes foreground at the image border
    full = torch.ones(1, 6, 6, dtype=torch.uint8)
    inner = torch.zeros(1, 6, 6)
    inner[0, 1:5, 1:5] = 1
    assert torch.equal(erode_mask(full, 1), inner)


def test_evaluation_mask_excludes_background_and_invalid_predictions():
    gt = _sphere_depth().unsqueeze(0)
    foreground = (gt < BACKGROUND).float()
    mask = evaluation_mask(gt)
    assert torch.equal(mask, erode_mask(foreground, 1))
    assert bool((mask <= foreground).all())
    assert float(mask.sum()) > 0
    assert float((mask * (gt >= BACKGROUND)).sum()) == 0.0  # no background pixel
    valid = torch.ones(1, S, S)
    valid[:, :, : S // 2] = 0  # the prediction is invalid on the left half
    both = evaluation_mask(gt, valid)
    assert float(both[:, :, : S // 2 + 1].sum()) == 0.0  # the invalid half and its eroded rim
    assert torch.equal(both[:, :, S // 2 + 1 :], mask[:, :, S // 2 + 1 :])


def test_an_image_with_an_empty_mask_fails_naming_it():
    camera = Camera(S, fov_deg=FOV)
    gt = torch.stack([_sphere_depth(), torch.full((S, S), BACKGROUND), _sphere_depth((0.01, 0.0))])
    with pytest.raises(ValueError, match=r"image\(s\) \[1\]"):
        evaluate_depth(gt * 1.1, gt, camera)
    with pytest.raises(ValueError, match=r"image\(s\) \[1\]"):
        side(gt, gt, evaluation_mask(gt))


def test_inputs_are_validated():
    camera = Camera(S, fov_deg=FOV)
    gt = _sphere_depth().unsqueeze(0)
    with pytest.raises(ValueError, match="shape"):
        evaluate_depth(gt[:, :-1], gt, camera)
    with pytest.raises(ValueError, match=r"\(N, H, W\)"):
        evaluate_depth(gt[0], gt[0], camera)
    bad = gt.clone()
    bad[0, 3, 3] = 0.0
    with pytest.raises(ValueError, match="> 0"):
        side(bad, gt, evaluation_mask(gt))
    with pytest.raises(ValueError, match="> 0"):
        mad(gt, -gt, evaluation_mask(gt), camera)


# ---------------------------------------------------------------------------------------------
# Aggregation and reporting
# ---------------------------------------------------------------------------------------------


def test_summary_mean_and_std_on_a_hand_example():
    out = summarize(np.array([0.01, 0.02, 0.03]), torch.tensor([10.0, 20.0, 30.0]))
    assert out["n"] == 3
    assert out["side_x1e2_mean"] == pytest.approx(2.0)  # SIDE x 100
    assert out["side_x1e2_std"] == pytest.approx(1.0)  # sample std of [1, 2, 3]
    assert out["mad_mean"] == pytest.approx(20.0)
    assert out["mad_std"] == pytest.approx(10.0)
    single = summarize([0.05], [7.0])
    assert single["side_x1e2_mean"] == pytest.approx(5.0) and math.isnan(single["side_x1e2_std"])


def test_evaluate_depth_returns_per_image_values_and_summary():
    camera = Camera(S, fov_deg=FOV)
    gt = torch.stack([_sphere_depth(), _sphere_depth((0.01, -0.01), 0.05)]).double()
    out = evaluate_depth(gt * 1.05, gt, camera)  # float64: a scaled surface has the same normals
    assert out["side"].shape == (2,) and out["mad"].shape == (2,)
    assert float(np.abs(out["side"]).max()) < 1e-7 and float(np.abs(out["mad"]).max()) < 1e-6
    flat = torch.ones_like(gt)
    out = evaluate_depth(flat, gt, camera)
    assert out["n"] == 2
    assert out["side_x1e2_mean"] == pytest.approx(100 * out["side"].mean())
    assert out["mad_mean"] == pytest.approx(out["mad"].mean())
    assert out["mad_std"] == pytest.approx(np.std(out["mad"], ddof=1))
    assert out["mad_mean"] > 5.0  # a sphere is far from flat


def test_markdown_table_and_metrics_json(tmp_path):
    rows = {
        "null_depth": {"n": 3, "side_x1e2_mean": 2.7234, "side_x1e2_std": 0.5, "mad_mean": 43.341, "mad_std": 4.0},
        "mine": {
            "n": 1,
            "side_x1e2_mean": np.float64(0.75),
            "side_x1e2_std": math.nan,
            "mad_mean": 14.8,
            "mad_std": math.nan,
        },
    }
    table = markdown_table(rows)
    lines = table.strip().split("\n")
    assert lines[0] == "| Method | N | SIDE (x10^-2) | MAD (deg) |"
    assert lines[2] == "| Constant null depth | 3 | 2.723 ± 0.500 | 43.34 ± 4.00 |"
    assert lines[3] == "| mine | 1 | 0.750 | 14.80 |"
    path = write_metrics_json(tmp_path / "sub" / "m.json", {"b": rows["mine"], "a": np.arange(2)})
    text = path.read_text()
    data = json.loads(text)
    assert data == {
        "a": [0, 1],
        "b": {"n": 1, "side_x1e2_mean": 0.75, "side_x1e2_std": None, "mad_mean": 14.8, "mad_std": None},
    }
    assert text.index('"a"') < text.index('"b"')  # sorted keys
    assert not (tmp_path / "sub" / "m.json.tmp").exists()


# ---------------------------------------------------------------------------------------------
# Baselines and the evaluate step, on tiny benchmark files
# ---------------------------------------------------------------------------------------------


def _write_split(path, depth: torch.Tensor, prefix: str):
    ids = [f"{prefix}{i:03d}" for i in range(depth.shape[0])]
    mask = (depth < depth.flatten(1).amax(1).view(-1, 1, 1)).to(torch.uint8)
    write_artifact(
        path,
        "heads",
        {"depth": depth.float(), "mask": mask},
        ids=ids,
        attrs={"image_size": S, "camera_fov_deg": FOV, "split": "test" if prefix == "te" else "train"},
    )
    return ids


def _plane_heads(tilts) -> torch.Tensor:
    """Tilted planes inside a disk of radius 10 px, background at BACKGROUND."""
    u, v = torch.meshgrid(torch.arange(S) - (S - 1) / 2, torch.arange(S) - (S - 1) / 2, indexing="ij")
    disk = (u**2 + v**2) <= 10**2
    maps = [
        torch.where(disk, _tilted_plane(t, 20.0 * i), torch.tensor(BACKGROUND, dtype=torch.float64))
        for i, t in enumerate(tilts)
    ]
    return torch.stack(maps).float()


def test_average_gt_depth_streams_the_mean(tmp_path):
    g = torch.Generator().manual_seed(3)
    depth = 0.9 + 0.2 * torch.rand(7, S, S, generator=g)
    depth[:, :, :3] = BACKGROUND  # three background columns in every image
    depth[2, 5:9, 10:20] = BACKGROUND  # and a background patch in image 2
    _write_split(tmp_path / "train.h5", depth, "tr")
    path = str(tmp_path / "train.h5")
    raw = average_gt_depth(path, chunk=3, foreground_only=False)
    assert raw.shape == (S, S)
    np.testing.assert_allclose(raw.numpy(), depth.double().mean(0).numpy(), atol=1e-6)
    first = average_gt_depth(path, chunk=2, max_images=3, foreground_only=False)
    np.testing.assert_allclose(first.numpy(), depth[:3].double().mean(0).numpy(), atol=1e-6)
    # foreground-only: image 2's patch is left out there; never-foreground columns get the mean
    fg = average_gt_depth(path, chunk=3)
    d = depth.double()
    keep = torch.ones(7, dtype=torch.bool)
    keep[2] = False
    np.testing.assert_allclose(fg[5:9, 10:20].numpy(), d[keep][:, 5:9, 10:20].mean(0).numpy(), atol=1e-6)
    np.testing.assert_allclose(fg[20:, 20:].numpy(), d[:, 20:, 20:].mean(0).numpy(), atol=1e-6)
    foreground = d < d.flatten(1).amax(1).view(-1, 1, 1)
    fill = float(d[foreground].mean())
    np.testing.assert_allclose(fg[:, :3].numpy(), fill, atol=1e-6)


def test_baselines_on_analytic_scenes(tmp_path):
    camera = Camera(S, fov_deg=FOV)
    tilts = [5.0, 12.0, 25.0]
    test_ids = _write_split(tmp_path / "test.h5", _plane_heads(tilts), "te")
    # a train split of the first test image alone: its average IS that image
    _write_split(tmp_path / "train.h5", _plane_heads(tilts[:1]), "tr")
    rows = evaluate_baselines(str(tmp_path / "train.h5"), str(tmp_path / "test.h5"), camera, batch_size=2)
    assert list(rows) == ["null_depth", "average_gt_depth", "ellipsoid_prior"]
    null = rows["null_depth"]
    assert null["ids"] == test_ids
    np.testing.assert_allclose(null["mad"], tilts, atol=1e-3)  # a flat plane vs each tilted plane
    avg = rows["average_gt_depth"]
    assert avg["side"][0] == pytest.approx(0.0, abs=1e-7) and avg["mad"][0] == pytest.approx(0.0, abs=1e-6)
    assert avg["mad"][2] == pytest.approx(math.degrees(math.acos(np.dot(_unit(5.0, 0.0), _unit(25.0, 40.0)))), abs=1e-3)
    first_two = evaluate_baselines(None, str(tmp_path / "test.h5"), camera, max_images=2, names=("ellipsoid_prior",))
    assert first_two["ellipsoid_prior"]["n"] == 2
    np.testing.assert_allclose(first_two["ellipsoid_prior"]["side"], rows["ellipsoid_prior"]["side"][:2])
    with pytest.raises(ValueError, match="train"):
        evaluate_baselines(None, str(tmp_path / "test.h5"), camera, names=("average_gt_depth",))


def _unit(tilt_deg: float, azimuth_deg: float) -> np.ndarray:
    t, a = math.radians(tilt_deg), math.radians(azimuth_deg)
    return np.array([math.sin(t) * math.cos(a), math.sin(t) * math.sin(a), math.cos(t)])


def test_run_evaluate_scores_a_prediction_file_and_writes_reports(tmp_path):
    gt = torch.stack([_sphere_depth(), _sphere_depth((0.01, 0.0), 0.05), _sphere_depth((0.0, 0.012), 0.055)])
    test_ids = _write_split(tmp_path / "test.h5", gt, "te")
    # a prediction for two of the test images, in another order, off by a global scale
    order = [2, 0]
    write_artifact(tmp_path / "pred.h5", "prediction", {"depth": 1.3 * gt[order]}, ids=[test_ids[i] for i in order])
    out = run_evaluate(
        tmp_path / "test.h5", tmp_path / "pred.h5", tmp_path / "out", train_path=None, config=EvaluateConfig()
    )
    assert set(out["rows"]) == {"null_depth", "ellipsoid_prior", "prediction"}
    assert out["skipped"] == {"average_gt_depth": "no train split given (--train)"}
    pred = out["rows"]["prediction"]
    assert pred["n"] == 2 and pred["side_x1e2_mean"] == pytest.approx(0.0, abs=1e-5)
    assert pred["mad_mean"] == pytest.approx(0.0, abs=1e-3)  # float32 maps: round-off of 1e-4 deg
    assert out["rows"]["null_depth"]["n"] == 2  # baselines on the prediction's images
    on_disk = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert on_disk["rows"]["prediction"]["n"] == 2 and on_disk["camera"] == {"image_size": S, "fov_deg": FOV}
    per_image = json.loads((tmp_path / "out" / "per_image.json").read_text())
    assert per_image["prediction"]["ids"] == ["te002", "te000"]
    table = (tmp_path / "out" / "table.md").read_text()
    assert "| GAN2Shape (ours) | 2 |" in table and "| Constant null depth | 2 |" in table
    # the prediction path and the baseline path agree on the same predictions
    write_artifact(tmp_path / "prior.h5", "prediction", {"depth": ellipsoid_prior_prediction(gt)}, ids=test_ids)
    reference = PriorConfig(near=0.91, far=1.02, raise_top_frac=1.0 / 6.0)  # ellipsoid_prior_prediction's defaults
    out = run_evaluate(tmp_path / "test.h5", tmp_path / "prior.h5", tmp_path / "out2", prior=reference)
    np.testing.assert_allclose(
        out["rows"]["prediction"]["side_x1e2_mean"], out["rows"]["ellipsoid_prior"]["side_x1e2_mean"], rtol=1e-9
    )
    np.testing.assert_allclose(
        out["rows"]["prediction"]["mad_mean"], out["rows"]["ellipsoid_prior"]["mad_mean"], rtol=1e-9
    )
    assert out["ellipsoid_prior"] == {"near": 0.91, "far": 1.02, "raise_top_frac": pytest.approx(1.0 / 6.0)}
    # the row follows the method's prior (method.prior near / far): a shallower cap scores as a
    # prediction file of that cap, and differently from the reference's
    shallow = PriorConfig(near=0.965, far=1.02, raise_top_frac=1.0 / 6.0)
    write_artifact(
        tmp_path / "shallow.h5",
        "prediction",
        {"depth": ellipsoid_prior_prediction(gt, near=0.965, far=1.02)},
        ids=test_ids,
    )
    out3 = run_evaluate(tmp_path / "test.h5", tmp_path / "shallow.h5", tmp_path / "out3", prior=shallow)
    assert out3["ellipsoid_prior"]["near"] == 0.965
    np.testing.assert_allclose(
        out3["rows"]["prediction"]["side_x1e2_mean"], out3["rows"]["ellipsoid_prior"]["side_x1e2_mean"], rtol=1e-9
    )
    shallow_side = out3["rows"]["ellipsoid_prior"]["side_x1e2_mean"]
    assert abs(shallow_side - out["rows"]["ellipsoid_prior"]["side_x1e2_mean"]) > 1e-3
    with pytest.raises(ValueError, match="prior_near < prior_far"):
        evaluate_baselines(
            None,
            str(tmp_path / "test.h5"),
            Camera(S, fov_deg=FOV),
            names=("ellipsoid_prior",),
            prior_near=1.05,
            prior_far=1.02,
        )


def test_run_evaluate_rejects_mismatched_predictions(tmp_path):
    gt = torch.stack([_sphere_depth(), _sphere_depth((0.01, 0.0), 0.05)])
    _write_split(tmp_path / "test.h5", gt, "te")
    write_artifact(tmp_path / "other.h5", "prediction", {"depth": gt}, ids=["te000", "zz999"])
    with pytest.raises(ArtifactError, match="zz999"):
        run_evaluate(tmp_path / "test.h5", tmp_path / "other.h5", tmp_path / "out", baselines=False)
    write_artifact(tmp_path / "small.h5", "prediction", {"depth": gt[:, :16, :16]}, ids=["te000", "te001"])
    with pytest.raises(ArtifactError, match="per-instance shape"):
        run_evaluate(tmp_path / "test.h5", tmp_path / "small.h5", tmp_path / "out", baselines=False)
    valid = torch.zeros(2, S, S, dtype=torch.uint8)
    valid[0] = 1  # image te001 has no valid predicted pixel
    write_artifact(tmp_path / "invalid.h5", "prediction", {"depth": gt, "valid": valid}, ids=["te000", "te001"])
    with pytest.raises(ArtifactError, match="te001"):
        run_evaluate(tmp_path / "test.h5", tmp_path / "invalid.h5", tmp_path / "out", baselines=False)


def test_run_evaluate_scores_the_methods_shape_artifact(tmp_path):
    gt = torch.stack([_sphere_depth(), _sphere_depth((0.01, 0.0), 0.05)])
    test_ids = _write_split(tmp_path / "test.h5", gt, "te")
    valid = torch.ones_like(gt)
    valid[1, :, : S // 2] = 0  # half of the second image invalid: it must leave the evaluation mask
    wrong = gt.clone()
    wrong[1, :, : S // 2] = 0.5  # ...where the prediction is garbage
    write_artifact(
        tmp_path / "shape.h5",
        "shape",
        {"recon_depth": 1.1 * wrong, "recon_mask": valid, "canon_depth": gt},
        ids=test_ids,
    )
    out = run_evaluate(tmp_path / "test.h5", tmp_path / "shape.h5", tmp_path / "out", baselines=False)
    pred = out["rows"]["prediction"]
    assert pred["n"] == 2 and pred["side_x1e2_mean"] == pytest.approx(0.0, abs=1e-5)
    write_artifact(tmp_path / "albedo.h5", "albedo", {"canon_depth": gt}, ids=test_ids)
    with pytest.raises(Exception, match="'albedo' artifact"):
        run_evaluate(tmp_path / "test.h5", tmp_path / "albedo.h5", tmp_path / "out3", baselines=False)


def test_run_evaluate_reports_relief_and_view_error_of_a_shape_artifact(tmp_path):
    gt = torch.stack([_sphere_depth(), _sphere_depth((0.01, 0.0), 0.05)])
    test_ids = _write_split(tmp_path / "test.h5", gt, "te")
    true_view = torch.tensor([[0.1, -0.5, 0.02, 0, 0, 0], [-0.2, 0.9, 0.0, 0, 0, 0]], dtype=torch.float32)
    import h5py

    with h5py.File(tmp_path / "test.h5", "r+") as f:  # the GT views make-heads writes
        f.create_dataset("view", data=true_view.numpy())
    # input views off by (+2, -10, 0) and (0, +5 via a full turn, -3) degrees
    err = torch.tensor([[2.0, -10.0, 0.0], [0.0, 5.0 + 360.0, -3.0]]).deg2rad()
    view = true_view.clone()
    view[:, :3] += err
    deeper = gt.double() ** 1.5  # relief 1.5 times the truth's in log depth
    # canonical depths: ridges +-0.01 alternating every column (second differences 4 x 0.01 along x,
    # 0 along y) and a plane (roughness 0)
    col = torch.arange(S, dtype=torch.float32)
    canon = torch.stack([1.0 + 0.01 * (-1.0) ** col[None, :].expand(S, S), 1.0 + 0.002 * col[None, :].expand(S, S)])
    write_artifact(
        tmp_path / "shape.h5",
        "shape",
        {"recon_depth": deeper.float(), "recon_mask": torch.ones_like(gt), "view": view, "canon_depth": canon},
        ids=test_ids,
    )
    out = run_evaluate(tmp_path / "test.h5", tmp_path / "shape.h5", tmp_path / "out", baselines=True)
    diag = out["diagnostics"]
    assert diag["prediction"]["relief_ratio_median"] == pytest.approx(1.5, rel=1e-3)
    assert diag["null_depth"]["relief_ratio_mean"] == 0.0 and "view_abs_err_deg_mean" not in diag["null_depth"]
    errs = diag["prediction"]["view_abs_err_deg_mean"]
    assert errs["pitch"] == pytest.approx(1.0, abs=1e-3) and errs["yaw"] == pytest.approx(7.5, abs=1e-3)
    assert errs["roll"] == pytest.approx(1.5, abs=1e-3)
    per_image = json.loads((tmp_path / "out" / "per_image.json").read_text())
    np.testing.assert_allclose(per_image["prediction"]["view_err_deg"], [[2, 10, 0], [0, 5, 3]], atol=1e-3)
    # signed angles, the full turn wrapped away: yaw -28.65 - 10 and 51.57 + 5 degrees
    gt_deg = np.degrees(true_view[:, :3].double().numpy())
    np.testing.assert_allclose(per_image["prediction"]["gt_view_deg"], gt_deg, atol=1e-3)
    np.testing.assert_allclose(per_image["prediction"]["view_deg"], gt_deg + [[2, -10, 0], [0, 5, -3]], atol=1e-3)
    # gains: least-squares slopes through 0 of predicted on GT pitch and yaw
    pred_deg = gt_deg + [[2, -10, 0], [0, 5, -3]]
    for i, name in enumerate(("pitch", "yaw")):
        expected = (pred_deg[:, i] * gt_deg[:, i]).sum() / (gt_deg[:, i] ** 2).sum()
        assert diag["prediction"]["view_gain"][name] == pytest.approx(expected, rel=1e-4)
    assert diag["prediction"]["view_gain"]["yaw"] > 1.0  # both heads turned further than the truth
    assert len(per_image["prediction"]["relief_ratio"]) == 2
    np.testing.assert_allclose(per_image["prediction"]["canon_roughness"], [0.04, 0.0], atol=1e-6)
    assert diag["prediction"]["canon_roughness_mean"] == pytest.approx(0.02, abs=1e-6)
    assert "canon_roughness" not in per_image["null_depth"]
    on_disk = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert set(on_disk["rows"]["prediction"]) == {"n", "side_x1e2_mean", "side_x1e2_std", "mad_mean", "mad_std"}


def test_depth_sheet_scale_free_and_worst_first():
    """The depth sheet shows GT and prediction on one grey scale after removing the global scale SIDE
    ignores: a scaled copy of the GT draws exactly the GT tile, a doubled relief saturates, and the
    heads come worst SIDE first."""
    gt = torch.stack([_sphere_depth(), _sphere_depth((0.01, 0.0), 0.05), _sphere_depth((0.0, 0.012), 0.055)]).numpy()
    mask = evaluation_mask(torch.from_numpy(gt)).numpy() > 0.5
    images = np.stack([np.full((3, S, S), 40 * (i + 1), dtype=np.uint8) for i in range(3)])
    fg = mask[1]
    centre = gt[1][fg].mean()
    pred = np.stack([1.3 * gt[0], np.where(fg, centre + 2.0 * (gt[1] - centre), gt[1]), 0.9 * gt[2]])
    side_values = np.array([0.001, 0.9, 0.002])
    sheet = depth_sheet(images, gt, pred, mask, side_values, heads_per_row=3, scale=1, max_heads=3)
    # 2 px border, 1 px padding, 9 tiles of S in one row: tile k starts at column 2 + k * (S + 1)
    assert sheet.shape == (2 * 2 + S, 2 * 2 + 9 * S + 8, 3)

    def tile(k):
        c = 2 + k * (S + 1)
        return sheet[2 : 2 + S, c : c + S]

    # worst first: head 1 (SIDE 0.9), then head 2, then head 0; the image tile tells which head it is
    assert [int(tile(3 * j)[0, 0, 0]) for j in range(3)] == [80, 120, 40]
    # head 2 (tiles 3-5): 0.9 x GT draws the GT tile; head 0 (tiles 6-8): 1.3 x GT likewise (to one grey
    # level of round-off)
    assert np.abs(tile(4).astype(int) - tile(5)).max() <= 1 and np.abs(tile(7).astype(int) - tile(8)).max() <= 1
    gt_tile, pred_tile = tile(1)[..., 0][fg], tile(2)[..., 0][fg]
    assert (pred_tile == 255).sum() > (gt_tile == 255).sum() and (pred_tile == 38).sum() > (gt_tile == 38).sum()
    np.testing.assert_array_equal(tile(1)[~fg], np.broadcast_to([20, 20, 60], tile(1)[~fg].shape))
    with pytest.raises(ValueError, match="side must be"):
        depth_sheet(images, gt, pred, mask, side_values[:2])


def test_run_evaluate_writes_the_depth_sheet(tmp_path):
    gt = torch.stack([_sphere_depth(), _sphere_depth((0.01, 0.0), 0.05)])
    ids = [f"te{i:03d}" for i in range(2)]
    mask = (gt < gt.flatten(1).amax(1).view(-1, 1, 1)).to(torch.uint8)
    image = torch.randint(0, 256, (2, 3, S, S), dtype=torch.uint8)
    write_artifact(
        tmp_path / "test.h5",
        "heads",
        {"depth": gt, "mask": mask, "image": image},
        ids=ids,
        attrs={"image_size": S, "camera_fov_deg": FOV, "split": "test"},
    )
    write_artifact(tmp_path / "pred.h5", "prediction", {"depth": gt * 1.1}, ids=ids)
    run_evaluate(tmp_path / "test.h5", tmp_path / "pred.h5", tmp_path / "out", baselines=False)
    from PIL import Image

    sheet = np.asarray(Image.open(tmp_path / "out" / "depth_sheet.png"))
    assert sheet.shape[2] == 3 and sheet.shape[0] > 2 * S and not list(tmp_path.glob("out/*.tmp"))


def test_angle_gain_measures_the_rotation_scale():
    """angle_gain: a view net that turns every head 0.6 times as far has gain 0.6 whatever the spread of
    the heads; the wrong way round gives a negative gain; all-frontal GT has no scale (NaN); and
    wrap_degrees folds full turns into [-180, 180)."""
    from gan2shape.evaluate.run import angle_gain, wrap_degrees

    gt = np.array([-50.0, -20.0, 5.0, 35.0, 60.0])
    assert angle_gain(0.6 * gt, gt) == pytest.approx(0.6)
    assert angle_gain(-gt, gt) == pytest.approx(-1.0)
    noise = np.array([7.0, 0.0, 0.0, 10.0, 0.0])  # orthogonal to gt (-350 + 350): no change in the slope
    assert float(noise @ gt) == 0.0
    assert angle_gain(gt + noise, gt) == pytest.approx(1.0)
    assert np.isnan(angle_gain(gt, np.zeros(5)))
    np.testing.assert_allclose(
        wrap_degrees([190.0, -190.0, 360.0 + 30.0, 180.0]), [-170.0, 170.0, 30.0, -180.0], atol=1e-9
    )
