"""The mesh preview (gan2shape.export.preview): analytic shading of planes, light direction, layout.

Checks: a plane through the rotation centre seen at yaw t, lit from the camera, is one uniform
gray gray * (ambient + diffuse * cos t) (exact up to uint8 rounding) on a white background; with
pitch the cosine is cos(pitch) * cos(yaw); a bump lit from the left is brighter on its left half,
and mirroring the light mirrors the picture; the exporter writes mesh_preview.png.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from gan2shape.export import PREVIEW_FILE, export_instance, mesh_preview
from gan2shape.imaging import to_uint8
from gan2shape.render import Camera

S = 24


def _levels(img: np.ndarray) -> dict[int, int]:
    values, counts = np.unique(img, return_counts=True)
    return dict(zip(values.tolist(), counts.tolist()))


@pytest.mark.parametrize("yaw, pitch", [(0.0, 0.0), (40.0, 0.0), (-25.0, 0.0), (30.0, 20.0)])
def test_plane_shading_is_the_cosine_of_the_view_angle(yaw, pitch):
    cam = Camera(S)
    ka, kd, gray = 0.25, 0.7, 0.8
    img = mesh_preview(
        torch.full((S, S), cam.rot_center_depth),
        cam,
        yaw_deg=yaw,
        pitch_deg=pitch,
        light_xy=(0.0, 0.0),
        ambient=ka,
        diffuse=kd,
        gray=gray,
        scale=2,
    )
    assert img.shape == (2 * S, 2 * S, 3) and img.dtype == np.uint8
    assert np.array_equal(img[..., 0], img[..., 1]) and np.array_equal(img[..., 0], img[..., 2])
    # R = Rx(pitch) Ry(yaw): the plane's normal (0, 0, 1) turns to z = cos(pitch) cos(yaw)
    cosine = math.cos(math.radians(pitch)) * math.cos(math.radians(yaw))
    expected = int(to_uint8(np.array(gray * (ka + kd * cosine))))
    levels = _levels(img[..., 0])
    assert set(levels) <= {expected, 255}, levels
    surface = levels.get(expected, 0) / img[..., 0].size
    # the turned plane still covers most of the picture (its width shrinks about by cos(yaw))
    assert surface > 0.6 * cosine
    if yaw == 0.0 and pitch == 0.0:
        assert surface == 1.0


def test_light_from_the_left_brightens_the_left_half_and_mirrors():
    cam = Camera(S)
    y, x = torch.meshgrid(torch.linspace(-1, 1, S), torch.linspace(-1, 1, S), indexing="ij")
    bump = cam.rot_center_depth - 0.06 * (1 - x**2 - y**2).clamp(min=0).sqrt()
    left = mesh_preview(bump, cam, yaw_deg=0.0, pitch_deg=0.0, light_xy=(0.8, 0.0), scale=1).astype(float)
    right = mesh_preview(bump, cam, yaw_deg=0.0, pitch_deg=0.0, light_xy=(-0.8, 0.0), scale=1).astype(float)
    half = S // 2
    assert left[:, :half].mean() > left[:, half:].mean() + 20
    # a mirror-symmetric bump: mirroring the light mirrors the picture (the rasterizer's diagonal
    # split is not mirror-symmetric, hence a few levels of tolerance)
    assert np.abs(left[:, ::-1] - right)[2:-2, 2:-2].max() <= 4


def test_bad_arguments_and_exporter_file(tmp_path):
    cam = Camera(S)
    depth = torch.ones(S, S)
    with pytest.raises(ValueError, match="scale"):
        mesh_preview(depth, cam, scale=0)
    with pytest.raises(ValueError, match="gray"):
        mesh_preview(depth, cam, gray=1.5)
    with pytest.raises(ValueError):
        mesh_preview(torch.ones(S + 1, S + 1), cam)
    written = export_instance(
        tmp_path, cam, depth, torch.zeros(3, S, S), torch.zeros(6), torch.zeros(4), what=("preview",)
    )
    assert written[PREVIEW_FILE] == tmp_path / PREVIEW_FILE and (tmp_path / PREVIEW_FILE).stat().st_size > 0
