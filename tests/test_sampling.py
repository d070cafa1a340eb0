"""Pseudo-sample light and view sampling (gan2shape.method.sampling)."""

from __future__ import annotations

import math

import pytest
import torch

from gan2shape.method.sampling import (
    LightStats,
    RandLight,
    ViewDistribution,
    estimate_view_light_from_heads,
    light_to_physical,
    light_to_raw,
    sample_lights,
)

FACES = (-1.0, 1.0, -0.2, 0.8, -0.1, 0.6, -0.6)


def test_lights_inside_ranges_and_ambient_follows_the_diffuse_boost():
    g = torch.Generator().manual_seed(0)
    base = torch.tensor([[0.1, -0.3, 0.5, 0.5], [-0.4, 0.2, 0.0, 0.0]])
    out = sample_lights(500, FACES, base, g)
    assert out.shape == (1000, 4) and out.dtype == base.dtype
    x, y = out[:, 2], out[:, 3]
    assert x.min() >= -1.0 and x.max() <= 1.0 and y.min() >= -0.2 and y.max() <= 0.8
    # ranges are actually covered (uniform draws), not collapsed
    assert x.min() < -0.9 and x.max() > 0.9 and y.min() < -0.1 and y.max() > 0.7
    base_rows = base.repeat_interleave(500, dim=0)
    d = (out[:, 1] - base_rows[:, 1]) / 2  # physical diffuse boost k_d' - k_d
    assert d.min() >= -0.1 - 1e-6 and d.max() <= 0.6 + 1e-6
    # physical: k_a' = k_a + alpha * d with alpha = -0.6
    phys, phys_base = light_to_physical(out), light_to_physical(base_rows)
    torch.testing.assert_close(phys[:, 0], phys_base[:, 0] - 0.6 * d, atol=1e-6, rtol=0)
    torch.testing.assert_close(phys[:, 1], phys_base[:, 1] + d, atol=1e-6, rtol=0)


