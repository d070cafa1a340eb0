"""Camera, view transforms, shading and argument checks of gan2shape.render."""

from __future__ import annotations

import math

import pytest
import torch

from gan2shape.render import (
    Camera,
    canon_to_view_grid,
    depth_to_mesh,
    depth_to_normals,
    depth_to_points,
    lambertian,
    light_direction,
    pixels_to_grid,
    points_to_pixels,
    rasterize,
    render_view,
    rotation_matrix,
    shade,
    unwarp_points,
    valid_mask,
    view_depth,
    view_to_canon_grid,
    warp_points,
)


def test_camera_properties():
    cam = Camera(64)
    assert cam.focal == pytest.approx(31.5 / math.tan(math.radians(5.0)))
    assert cam.depth_margin == pytest.approx(0.1)
    assert cam.border_depth == pytest.approx(0.7 * 1.1 + 0.3 * 0.9)
    assert cam.depth_clamp == pytest.approx((0.8, 1.2))
    k = cam.intrinsics(dtype=torch.float64)
    assert k.shape == (3, 3) and k.dtype == torch.float64
    assert k[0, 2] == k[1, 2] == 31.5 and k[0, 0] == k[1, 1] == pytest.approx(cam.focal)


@pytest.mark.parametrize(
    "kwargs, word",
    [
        (dict(image_size=3), "image_size"),
        (dict(image_size=64.0), "image_size"),
        (dict(image_size=64, fov_deg=0.0), "fov_deg"),
        (dict(image_size=64, fov_deg=180.0), "fov_deg"),
        (dict(image_size=64, min_depth=1.1, max_depth=0.9), "min_depth"),
        (dict(image_size=64, min_depth=0.0), "min_depth"),
    ],
)
def test_camera_validation(kwargs, word):
    with pytest.raises(ValueError, match=word):
        Camera(**kwargs)


def test_points_pixels_round_trip_and_intrinsics():
    cam = Camera(16, fov_deg=30.0)
    depth = 0.5 + torch.rand(2, 16, 16, dtype=torch.float64)
    points = depth_to_points(depth, cam)
    assert torch.equal(points[..., 2], depth)
    # P = z K^-1 [x, y, 1], checked with the matrix.
    k_inv = torch.linalg.inv(cam.intrinsics(dtype=torch.float64))
    x, y = 5, 11
    expect = depth[1, y, x] * (k_inv @ torch.tensor([x, y, 1.0], dtype=torch.float64))
    torch.testing.assert_close(points[1, y, x], expect)
    pix = points_to_pixels(points, cam)
    torch.testing.assert_close(pix[..., 0], torch.arange(16.0).double().expand(2, 16, 16))
    torch.testing.assert_close(pix[..., 1], torch.arange(16.0).double()[:, None].expand(2, 16, 16))
    # Camera frame: x right (columns), y down (rows), z forward.
    assert points[0, 0, -1, 0] > 0 and points[0, -1, 0, 1] > 0
    grid = pixels_to_grid(pix, 16)
    assert grid[..., 0].min() == pytest.approx(-1) and grid[..., 0].max() == pytest.approx(1)


def test_rotation_matrix_convention():
    a, b, c = 0.3, -0.5, 0.7
    r = rotation_matrix(torch.tensor([[a, b, c]], dtype=torch.float64))[0]
    rx = torch.tensor([[1, 0, 0], [0, math.cos(a), -math.sin(a)], [0, math.sin(a), math.cos(a)]], dtype=torch.float64)
    ry = torch.tensor([[math.cos(b), 0, math.sin(b)], [0, 1, 0], [-math.sin(b), 0, math.cos(b)]], dtype=torch.float64)
    rz = torch.tensor([[math.cos(c), -math.sin(c), 0], [math.sin(c), math.cos(c), 0], [0, 0, 1]], dtype=torch.float64)
    torch.testing.assert_close(r, rx @ ry @ rz)
    torch.testing.assert_close(r @ r.T, torch.eye(3, dtype=torch.float64))
    assert torch.linalg.det(r) == pytest.approx(1.0)


