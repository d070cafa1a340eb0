"""The renderer on analytic scenes: spheres and ellipsoids ray-cast in closed form."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from gan2shape.render import (
    Camera,
    canon_to_view_grid,
    depth_to_normals,
    depth_to_points,
    pixel_coordinates,
    render_view,
    rotation_matrix,
    unwarp_points,
    valid_mask,
    view_depth,
    view_to_canon_grid,
)

CAM = Camera(64)
SPHERE = dict(center=(0.005, -0.004, 1.02), axes=(0.07, 0.07, 0.07))
ELLIPSOID = dict(center=(-0.004, 0.003, 1.015), axes=(0.055, 0.074, 0.045))
VIEWS = torch.tensor(
    [
        [0.0, math.radians(30), 0.0, 0.0, 0.0, 0.0],  # yaw
        [0.0, math.radians(-25), 0.0, 0.0, 0.0, 0.0],
        [math.radians(30), 0.0, 0.0, 0.0, 0.0, 0.0],  # pitch
        [math.radians(-20), 0.0, 0.0, 0.0, 0.0, 0.0],
        [math.radians(20), math.radians(-22), math.radians(15), 0.004, -0.003, 0.01],  # combined + shift
    ],
    dtype=torch.float64,
)


def ray_cast(center, axes, view, camera):
    """Analytic depth of an axis-aligned ellipsoid (canonical frame) seen from `view`.

    The canonical point p_c relates to the view point p by p = R (p_c - r) + r + t, r = (0, 0, c_rot).
    Along the ray p = s * (K^-1 [x, y, 1]) (depth s), q(s) = D^-1 (p_c - center) = s a + b is
    affine in s; the nearest root of |q|^2 = 1 is the depth. Returns (N, S, S) depth (nan on a
    miss) and the (N, S, S, 3) hit points in the view frame.
    """
    s = camera.image_size
    rays = depth_to_points(torch.ones(1, s, s, dtype=torch.float64), camera)[0]  # (S, S, 3), z = 1
    rot = rotation_matrix(view[:, :3])  # (N, 3, 3)
    r = torch.tensor([0.0, 0.0, camera.rot_center_depth], dtype=torch.float64)
    inv_axes = 1.0 / torch.tensor(axes, dtype=torch.float64)
    a = torch.einsum("nji,hwj->nhwi", rot, rays) * inv_axes  # R^T d / axes
    b0 = torch.einsum("nji,nj->ni", rot, -view[:, 3:] - r) + r - torch.tensor(center, dtype=torch.float64)
    b = (b0 * inv_axes)[:, None, None, :]
    qa, qb, qc = (a * a).sum(-1), 2 * (a * b).sum(-1), (b * b).sum(-1) - 1
    disc = qb * qb - 4 * qa * qc
    depth = (-qb - disc.sqrt()) / (2 * qa)  # nan where disc < 0
    return depth, depth[..., None] * rays


def erode(mask, pixels):
    """Keep pixels whose (2*pixels+1)^2 neighbourhood lies in the mask. mask: (N, S, S) bool."""
    return -F.max_pool2d(-(mask.double()[:, None]), 2 * pixels + 1, 1, pixels)[:, 0] > 0.5


def interior_pixels(center, axes, view, camera, margin=3):
    """View pixels that see the object well inside its silhouette in both frames, at a point
    that the canonical camera also sees (not hidden there by the object itself)."""
    depth_v, hits = ray_cast(center, axes, view, camera)
    depth_c, _ = ray_cast(center, axes, torch.zeros(1, 6, dtype=torch.float64), camera)
    hit_v, hit_c = ~torch.isnan(depth_v), ~torch.isnan(depth_c)
    canon_points = unwarp_points(torch.where(hit_v[..., None], hits, 1.0), view, camera.rot_center_depth)
    pix = (canon_points[..., :2] / canon_points[..., 2:] * camera.focal + camera.center).round().long()
    pix = pix.clamp(0, camera.image_size - 1)
    inner_c = erode(hit_c, margin)[0]
    seen_depth = depth_c[0][pix[..., 1], pix[..., 0]]
    seen = inner_c[pix[..., 1], pix[..., 0]] & ((seen_depth - canon_points[..., 2]).abs() < 2e-3)
    return erode(hit_v, margin) & seen, depth_v


def canonical(center, axes, camera, background):
    depth, _ = ray_cast(center, axes, torch.zeros(1, 6, dtype=torch.float64), camera)
    mask = ~torch.isnan(depth)
    return torch.where(mask, depth, background), mask


@pytest.mark.parametrize("shape", [SPHERE, ELLIPSOID], ids=["sphere", "ellipsoid"])
@pytest.mark.parametrize("masked", [False, True], ids=["with-background", "masked"])
def test_view_depth_matches_ray_cast(shape, masked):
    canon, mask = canonical(shape["center"], shape["axes"], CAM, background=CAM.max_depth)
    n = VIEWS.shape[0]
    canon_f = canon.float().expand(n, -1, -1)
    mask = mask.expand(n, -1, -1) if masked else None
    rendered = view_depth(canon_f, VIEWS.float(), CAM, canon_mask=mask).double()
    interior, truth = interior_pixels(shape["center"], shape["axes"], VIEWS, CAM)
    depth_range = CAM.max_depth - CAM.min_depth
    for i in range(n):
        assert interior[i].sum() > 600, f"view {i}: too few interior pixels to judge"
        err = (rendered[i] - truth[i])[interior[i]].abs()
        assert err.mean() < 0.005 * depth_range, f"view {i}: mean abs error {err.mean():.2e}"
        assert err.max() < 0.02 * depth_range, f"view {i}: max abs error {err.max():.2e}"
    if masked:
        # Away from the object nothing is drawn: those pixels are invalid.
        hit_v = ~torch.isnan(truth)
        outside = ~hit_v & erode(~hit_v, 2)
        assert (valid_mask(rendered.float(), CAM)[:, 0][outside] == 0).all()


def test_sphere_normals_match_analytic():
    center = torch.tensor(SPHERE["center"], dtype=torch.float64)
    canon, mask = canonical(SPHERE["center"], SPHERE["axes"], CAM, background=CAM.max_depth)
    normals = depth_to_normals(canon, CAM)[0]
    points = depth_to_points(canon, CAM)[0]
    # Convention: n_z > 0 facing the camera, i.e. the inward normal (center - p) / radius.
    truth = (center - points) / SPHERE["axes"][0]
    inner = erode(mask, 2)[0]
    cosine = (normals * truth).sum(-1).clamp(-1, 1)
    angle = torch.rad2deg(torch.acos(cosine))[inner]
    assert inner.sum() > 1000
    assert angle.mean() < 1.0, f"mean angular error {angle.mean():.3f} deg"
    assert (normals[inner][:, 2] > 0).all()
    assert torch.allclose(normals.norm(dim=-1), torch.ones(()).double())


def test_identity_view_reproduces_depth_and_image():
    canon, _ = canonical(ELLIPSOID["center"], ELLIPSOID["axes"], CAM, background=CAM.border_depth)
    canon = canon.float().expand(2, -1, -1)
    texture = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0)) * 2 - 1
    view = torch.zeros(2, 6)
    out = render_view(texture, canon, view, CAM)
    # Every pixel centre is a mesh vertex: the depth and texture come back everywhere.
    torch.testing.assert_close(out.depth, canon, rtol=0, atol=2e-6)
    torch.testing.assert_close(out.image, texture, rtol=0, atol=2e-4)
    assert (out.mask == 1).all()
    torch.testing.assert_close(view_depth(canon, view, CAM), canon, rtol=0, atol=2e-6)


def test_render_view_moves_texture_with_the_surface():
    # Texture = canonical pixel coordinates; the rendered image must show, at each interior view
    # pixel, the canonical pixel that the analytic hit point projects to.
    canon, mask = canonical(ELLIPSOID["center"], ELLIPSOID["axes"], CAM, background=CAM.max_depth)
    n = VIEWS.shape[0]
    coords = pixel_coordinates(64, 64, dtype=torch.float64).permute(2, 0, 1)[None].expand(n, -1, -1, -1)
    background = torch.full((n, 2, 64, 64), -7.0)
    out = render_view(
        coords.float(),
        canon.float().expand(n, -1, -1),
        VIEWS.float(),
        CAM,
        canon_mask=mask.expand(n, -1, -1),
        background=background,
    )
    interior, truth = interior_pixels(ELLIPSOID["center"], ELLIPSOID["axes"], VIEWS, CAM)
    hits = truth[..., None] * depth_to_points(torch.ones(1, 64, 64, dtype=torch.float64), CAM)
    canon_points = unwarp_points(torch.nan_to_num(hits, nan=1.0), VIEWS, CAM.rot_center_depth)
    expect = canon_points[..., :2] / canon_points[..., 2:] * CAM.focal + CAM.center  # (N, S, S, 2)
    err = (out.image.double().permute(0, 2, 3, 1) - expect).norm(dim=-1)[interior]
    assert err.mean() < 0.05, f"mean texture position error {err.mean():.3f} px"
    assert (out.image[:, 0][out.mask[:, 0] == 0] == -7.0).all()
    assert out.mask.shape == (n, 1, 64, 64)


def test_warp_round_trip_returns_identity():
    # Smooth bump: canon -> view -> canon must land back on the same canonical pixel.
    s = 32
    cam = Camera(s)
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, s), torch.linspace(-1, 1, s), indexing="ij")
    depth = (1.04 - 0.04 * torch.exp(-(xs**2 + 1.5 * ys**2) / 0.5)).expand(3, -1, -1).double()
    view = torch.tensor(
        [[0.1, 0.25, 0.05, 0.002, 0.0, 0.0], [-0.2, -0.15, 0.0, 0.0, 0.003, 0.01], [0.0, 0.0, 0.0, 0.0, 0.0, 0.0]],
        dtype=torch.float64,
    )
    to_view = canon_to_view_grid(depth, view, cam)  # (N, S, S, 2)
    to_canon = view_to_canon_grid(view_depth(depth, view, cam), view, cam)
    back = F.grid_sample(to_canon.permute(0, 3, 1, 2), to_view, align_corners=True).permute(0, 2, 3, 1)
    identity = pixel_coordinates(s, s, dtype=torch.float64) / (s - 1) * 2 - 1
    interior = (to_view.abs() < 1 - 4 / (s - 1)).all(-1)
    interior[:, :3] = interior[:, -3:] = interior[:, :, :3] = interior[:, :, -3:] = False
    assert interior.sum() > 1000
    err_px = (back - identity).norm(dim=-1)[interior] * (s - 1) / 2
    assert err_px.max() < 0.05, f"round trip error {err_px.max():.3f} px"
    # Pure translation along x by one pixel's worth at depth 1 shifts the image by about a pixel.
    shift = torch.zeros(1, 6, dtype=torch.float64)
    shift[0, 3] = 1.0 / cam.focal
    flat = torch.ones(1, s, s, dtype=torch.float64)
    moved = canon_to_view_grid(flat, shift, cam)[0] * (s - 1) / 2
    torch.testing.assert_close(moved[..., 0] - identity[..., 0] * (s - 1) / 2, torch.ones(s, s).double())


def test_gradcheck_view_depth_and_render_view():
    s = 8
    cam = Camera(s)
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, s), torch.linspace(-1, 1, s), indexing="ij")
    depth = (1.0 - 0.04 * torch.exp(-(xs**2 + ys**2)))[None].double().requires_grad_(True)
    view = torch.tensor([[0.02, 0.04, 0.01, 0.0005, -0.0003, 0.0]], dtype=torch.float64, requires_grad=True)
    texture = torch.rand(1, 2, s, s, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    texture.requires_grad_(True)
    covered = valid_mask(view_depth(depth.detach(), view.detach(), cam), cam)[:, 0] > 0
    assert covered.sum() > 30

    def depth_of(d, v):
        return view_depth(d, v, cam)[covered]

    assert torch.autograd.gradcheck(depth_of, (depth, view), eps=1e-6, atol=1e-6)
    inner = covered.clone()
    inner[:, [0, -1]] = False
    inner[:, :, [0, -1]] = False

    def image_of(t, d):
        return render_view(t, d, view.detach(), cam).image.permute(0, 2, 3, 1)[inner]

    assert torch.autograd.gradcheck(image_of, (texture, depth), eps=1e-6, atol=1e-6)
    # The gradient really reaches the canonical depth.
    image_of(texture, depth).sum().backward()
    assert depth.grad.abs().sum() > 0
