"""The vectorised z-buffer against a slow, obviously-correct reference, plus its invariants."""

from __future__ import annotations

import math

import pytest
import torch

from gan2shape.render import Camera, depth_to_mesh, grid_faces, rasterize, warp_points

NEAR = 1e-3


def reference_rasterize(vertices, faces, camera, face_mask=None, near=NEAR):
    """Loops over images, pixels and faces; float64 barycentrics by Cramer's rule; the nearest
    face wins and ties go to the lowest face index (strict <)."""
    n = vertices.shape[0]
    s = camera.image_size
    f, c = camera.focal, camera.center
    depth = torch.full((n, s, s), math.inf, dtype=torch.float64)
    index = torch.full((n, s, s), -1, dtype=torch.long)
    bary = torch.zeros((n, s, s, 3), dtype=torch.float64)
    verts = vertices.double().tolist()
    for b in range(n):
        projected = []
        for k, tri in enumerate(faces.tolist()):
            pts = [verts[b][i] for i in tri]
            drawable = all(p[2] > near for p in pts) and (face_mask is None or bool(face_mask[b, k]))
            projected.append([(f * p[0] / p[2] + c, f * p[1] / p[2] + c, p[2]) for p in pts] if drawable else None)
        for y in range(s):
            for x in range(s):
                for k, tri in enumerate(projected):
                    if tri is None:
                        continue
                    (u0, v0, z0), (u1, v1, z1), (u2, v2, z2) = tri
                    den = (u1 - u0) * (v2 - v0) - (u2 - u0) * (v1 - v0)
                    if den == 0:
                        continue
                    l1 = ((x - u0) * (v2 - v0) - (u2 - u0) * (y - v0)) / den
                    l2 = ((u1 - u0) * (y - v0) - (x - u0) * (v1 - v0)) / den
                    l0 = 1.0 - l1 - l2
                    if min(l0, l1, l2) < 0:
                        continue
                    z = 1.0 / (l0 / z0 + l1 / z1 + l2 / z2)
                    if z < depth[b, y, x]:
                        depth[b, y, x] = z
                        index[b, y, x] = k
                        bary[b, y, x] = torch.tensor([l0, l1, l2], dtype=torch.float64)
    return depth, index, bary


def random_soup(n_images, n_faces, camera, generator):
    """Random triangles in pixel space (some partly off-screen) back-projected at random depths."""
    s = camera.image_size
    pix = torch.rand(n_images, n_faces * 3, 2, generator=generator, dtype=torch.float64) * (s + 6) - 3
    z = 0.8 + 0.5 * torch.rand(n_images, n_faces * 3, 1, generator=generator, dtype=torch.float64)
    xyz = torch.cat([(pix - camera.center) / camera.focal * z, z], dim=-1)
    faces = torch.arange(n_faces * 3).view(n_faces, 3)
    return xyz, faces