def test_warp_and_unwarp_are_inverse_and_rotate_about_the_centre():
    gen = torch.Generator().manual_seed(0)
    view = torch.rand(3, 6, generator=gen, dtype=torch.float64) - 0.5
    points = torch.rand(3, 5, 7, 3, generator=gen, dtype=torch.float64) + torch.tensor([0.0, 0.0, 0.5])
    moved = warp_points(points, view, 1.0)
    assert moved.shape == points.shape
    torch.testing.assert_close(unwarp_points(moved, view, 1.0), points)
    # The rotation centre only moves by the translation.
    centre = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64).expand(3, 1, 3)
    torch.testing.assert_close(warp_points(centre, view, 1.0), centre + view[:, None, 3:])
    # Yaw by +90 deg about the centre: R_y(90) maps the offset (0, 0, -0.1) to (-0.1, 0, 0).
    yaw = torch.tensor([[0.0, math.pi / 2, 0, 0, 0, 0]], dtype=torch.float64)
    front = torch.tensor([[[0.0, 0.0, 0.9]]], dtype=torch.float64)
    torch.testing.assert_close(warp_points(front, yaw, 1.0), torch.tensor([[[-0.1, 0.0, 1.0]]], dtype=torch.float64))


def test_plane_normals_and_shading():
    cam = Camera(16)
    flat = torch.full((2, 16, 16), 1.0)
    normals = depth_to_normals(flat, cam)
    assert torch.equal(normals, torch.tensor([0.0, 0.0, 1.0]).expand(2, 16, 16, 3))
    albedo = torch.rand(2, 3, 16, 16) * 2 - 1
    ambient = torch.tensor([0.3, 0.5])
    diffuse = torch.tensor([0.6, 0.2])
    # Light (0, 0) is frontal: shading = ka + kd.
    texture, shading = shade(albedo, normals, ambient, diffuse, light_direction(torch.zeros(2, 2)))
    assert shading.shape == (2, 1, 16, 16)
    torch.testing.assert_close(shading, (ambient + diffuse)[:, None, None, None].expand(2, 1, 16, 16))
    torch.testing.assert_close(texture, (albedo / 2 + 0.5) * shading * 2 - 1)
    # Oblique light: <n, l> = 1 / |(lx, ly, 1)|.
    light = torch.tensor([[0.5, -0.3], [-1.0, 2.0]])
    lam = lambertian(normals, light_direction(light))
    expect = 1 / torch.sqrt(1 + (light**2).sum(1))
    torch.testing.assert_close(lam, expect[:, None, None, None].expand(2, 1, 16, 16))


def test_tilted_plane_normal_and_light_from_behind():
    # Plane z = 1 + 0.5 x (receding to the right): our normal is (-0.5, 0, 1) / |.|.
    cam = Camera(16)
    pix = torch.arange(16, dtype=torch.float64)
    ray_x = (pix - cam.center) / cam.focal
    depth = (1.0 / (1.0 - 0.5 * ray_x)).expand(1, 16, 16).clone()
    normals = depth_to_normals(depth, cam)[0, 1:-1, 1:-1]
    expect = torch.tensor([-0.5, 0.0, 1.0], dtype=torch.float64) / math.sqrt(1.25)
    torch.testing.assert_close(normals, expect.expand_as(normals))
    light = light_direction(torch.tensor([[-2.0, 0.0], [10.0, 0.0]], dtype=torch.float64))
    lam = lambertian(depth_to_normals(depth, cam).expand(2, -1, -1, -1), light)[:, 0, 1:-1, 1:-1]
    assert lam[0].allclose(torch.tensor((1.0 + 1.0) / math.sqrt(1.25 * 5), dtype=torch.float64))
    assert (lam[1] == 0).all()  # light from behind the surface: clamped
    _, shading = shade(
        torch.zeros(2, 3, 16, 16, dtype=torch.float64),
        depth_to_normals(depth, cam).expand(2, -1, -1, -1),
        torch.tensor([0.25, 0.25], dtype=torch.float64),
        torch.tensor([0.5, 0.5], dtype=torch.float64),
        light,
    )
    assert (shading[1, 0, 1:-1, 1:-1] == 0.25).all()


def test_valid_mask_marks_clamped_pixels():
    cam = Camera(8)
    lower, upper = cam.depth_clamp
    depth = torch.full((1, 8, 8), 1.0)
    depth[0, 0, 0] = 5.0
    rendered = view_depth(depth, torch.zeros(1, 6), cam)
    assert rendered[0, 0, 0] == torch.tensor(upper)  # clamped at the far end
    mask = valid_mask(rendered, cam)
    assert mask.shape == (1, 1, 8, 8) and mask.dtype == torch.float32
    assert mask[0, 0, 0, 0] == 0 and mask.sum() == 63
    # A view that moves the surface out of the image leaves nothing valid.
    away = torch.tensor([[0.0, 0.0, 0.0, 1.0, 0.0, 0.0]])
    assert valid_mask(view_depth(depth, away, cam), cam).sum() == 0
    assert (view_depth(depth, away, cam) == torch.tensor(upper)).all()