def test_light_sampling_is_reproducible_and_validated():
    base = torch.zeros(1, 4)
    a = sample_lights(8, RandLight(), base, torch.Generator().manual_seed(3))
    b = sample_lights(8, RandLight.from_sequence(FACES), base, torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    with pytest.raises(ValueError, match="7 numbers"):
        sample_lights(2, FACES[:6], base)
    with pytest.raises(ValueError, match="x_min"):
        RandLight(x_min=1.0, x_max=-1.0)
    with pytest.raises(ValueError, match=r"\(N, 4\)"):
        sample_lights(2, FACES, torch.zeros(4))


def test_light_raw_physical_round_trip():
    raw = torch.tensor([[-1.0, 1.0, 0.3, -0.2], [0.0, 0.0, 0.0, 0.0]])
    phys = light_to_physical(raw)
    assert torch.equal(phys[:, :2], torch.tensor([[0.0, 1.0], [0.5, 0.5]]))
    assert torch.equal(light_to_raw(phys), raw)


def _random_distribution():
    g = torch.Generator().manual_seed(1)
    a = torch.randn(6, 6, generator=g, dtype=torch.float64) * 0.2
    return ViewDistribution(
        mean=torch.tensor([0.1, -0.2, 0.05, 0.01, -0.02, 0.0], dtype=torch.float64),
        cov=a @ a.T + 0.01 * torch.eye(6, dtype=torch.float64),
    )


def test_fit_recovers_mean_and_cov_of_its_own_samples():
    dist = _random_distribution()
    n = 40000
    views = dist.sample(n, torch.Generator().manual_seed(2))
    assert views.shape == (n, 6) and views.dtype == torch.float32
    fit = ViewDistribution.from_views(views)
    std = dist.std
    # standard errors: mean std/sqrt(n); covariance entries about sqrt(2/n) * s_i s_j
    assert ((fit.mean - dist.mean).abs() <= 5 * std / math.sqrt(n)).all()
    tol = 6 * math.sqrt(2.0 / n) * std[:, None] * std[None, :]
    assert ((fit.cov - dist.cov).abs() <= tol).all()


def test_singular_covariance_samples_exactly_on_its_support():
    views = torch.zeros(5, 6)
    views[:, 1] = torch.linspace(-0.5, 0.5, 5)  # only yaw varies; tz etc. constant 0
    dist = ViewDistribution.from_views(views)
    s = dist.sample(100, torch.Generator().manual_seed(0))
    assert torch.equal(s[:, [0, 2, 3, 4, 5]], torch.zeros(100, 5))
    assert s[:, 1].std() > 0.1


def test_scale_yaw_scales_the_yaw_std_only():
    dist = _random_distribution()
    scaled = dist.scale_yaw(1.2)
    torch.testing.assert_close(scaled.std[1], 1.2 * dist.std[1])
    torch.testing.assert_close(scaled.std[[0, 2, 3, 4, 5]], dist.std[[0, 2, 3, 4, 5]])
    torch.testing.assert_close(scaled.mean[1], 1.2 * dist.mean[1])
    # sampled yaw spread grows by 1.2 (std error of a std ~ 1/sqrt(2n) -> ~0.7 % each at n = 20000)
    a = dist.sample(20000, torch.Generator().manual_seed(4)).double()
    b = scaled.sample(20000, torch.Generator().manual_seed(5)).double()
    assert (b[:, 1].std() / a[:, 1].std()).item() == pytest.approx(1.2, rel=0.04)
    assert (b[:, 0].std() / a[:, 0].std()).item() == pytest.approx(1.0, rel=0.04)
    with pytest.raises(ValueError, match="scale"):
        dist.scale_yaw(0.0)


def test_from_ranges_moment_matches_uniform_ranges():
    dist = ViewDistribution.from_ranges(yaw_deg=(-60, 60), pitch_deg=(-10, 30), roll_deg=(0, 0), translate_xy=0.06)
    assert dist.mean[0].item() == pytest.approx(math.radians(10))
    assert dist.mean[1].item() == pytest.approx(0.0)
    assert dist.std[1].item() == pytest.approx(math.radians(120) / math.sqrt(12))
    assert dist.std[3].item() == pytest.approx(0.06 / math.sqrt(3))
    assert dist.std[2].item() == 0.0 and dist.std[5].item() == 0.0
    with pytest.raises(ValueError, match="yaw_deg"):
        ViewDistribution.from_ranges(yaw_deg=(10, -10))


def test_json_round_trip_and_errors(tmp_path):
    dist = _random_distribution()
    path = dist.save(tmp_path / "view.json")
    back = ViewDistribution.load(path)
    assert torch.equal(back.mean, dist.mean) and torch.equal(back.cov, dist.cov)
    (tmp_path / "bad.json").write_text('{"kind": "something"}')
    with pytest.raises(ValueError, match="not a view distribution"):
        ViewDistribution.load(tmp_path / "bad.json")
    with pytest.raises(ValueError, match="positive semi-definite"):
        ViewDistribution(mean=torch.zeros(6), cov=-torch.eye(6))
    with pytest.raises(ValueError, match=r"\(M, 6\)"):
        ViewDistribution.from_views(torch.zeros(4, 5))


def test_estimate_from_heads_matches_the_split_statistics(tmp_path):
    from gan2shape.artifacts import read_artifact
    from gan2shape.config import HeadsConfig
    from gan2shape.data.heads import make_heads

    out = make_heads(HeadsConfig(image_size=16, n_train=40, n_test=1, batch_size=40), tmp_path, progress=False)
    view_dist, light = estimate_view_light_from_heads(out["train"])
    with read_artifact(out["train"], "heads") as art:
        views = torch.from_numpy(art.array("view")).double()
        lights = torch.from_numpy(art.array("light")).double()
    torch.testing.assert_close(view_dist.mean, views.mean(0))
    torch.testing.assert_close(view_dist.cov, torch.cov(views.T))
    assert isinstance(light, LightStats)
    torch.testing.assert_close(light.mean[:2], 2 * lights[:, :2].mean(0) - 1)  # raw ambient/diffuse
    torch.testing.assert_close(light.mean[2:], lights[:, 2:].mean(0))
    assert view_dist.std[1] > 0.1  # yaw varies in the benchmark


def test_fit_views_writes_the_file_view_dist_reads(tmp_path):
    """`gan2shape fit-views` writes what --view-dist (method.view_source=heads) loads: the split's view statistics."""
    import json

    from click.testing import CliRunner

    from gan2shape.artifacts import read_artifact
    from gan2shape.cli import _views, main
    from gan2shape.config import HeadsConfig
    from gan2shape.data.heads import make_heads

    out = make_heads(HeadsConfig(image_size=16, n_train=30, n_test=1, batch_size=30), tmp_path, progress=False)
    result = CliRunner().invoke(main, ["fit-views", "--heads", str(out["train"]), "--out", str(tmp_path / "v.json")])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output.strip().splitlines()[-1])["out"] == str(tmp_path / "v.json")
    dist = _views(tmp_path / "v.json")
    with read_artifact(out["train"], "heads") as art:
        views = torch.from_numpy(art.array("view")).double()
    torch.testing.assert_close(dist.mean, views.mean(0))
    torch.testing.assert_close(dist.cov, torch.cov(views.T))
    missing = CliRunner().invoke(main, ["fit-views", "--heads", str(tmp_path / "nope.h5"), "--out", "x.json"])
    assert missing.exit_code != 0 and "does not exist" in missing.output