def test_matches_reference_on_random_triangle_soup():
    cam = Camera(12)
    gen = torch.Generator().manual_seed(3)
    verts, faces = random_soup(3, 9, cam, gen)
    verts[1, 4, 2] = -0.5  # a vertex behind the camera: its face must not be drawn
    verts[2, 7, 2] = NEAR / 2  # and one in front of the camera but behind the near plane
    mask = torch.rand(3, 9, generator=gen) > 0.2
    for face_mask in (None, mask):
        frag = rasterize(verts, faces, cam, face_mask, near=NEAR)
        ref_depth, ref_index, ref_bary = reference_rasterize(verts, faces, cam, face_mask)
        assert (ref_index >= 0).float().mean() > 0.3, "scene should cover a good part of the image"
        assert torch.equal(frag.face_index, ref_index)
        assert torch.equal(torch.isinf(frag.depth), torch.isinf(ref_depth))
        hit = ref_index >= 0
        torch.testing.assert_close(frag.depth[hit], ref_depth[hit], rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(frag.bary[hit], ref_bary[hit], rtol=1e-8, atol=1e-9)
        assert (frag.bary[~hit] == 0).all()
    assert not (frag.face_index[1] == 1).any()  # face 1 holds vertex 4 of image 1
    assert not (frag.face_index[2] == 2).any()  # face 2 holds vertex 7 of image 2


def test_matches_reference_on_rotated_depth_mesh_float32():
    cam = Camera(10)
    gen = torch.Generator().manual_seed(5)
    depth = 1.0 + 0.05 * torch.rand(2, 10, 10, generator=gen)
    verts, faces = depth_to_mesh(depth, cam)
    view = torch.tensor([[0.1, -0.2, 0.05, 0.002, 0.0, 0.01], [-0.15, 0.3, 0.0, 0.0, 0.003, 0.0]])
    verts = warp_points(verts, view, cam.rot_center_depth)
    frag = rasterize(verts, faces, cam)
    ref_depth, ref_index, _ = reference_rasterize(verts, faces, cam)
    assert torch.equal(frag.face_index >= 0, ref_index >= 0)
    hit = ref_index >= 0
    torch.testing.assert_close(frag.depth[hit], ref_depth[hit].float(), rtol=1e-5, atol=1e-6)
    # Where two faces meet at a pixel (shared edge) either may win; elsewhere the winner is unique.
    same = frag.face_index == ref_index
    assert same.float().mean() > 0.9


def test_result_does_not_depend_on_chunking_or_winding():
    cam = Camera(16)
    gen = torch.Generator().manual_seed(7)
    verts, faces = random_soup(2, 30, cam, gen)
    verts = verts.float()
    base = rasterize(verts, faces, cam)
    for chunk in (1, 7, 64):
        other = rasterize(verts, faces, cam, max_candidates=chunk)
        assert torch.equal(other.face_index, base.face_index)
        assert torch.equal(other.depth, base.depth)
    flipped = rasterize(verts, faces.flip(1), cam)
    assert torch.equal(flipped.face_index, base.face_index)
    torch.testing.assert_close(flipped.depth, base.depth, rtol=1e-6, atol=0.0)
    torch.testing.assert_close(flipped.bary, base.bary.flip(-1), rtol=1e-4, atol=1e-5)


def test_large_triangle_covers_exactly_the_pixels_inside():
    # One triangle much larger than 2x2 pixels goes through the candidate-expansion path.
    cam = Camera(20)
    corners = torch.tensor([[1.5, 2.2], [18.3, 4.7], [6.1, 17.9]], dtype=torch.float64)
    z = torch.tensor([[0.9], [1.0], [1.1]], dtype=torch.float64)
    verts = torch.cat([(corners - cam.center) / cam.focal * z, z], dim=-1)[None]
    faces = torch.tensor([[0, 1, 2]])
    frag = rasterize(verts, faces, cam)
    ref_depth, ref_index, _ = reference_rasterize(verts, faces, cam)
    assert (ref_index == 0).sum() > 100
    assert torch.equal(frag.face_index, ref_index)
    torch.testing.assert_close(frag.depth[ref_index == 0], ref_depth[ref_index == 0], rtol=1e-12, atol=0.0)


@pytest.mark.parametrize("seed", range(4))
def test_depth_mesh_is_watertight(seed):
    # A wavy surface wider than the field of view, seen from random views: no pixel may be missed.
    cam = Camera(24)
    wide = Camera(40, fov_deg=16.0)
    gen = torch.Generator().manual_seed(seed)
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, 40), torch.linspace(-1, 1, 40), indexing="ij")
    phase = torch.rand(4, 2, 1, 1, generator=gen) * 6
    depth = 1.0 + 0.02 * torch.sin(3 * xs + phase[:, 0]) * torch.cos(2 * ys + phase[:, 1])
    verts, faces = depth_to_mesh(depth, wide)
    view = (torch.rand(4, 6, generator=gen) * 2 - 1) * torch.tensor([0.08, 0.08, 0.3, 0.004, 0.004, 0.02])
    view[0] = 0
    frag = rasterize(warp_points(verts, view, 1.0), faces, cam)
    assert (frag.face_index >= 0).all()


def test_identity_mesh_covers_every_pixel_centre():
    # Vertices project onto pixel centres: the degenerate case for edge tests.
    cam = Camera(16)
    depth = 1.0 + 0.05 * torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(0))
    verts, faces = depth_to_mesh(depth, cam)
    frag = rasterize(verts, faces, cam)
    assert (frag.face_index >= 0).all()
    torch.testing.assert_close(frag.depth, depth, rtol=1e-6, atol=0.0)


def test_pixel_centres_on_shared_edges_are_covered():
    # Vertices on even pixel coordinates (at random depths): the midpoints of horizontal, vertical
    # and diagonal edges are pixel centres, up to rounding. Each must be covered by some face
    # (those on the mesh's outline may fall just outside it). Evaluating shared edges without the
    # canonical endpoint order leaves rare pinholes here.
    cam = Camera(65)
    gen = torch.Generator().manual_seed(0)
    ys, xs = torch.meshgrid(torch.arange(0, 65, 2.0), torch.arange(0, 65, 2.0), indexing="ij")
    pix = torch.stack([xs, ys], dim=-1).reshape(1, -1, 2).expand(64, -1, -1)
    z = 0.9 + 0.2 * torch.rand(64, pix.shape[1], 1, generator=gen)
    verts = torch.cat([(pix - cam.center) / cam.focal * z, z], dim=-1)
    frag = rasterize(verts, grid_faces(33, 33), cam)
    assert (frag.face_index[:, 1:-1, 1:-1] >= 0).all()