def test_float64_and_mesh_shapes():
    cam = Camera(8)
    depth = torch.ones(2, 8, 8, dtype=torch.float64)
    verts, faces = depth_to_mesh(depth, cam)
    assert verts.shape == (2, 64, 3) and faces.shape == (2 * 7 * 7, 3)
    out = render_view(torch.zeros(2, 3, 8, 8, dtype=torch.float64), depth, torch.zeros(2, 6, dtype=torch.float64), cam)
    assert out.image.dtype == out.depth.dtype == out.mask.dtype == torch.float64


def _expect_error(word, fn, *args, **kwargs):
    with pytest.raises(ValueError, match=word):
        fn(*args, **kwargs)


def test_wrong_shapes_name_the_argument():
    cam = Camera(8)
    d = torch.ones(2, 8, 8)
    v = torch.zeros(2, 6)
    t = torch.zeros(2, 3, 8, 8)
    _expect_error("depth", depth_to_points, torch.ones(8, 8), cam)
    _expect_error("depth", depth_to_points, torch.ones(2, 9, 9), cam)  # camera is 8 x 8
    _expect_error("points", points_to_pixels, torch.ones(2, 4), cam)
    _expect_error("pixels", pixels_to_grid, torch.ones(2, 3), 8)
    _expect_error("angles", rotation_matrix, torch.zeros(2, 2))
    _expect_error("view", warp_points, torch.ones(2, 5, 3), torch.zeros(2, 5), 1.0)
    _expect_error("points", warp_points, torch.ones(3, 5, 3), v, 1.0)
    _expect_error("canon_depth", view_depth, torch.ones(2, 8), v, cam)
    _expect_error("view", view_depth, d, torch.zeros(3, 6), cam)
    _expect_error("canon_mask", view_depth, d, v, cam, canon_mask=torch.ones(2, 8, 8))  # float, not bool
    _expect_error("canon_mask", view_depth, d, v, cam, canon_mask=torch.ones(2, 7, 8, dtype=torch.bool))
    _expect_error("view_depth", valid_mask, torch.ones(2, 1, 8, 8), cam)
    _expect_error("view_depth", view_to_canon_grid, torch.ones(2, 1, 8, 8), v, cam)
    _expect_error("view", canon_to_view_grid, d, torch.zeros(2, 3), cam)
    _expect_error("canon_texture", render_view, torch.zeros(2, 8, 8), d, v, cam)
    _expect_error("canon_depth", render_view, t, torch.ones(3, 8, 8), v, cam)
    _expect_error("background", render_view, t, d, v, cam, background=torch.zeros(2, 1, 8, 8))
    _expect_error("vertices", rasterize, torch.ones(2, 5), torch.zeros(1, 3, dtype=torch.long), cam)
    _expect_error("faces", rasterize, torch.ones(2, 5, 3), torch.zeros(1, 3), cam)  # float faces
    _expect_error("faces", rasterize, torch.ones(2, 5, 3), torch.tensor([[0, 1, 5]]), cam)  # out of range
    _expect_error(
        "face_mask",
        rasterize,
        torch.ones(2, 5, 3),
        torch.zeros(1, 3, dtype=torch.long),
        cam,
        face_mask=torch.ones(2, 2, dtype=torch.bool),
    )
    n = torch.zeros(2, 8, 8, 3)
    _expect_error("light_xy", light_direction, torch.zeros(2, 3))
    _expect_error("normals", lambertian, torch.zeros(2, 8, 8), torch.zeros(2, 3))
    _expect_error("light_dir", lambertian, n, torch.zeros(3, 3))
    _expect_error("albedo", shade, torch.zeros(2, 1, 8, 8), n, torch.zeros(2), torch.zeros(2), torch.zeros(2, 3))
    _expect_error("ambient", shade, t, n, torch.zeros(2, 1), torch.zeros(2), torch.zeros(2, 3))
    _expect_error("diffuse", shade, t, n, torch.zeros(2), torch.zeros(3), torch.zeros(2, 3))
