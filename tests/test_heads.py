"""The synthetic head benchmark: geometry invariants, ground-truth consistency, determinism, I/O."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from gan2shape.artifacts import read_artifact
from gan2shape.config import HeadsConfig, LightSampling, ViewSampling
from gan2shape.data import head_model as hm
from gan2shape.data.heads import (
    HeadSample,
    background_depth,
    heads_camera,
    load_heads,
    make_heads,
    render_heads,
    sample_heads,
)
from gan2shape.render import depth_to_normals, light_direction, shade, view_depth

SIZE = 32


def tiny(**kwargs) -> HeadsConfig:
    base = dict(seed=3, image_size=SIZE, n_train=8, n_test=4, batch_size=3)
    base.update(kwargs)
    return HeadsConfig(**base)


def with_view(sample: HeadSample, view: torch.Tensor) -> HeadSample:
    return dataclasses.replace(sample, view=view)


def erode(mask: torch.Tensor, steps: int = 1) -> torch.Tensor:
    """(N, S, S) bool -> pixels whose 3x3 neighbourhood lies in the mask (image edge = outside)."""
    m = mask.float().unsqueeze(1)
    for _ in range(steps):
        m = -torch.nn.functional.max_pool2d(-m, 3, stride=1, padding=1)
        m[..., 0, :] = m[..., -1, :] = 0
        m[..., :, 0] = m[..., :, -1] = 0
    return m[:, 0] > 0.5


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    config = tiny()
    out = tmp_path_factory.mktemp("heads")
    summary = make_heads(config, out, progress=False)
    return config, out, summary


def test_view_and_light_samples_lie_in_the_configured_ranges():
    config = tiny(
        view=ViewSampling(yaw_deg=(10.0, 20.0), pitch_deg=(-5.0, 0.0), roll_deg=(1.0, 2.0), translate_xy=0.03),
        light=LightSampling(ambient=(0.3, 0.4), diffuse=(0.5, 0.6), dir_x=(-0.2, 0.1), dir_y=(0.3, 0.5)),
    )
    s = sample_heads(config, "train", 0, 200)
    deg = s.view[:, :3] * 180.0 / math.pi
    for column, (lo, hi) in enumerate([(-5.0, 0.0), (10.0, 20.0), (1.0, 2.0)]):  # pitch (x), yaw (y), roll (z)
        assert deg[:, column].min() >= lo - 1e-4 and deg[:, column].max() <= hi + 1e-4
        assert deg[:, column].max() - deg[:, column].min() > 0.8 * (hi - lo)  # spread over the range
    assert s.view[:, 3:5].abs().max() <= 0.03 + 1e-7 and s.view[:, 3:5].abs().max() > 0.02
    assert torch.all(s.view[:, 5] == 0)
    for column, (lo, hi) in enumerate([(0.3, 0.4), (0.5, 0.6), (-0.2, 0.1), (0.3, 0.5)]):
        assert s.light[:, column].min() >= lo - 1e-6 and s.light[:, column].max() <= hi + 1e-6
    for specs, values in ((hm.SHAPE_PARAMS, s.shape), (hm.ALBEDO_PARAMS, s.albedo)):
        for j, spec in enumerate(specs):
            scale = config.asymmetry if spec.asymmetric else 1.0
            assert values[:, j].min() >= spec.low * scale - 1e-6 and values[:, j].max() <= spec.high * scale + 1e-6


def test_instances_do_not_depend_on_the_batch_they_are_drawn_in():
    config = tiny()
    whole = sample_heads(config, "train", 0, 7)
    part = sample_heads(config, "train", 4, 3)
    for f in dataclasses.fields(HeadSample):
        assert torch.equal(getattr(whole, f.name)[4:], getattr(part, f.name)), f.name
    a = render_heads(whole, config)
    b = render_heads(part, config)
    for name in a:
        assert torch.allclose(a[name][4:].float(), b[name].float(), atol=1e-6), name


def test_train_and_test_splits_and_seeds_use_different_streams():
    config = tiny()
    train = sample_heads(config, "train", 0, 50).shape
    test = sample_heads(config, "test", 0, 50).shape
    other = sample_heads(dataclasses.replace(config, seed=4), "train", 0, 50).shape
    for a, b in ((train, test), (train, other)):
        # no head of one set reappears in the other
        assert torch.cdist(a, b).min() > 1e-3


def test_ground_truth_depth_is_the_view_depth_of_the_canonical_map(built):
    config = tiny()
    camera = heads_camera(config)
    far = background_depth(config)
    s = sample_heads(config, "train", 0, 8)
    out = render_heads(s, config)
    canon_depth, canon_mask = hm.canonical_shape(s.shape, SIZE, config.fov_deg)
    expected = view_depth(canon_depth, s.view, camera, canon_mask)
    mask = out["mask"]
    assert mask.float().mean() > 0.2
    assert torch.equal(out["depth"][mask], expected[mask])
    # background holds background_depth, which is every image's maximum and beyond every head depth
    assert torch.all(out["depth"][~mask] == far)
    assert torch.all(out["depth"].flatten(1).max(dim=1).values == far)
    assert out["depth"][mask].max() < far
    # "GT foreground = depth < its max", the evaluation's rule
    assert torch.equal(mask, out["depth"] < out["depth"].flatten(1).max(dim=1).values.view(-1, 1, 1))
    assert far == pytest.approx(camera.max_depth + camera.depth_margin)


def test_normals_are_unit_and_match_the_depth():
    config = tiny()
    out = render_heads(sample_heads(config, "train", 0, 6), config)
    normal = out["normal"]
    length = normal.norm(dim=1)
    assert torch.allclose(length[out["mask"]], torch.ones(()), atol=1e-5)
    expected = depth_to_normals(out["depth"], heads_camera(config)).permute(0, 3, 1, 2)
    assert torch.equal(normal, expected)
    # the head faces the camera: n_z > 0 on the interior of the head
    assert (normal[:, 2][erode(out["mask"], 2)] > 0).float().mean() > 0.97


def test_identity_view_renders_the_shaded_canonical_texture():
    config = tiny(image_size=64)
    s = with_view(sample_heads(config, "train", 0, 4), torch.zeros(4, 6))
    out = render_heads(s, config)
    camera = heads_camera(config)
    depth, mask = hm.canonical_shape(s.shape, 64, config.fov_deg)
    albedo = hm.canonical_albedo(s.shape, s.albedo, s.noise, 64)
    texture, _ = shade(
        albedo, depth_to_normals(depth, camera), s.light[:, 0], s.light[:, 1], light_direction(s.light[:, 2:])
    )
    inner = erode(mask, 1)
    # the head renders where its mask is (outline vertices may round either way)
    assert not (out["mask"] & ~mask).any() and out["mask"][inner].all()
    assert torch.allclose(out["depth"][inner], depth[inner], atol=1e-5)
    got, want = out["image"].permute(0, 2, 3, 1)[inner], texture.clamp(-1, 1).permute(0, 2, 3, 1)[inner]
    assert torch.allclose(got, want, atol=1e-4)


def test_head_front_is_closer_than_its_cheeks_and_silhouette():
    config = tiny(image_size=64)
    s = sample_heads(config, "train", 0, 8)
    depth, mask = hm.canonical_shape(s.shape, 64, config.fov_deg)
    outline = mask & ~erode(mask, 1)
    for i in range(8):
        d = depth[i].masked_fill(~mask[i], float("inf"))
        row, col = divmod(int(d.argmin()), 64)
        assert abs(col - 31.5) <= 3  # the frontmost point (nose tip) is on the midline
        edge_col = int(mask[i, row].nonzero().max())  # the silhouette on the nose tip's row
        cheek = depth[i, row, (col + edge_col) // 2]
        edge = depth[i][outline[i]]
        assert d.min() < cheek - 0.01 < edge.min()
        assert 0.9 <= float(d.min()) and float(edge.max()) <= 1.1  # the method's depth range
    # the head spans 55-75% of the image height (the neck runs on below)
    head_rows = (hm.SHAPE_PARAM_NAMES.index("head_height"),)
    assert torch.all((s.shape[:, head_rows] > 0.55) & (s.shape[:, head_rows] < 0.75))


def test_asymmetry_zero_gives_mirror_symmetric_heads():
    for asymmetry, symmetric in ((0.0, True), (0.15, False)):
        config = tiny(asymmetry=asymmetry, image_size=64)
        s = sample_heads(config, "train", 0, 6)
        depth, mask = hm.canonical_shape(s.shape, 64, config.fov_deg)
        albedo = hm.canonical_albedo(s.shape, s.albedo, s.noise, 64)
        depth_gap = (depth - depth.flip(-1)).abs().flatten(1).max(dim=1).values
        albedo_gap = (albedo - albedo.flip(-1)).abs().flatten(1).max(dim=1).values
        if symmetric:
            assert torch.equal(mask, mask.flip(-1))
            assert depth_gap.max() < 1e-6 and albedo_gap.max() < 1e-5
        else:
            assert depth_gap.min() > 1e-3 and albedo_gap.min() > 1e-2


def test_shape_parameters_change_the_depth():
    config = tiny(image_size=64)
    s = sample_heads(config, "train", 0, 2)
    depth, _ = hm.canonical_shape(s.shape, 64, config.fov_deg)
    assert (depth[0] - depth[1]).abs().max() > 0.01  # two identities differ

    def frontmost(name: str, value: float) -> float:
        shape = s.shape[:1].clone()
        shape[:, hm.SHAPE_PARAM_NAMES.index(name)] = value
        d, m = hm.canonical_shape(shape, 64, config.fov_deg)
        return float(d[m].min())

    spec = hm.SHAPE_PARAMS[hm.SHAPE_PARAM_NAMES.index("nose_protrusion")]
    assert frontmost("nose_protrusion", spec.high) < frontmost("nose_protrusion", spec.low) - 0.003
    spec = hm.SHAPE_PARAMS[hm.SHAPE_PARAM_NAMES.index("head_depth")]
    assert frontmost("head_depth", spec.high) < frontmost("head_depth", spec.low) - 0.005


def test_background_depth_must_exceed_every_head_depth():
    config = tiny(background_depth=1.0)
    with pytest.raises(ValueError, match="background_depth"):
        render_heads(sample_heads(config, "train", 0, 2), config)


def test_written_files_read_back_identical(built):
    config, out, summary = built
    assert summary["n_train"] == 8 and summary["n_test"] == 4
    for split, n in (("train", 8), ("test", 4)):
        s = sample_heads(config, split, 0, n)
        expected = render_heads(s, config)
        loaded = load_heads(out, split)
        image_u8 = ((expected["image"] + 1) * 127.5).round()
        assert torch.equal(((loaded["image"] + 1) * 127.5).round(), image_u8)
        assert loaded["image"].min() >= -1 and loaded["image"].max() <= 1
        assert torch.equal(loaded["depth"], expected["depth"])
        assert torch.equal(loaded["normal"], expected["normal"].half().float())
        assert torch.equal(loaded["mask"], expected["mask"])
        assert torch.equal(loaded["canonical_mask"], expected["canonical_mask"])
        assert torch.equal(loaded["canonical_depth"], expected["canonical_depth"].half().float())
        assert torch.equal(loaded["view"], s.view) and torch.equal(loaded["light"], s.light)
        assert torch.equal(loaded["shape_params"], s.shape)
        with read_artifact(out / f"{split}.h5", "heads") as art:
            assert art.ids == [f"{split}-{i:06d}" for i in range(n)]
            assert art.attrs["split"] == split and art.attrs["image_size"] == SIZE
            assert art.attrs["shape_param_names"] == list(hm.SHAPE_PARAM_NAMES)
            assert art.attrs["background_depth"] == pytest.approx(background_depth(config))
            assert art.array("image").dtype == np.uint8 and art.array("mask").dtype == np.uint8
            assert art.array("normal").dtype == np.float16 and art.array("depth").dtype == np.float32
    assert load_heads(out, "train", limit=3)["image"].shape == (3, 3, SIZE, SIZE)


def test_same_config_gives_bit_identical_files(built, tmp_path):
    config, out, _ = built
    make_heads(dataclasses.replace(config, batch_size=5), tmp_path, progress=False)
    for split in ("train", "test"):
        with read_artifact(out / f"{split}.h5") as a, read_artifact(tmp_path / f"{split}.h5") as b:
            assert a.names == b.names
            for name in a.names:
                assert np.array_equal(a.array(name), b.array(name)), (split, name)


def test_contact_sheets_are_written(built):
    from PIL import Image

    _, out, summary = built
    for key in ("contact_sheet", "contact_sheet_depth"):
        with Image.open(summary[key]) as img:
            assert img.mode == "RGB"
            # 8 heads in one row of 8 (images) or 16 (depth | normal) tiles, upscaled 6x at 32 px
            tiles = 8 if key == "contact_sheet" else 16
            assert img.size == (tiles * (SIZE * 6 + 2) + 2, SIZE * 6 + 4)