def test_empty_and_fully_hidden_inputs():
    cam = Camera(8)
    verts = torch.rand(2, 3, 3) + torch.tensor([0.0, 0.0, 1.0])
    faces = torch.tensor([[0, 1, 2]])
    frag = rasterize(verts, faces, cam, face_mask=torch.zeros(2, 1, dtype=torch.bool))
    assert (frag.face_index == -1).all() and torch.isinf(frag.depth).all() and (frag.bary == 0).all()
    frag = rasterize(verts, torch.zeros(0, 3, dtype=torch.long), cam)
    assert (frag.face_index == -1).all()


def test_gradcheck_depth_wrt_vertices():
    cam = Camera(8)
    # Two faces over the middle of the image, pixel centres well away from their edges.
    corners = torch.tensor([[0.6, 0.3], [6.7, 0.4], [0.4, 6.6], [6.6, 6.8]], dtype=torch.float64)
    z = torch.tensor([[0.95], [1.0], [1.05], [1.02]], dtype=torch.float64)
    verts = torch.cat([(corners - cam.center) / cam.focal * z, z], dim=-1)[None].requires_grad_(True)
    faces = torch.tensor([[0, 1, 2], [1, 3, 2]])
    covered = rasterize(verts.detach(), faces, cam).face_index >= 0
    assert covered.sum() >= 20

    def depth_of(v):
        return rasterize(v, faces, cam).depth[covered]

    assert torch.autograd.gradcheck(depth_of, (verts,), eps=1e-6, atol=1e-6)
    # Barycentrics are differentiable too.
    assert torch.autograd.gradcheck(lambda v: rasterize(v, faces, cam).bary[covered], (verts,), eps=1e-6, atol=1e-6)


def test_grid_faces_layout_and_winding():
    faces = grid_faces(3, 4)
    assert faces.shape == (2 * 2 * 3, 3) and faces.dtype == torch.long
    assert faces[0].tolist() == [0, 1, 4] and faces[1].tolist() == [1, 5, 4]
    # Every face has the same (positive) orientation in (x=col, y=row) pixel coordinates.
    pos = torch.stack([torch.arange(12) % 4, torch.arange(12) // 4], dim=1).double()
    e1, e2 = pos[faces[:, 1]] - pos[faces[:, 0]], pos[faces[:, 2]] - pos[faces[:, 0]]
    area2 = e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]
    assert (area2 == 1).all()
    # Consistent winding: no directed edge repeats, and only the 2*(3+2) edges of the grid's
    # outline lack their reverse (every interior edge is used once in each direction).
    directed = {(int(a), int(b)) for f in faces for a, b in ((f[0], f[1]), (f[1], f[2]), (f[2], f[0]))}
    assert len(directed) == 3 * faces.shape[0]
    assert sum((b, a) not in directed for a, b in directed) == 10


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu():
    cam = Camera(32)
    gen = torch.Generator().manual_seed(2)
    verts, faces = random_soup(4, 200, cam, gen)
    verts = verts.float()
    mask = torch.rand(4, 200, generator=gen) > 0.1
    cpu = rasterize(verts, faces, cam, mask)
    gpu = rasterize(verts.cuda(), faces.cuda(), cam, mask.cuda())
    assert torch.equal(gpu.face_index.cpu(), cpu.face_index)
    torch.testing.assert_close(gpu.depth.cpu(), cpu.depth, rtol=1e-5, atol=0.0)
    torch.testing.assert_close(gpu.bary.cpu(), cpu.bary, rtol=1e-4, atol=1e-5)


def test_vertex_gradients_are_bitwise_repeatable_on_several_threads():
    # Every pixel's gradient goes to the same few vertices (two triangles cover the image), so the
    # backward's sums collide across threads; on a multi-core CPU they must still add in a fixed
    # order, or seeded runs drift apart.
    cam = Camera(64)
    n = 1  # one image: the threads of the backward share its vertices
    corners = torch.tensor([[-1.0, -1.0], [1.0, -1.0], [-1.0, 1.0], [1.0, 1.0]]) * 0.2
    gen = torch.Generator().manual_seed(0)
    z = 1.0 + 0.05 * torch.rand(n, 4, 1, generator=gen)
    vertices = torch.cat([corners.expand(n, 4, 2) * z, z], dim=2).requires_grad_()
    faces = torch.tensor([[0, 1, 2], [1, 3, 2]])
    weight = torch.randn(n, 64, 64, generator=gen)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        grads = []
        for _ in range(10):
            vertices.grad = None
            depth = rasterize(vertices, faces, cam).depth
            (torch.where(depth.isfinite(), depth, 0.0) * weight).sum().backward()
            grads.append(vertices.grad.clone())
    finally:
        torch.set_num_threads(threads)
    assert vertices.grad.abs().sum() > 0
    assert all(torch.equal(g, grads[0]) for g in grads)
