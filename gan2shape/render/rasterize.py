"""A vectorised, differentiable z-buffer rasterizer for triangle meshes, in pure PyTorch.

How it works (no Python loop over triangles or pixels):
1. Visibility, without grad. Vertices are projected to pixels. Each face in front of the camera
   (all three z > near) with non-zero area gets its integer pixel bounding box. Faces are grouped
   by box size into a handful of buckets (1, 2, 4, ..., 64 pixels); in each bucket every
   (face, box pixel) pair is tested at once as a dense (faces, K) array. Faces with larger boxes
   (slivers at depth discontinuities) are expanded into exact (face, pixel) candidate lists with
   repeat_interleave. Work is split into chunks of at most `max_candidates` tests to bound memory.
   A pixel is kept when its centre passes the three edge tests; its depth is interpolated
   perspective-correctly (1/z is affine in screen space). The depth (as float32 bits, which order
   like the numbers for positive floats) and the face index are packed into one int64 and reduced
   per pixel with scatter_reduce(amin): the nearest face wins and equal depths go to the lowest
   face index.
2. Depth with grad. For each covered pixel the winning face's vertices are gathered from the
   input (with grad), projected, and the pixel's barycentrics and perspective-correct depth are
   recomputed, so gradients flow from the rendered depth to the vertex positions.

Watertightness: the edge function of an edge shared by two faces is evaluated with the edge's
endpoints in one canonical order (lower vertex index first) and negated for the face that runs
the other way; negation is exact in floating point, so a pixel centre on a shared edge is inside
at least one of the two faces (the test is inclusive: edge functions >= 0) and a mesh without
folds has no pinholes. Both windings are rasterized (no back-face culling).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ._checks import check_same_device, check_tensor
from .camera import Camera

__all__ = ["Fragments", "rasterize"]

_EMPTY = torch.iinfo(torch.int64).max  # z-buffer value of a pixel that no face covers
_LOW32 = 0xFFFFFFFF
_DENSE_MAX = 64  # faces whose box has more pixels get exact candidate lists (see _draw)


@dataclass
class Fragments:
    """Per-pixel result of rasterization, for N images of S x S pixels.

    depth: (N, S, S) float, the camera-frame z of the nearest face; +inf where no face.
    face_index: (N, S, S) long, index into faces (0..F-1) of that face; -1 where no face.
    bary: (N, S, S, 3) float, screen-space barycentric weights of the face's three vertices (in
        the order of faces[face_index]) at the pixel centre, each in [0, 1]; 0 where no face.
    """

    depth: torch.Tensor
    face_index: torch.Tensor
    bary: torch.Tensor


def _project(vertices: torch.Tensor, camera: Camera) -> torch.Tensor:
    return vertices[..., :2] / vertices[..., 2:3] * camera.focal + camera.center


def rasterize(
    vertices: torch.Tensor,
    faces: torch.Tensor,
    camera: Camera,
    face_mask: torch.Tensor | None = None,
    *,
    near: float = 1e-3,
    max_candidates: int = 1 << 22,
) -> Fragments:
    """Rasterize N meshes sharing one face list into N depth buffers of camera.image_size pixels.

    vertices: (N, V, 3) float, camera frame (x right, y down, z forward); faces with a vertex at
        z <= near are not drawn.
    faces: (F, 3) long, vertex indices in [0, V); either winding.
    camera: gives the projection and the image size S.
    face_mask: (N, F) bool or None; False hides a face in that image.
    near: near-plane depth, > 0.
    max_candidates: most (face, pixel) pairs held at once (memory bound); results do not depend on it.
    Returns Fragments with depth (N, S, S) (+inf where no face; differentiable w.r.t. vertices),
    face_index (N, S, S) long (-1 where none) and bary (N, S, S, 3).
    """
    dims = check_tensor("vertices", vertices, ("N", "V", 3))
    check_tensor("faces", faces, ("F", 3), dims, floating=False)
    if faces.dtype != torch.long:
        raise ValueError(f"faces must be a long (int64) tensor, got dtype {faces.dtype}; use faces.long()")
    if face_mask is not None:
        check_tensor("face_mask", face_mask, ("N", "F"), dims, floating=False)
        if face_mask.dtype != torch.bool:
            raise ValueError(f"face_mask must be a bool tensor, got dtype {face_mask.dtype}")
    check_same_device(vertices=vertices, faces=faces, face_mask=face_mask)
    if faces.numel() and (int(faces.min()) < 0 or int(faces.max()) >= dims["V"]):
        raise ValueError(
            f"faces must index vertices in [0, {dims['V']}), got values in [{int(faces.min())}, {int(faces.max())}]"
        )
    if not near > 0:
        raise ValueError(f"near must be > 0, got {near!r}")
    if max_candidates < 1:
        raise ValueError(f"max_candidates must be >= 1, got {max_candidates!r}")

    n, s = dims["N"], camera.image_size
    with torch.no_grad():
        zbuf = _visibility(vertices.detach(), faces, camera, face_mask, near, max_candidates)
    return _fragments(vertices, faces, camera, zbuf.view(n, s, s))


def _visibility(
    vertices: torch.Tensor,
    faces: torch.Tensor,
    camera: Camera,
    face_mask: torch.Tensor | None,
    near: float,
    max_candidates: int,
) -> torch.Tensor:
    """Packed z-buffer (N*S*S,) int64: (float32 depth bits << 32) | face index; _EMPTY if none."""
    n, f_count, s = vertices.shape[0], faces.shape[0], camera.image_size
    zbuf = torch.full((n * s * s,), _EMPTY, dtype=torch.long, device=vertices.device)
    if f_count == 0 or n == 0:
        return zbuf
    # Edge k of a face runs from its vertex k to k+1; `swap` marks edges whose canonical order
    # (lower vertex index first) is the reverse. It depends on the faces only.
    swap = faces > faces.roll(-1, dims=1)
    # Images are drawn in groups so that per-face temporaries stay small (memory, cache).
    group = max(1, max_candidates // (4 * f_count))
    for first in range(0, n, group):
        last = min(n, first + group)
        _draw(
            vertices[first:last],
            faces,
            swap,
            camera,
            None if face_mask is None else face_mask[first:last],
            near,
            max_candidates,
            zbuf[first * s * s : last * s * s],
        )
    return zbuf


def _draw(
    vertices: torch.Tensor,
    faces: torch.Tensor,
    swap: torch.Tensor,
    camera: Camera,
    face_mask: torch.Tensor | None,
    near: float,
    max_candidates: int,
    zbuf: torch.Tensor,
) -> None:
    """Z-buffer a group of G images into zbuf (G*S*S,) in place (see _visibility)."""
    g, f_count, s = vertices.shape[0], faces.shape[0], camera.image_size
    dtype, device = vertices.dtype, vertices.device
    # Pixel coordinates relative to the principal point: pixel centres are then exact (half-)
    # integers and magnitudes stay small, which keeps the edge functions accurate.
    c = camera.center
    z = vertices[..., 2]
    u = vertices[..., 0] / z * camera.focal
    v = vertices[..., 1] / z * camera.focal
    flat = faces.flatten()
    fu = u.index_select(1, flat).view(g, f_count, 3)
    fv = v.index_select(1, flat).view(g, f_count, 3)
    fz = z.index_select(1, flat).view(g, f_count, 3)
    valid = (fz > near).all(dim=2)
    if face_mask is not None:
        valid &= face_mask

    # Integer pixel bounding boxes, clipped to the image (clamping first keeps huge or non-finite
    # coordinates of faces near the near plane out of the integer conversion).
    def box(coord: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        lo = (coord.amin(dim=2) + c).clamp(-1.0, float(s)).ceil().clamp(min=0).long()
        hi = (coord.amax(dim=2) + c).clamp(-1.0, float(s)).floor().clamp(max=s - 1).long()
        return lo, (hi - lo + 1).clamp(min=0)

    x0, width = box(fu)
    y0, height = box(fv)
    sel = (valid & (width > 0) & (height > 0)).flatten().nonzero().squeeze(1)  # as image * F + face
    if sel.numel() == 0:
        return
    fu, fv = fu.view(-1, 3).index_select(0, sel), fv.view(-1, 3).index_select(0, sel)
    fz = fz.view(-1, 3).index_select(0, sel)
    x0, y0 = x0.flatten().index_select(0, sel), y0.flatten().index_select(0, sel)
    width, height = width.flatten().index_select(0, sel), height.flatten().index_select(0, sel)
    face_id = sel.remainder(f_count)
    key0 = torch.div(sel, f_count, rounding_mode="floor") * (s * s) + y0 * s + x0  # box corner's pixel

    # Edge functions E_k(x, y) = A_k x + B_k y + C_k from the edge's endpoints in canonical order,
    # then negated where needed (exact in floating point), so two faces sharing an edge get
    # exactly opposite values: watertight. The sign makes "inside" E >= 0 on all three edges for
    # either winding; then E_k / |2 area| is the barycentric weight of vertex k+2 (opposite edge k).
    sw = swap.index_select(0, face_id)
    u1, v1 = fu.roll(-1, dims=1), fv.roll(-1, dims=1)
    ax, ay = torch.where(sw, u1, fu), torch.where(sw, v1, fv)
    area2 = (fu[:, 1] - fu[:, 0]) * (fv[:, 2] - fv[:, 0]) - (fv[:, 1] - fv[:, 0]) * (fu[:, 2] - fu[:, 0])
    sign = torch.where(sw, -1.0, 1.0).to(dtype) * torch.sign(area2).unsqueeze(1)
    coef_a = torch.where(sw, v1 - fv, fv - v1) * sign  # -dy
    coef_b = torch.where(sw, fu - u1, u1 - fu) * sign  # dx
    coef_c = -(coef_a * ax + coef_b * ay)
    # Zero-area or non-finite faces draw nothing: E = -1 everywhere.
    bad = ~(torch.isfinite(area2) & (area2 != 0) & torch.isfinite(coef_c).all(dim=1))
    coef_a = coef_a.masked_fill(bad.unsqueeze(1), 0.0)
    coef_b = coef_b.masked_fill(bad.unsqueeze(1), 0.0)
    coef_c = coef_c.masked_fill(bad.unsqueeze(1), -1.0)
    weight = fz.roll(-2, dims=1).reciprocal() / area2.abs().unsqueeze(1)  # (1/z of vertex k+2) / |2 area|

    def emit(func: torch.Tensor, rows: torch.Tensor, keys: torch.Tensor) -> None:
        # func (M, 3) edge functions of inside candidates of faces `rows`, at pixels `keys`.
        depth = (func * weight.index_select(0, rows)).sum(dim=1).reciprocal()
        # Positive float32 bits order like the numbers; ties go to the lowest face index.
        bits = depth.to(torch.float32).view(torch.int32).to(torch.long)
        zbuf.scatter_reduce_(0, keys, (bits << 32) | face_id.index_select(0, rows), reduce="amin")

    # Faces are tested against the pixels of their box in buckets of similar pixel count K (powers
    # of two): each bucket is a dense (faces, K) array of (face, slot) tests with the face's
    # coefficients broadcast, so nothing is gathered per candidate. Slot j is pixel
    # (j % width, j // width) of the box; slots j >= width * height are void. Nearly all faces of
    # a depth-map mesh have K <= 4. Boxes above _DENSE_MAX pixels (slivers at depth
    # discontinuities) are expanded into exact candidate lists instead.
    count = width * height
    lower = 0
    k = 1
    while k <= _DENSE_MAX:
        members = ((count > lower) & (count <= k)).nonzero().squeeze(1)
        for part in members.split(max(1, max_candidates // k)):
            func, ok, offset = _dense_tests(part, k, width, count, x0, y0, coef_a, coef_b, coef_c, c, s)
            hit = ((func >= 0).all(dim=2) & ok).flatten().nonzero().squeeze(1)
            rows = part.index_select(0, torch.div(hit, k, rounding_mode="floor"))
            keys = key0.index_select(0, rows) + offset.flatten().index_select(0, hit)
            emit(func.view(-1, 3).index_select(0, hit), rows, keys)
        lower, k = k, 2 * k

    large = (count > _DENSE_MAX).nonzero().squeeze(1)
    if large.numel() == 0:
        return
    count = count.index_select(0, large)
    offsets = torch.cumsum(count, 0) - count
    total = int(offsets[-1] + count[-1])
    n_chunks = (total + max_candidates - 1) // max_candidates
    bounds = torch.searchsorted(
        offsets, torch.arange(n_chunks + 1, device=device, dtype=torch.long) * max_candidates
    ).tolist()
    bounds[-1] = large.numel()
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        if hi <= lo:
            continue
        cnt = count[lo:hi]
        start = int(offsets[lo])
        m = int(offsets[hi - 1] + cnt[-1]) - start
        which = torch.repeat_interleave(torch.arange(lo, hi, device=device), cnt, output_size=m)
        rows = large.index_select(0, which)
        rank = torch.arange(start, start + m, device=device) - offsets.index_select(0, which)
        w = width.index_select(0, rows)
        row = torch.div(rank, w, rounding_mode="floor")
        col = rank - row * w
        px = (x0.index_select(0, rows) + col).to(dtype).unsqueeze(1) - c
        py = (y0.index_select(0, rows) + row).to(dtype).unsqueeze(1) - c
        func = coef_a.index_select(0, rows) * px + coef_b.index_select(0, rows) * py + coef_c.index_select(0, rows)
        hit = (func >= 0).all(dim=1).nonzero().squeeze(1)
        rows = rows.index_select(0, hit)
        keys = key0.index_select(0, rows) + (row * s + col).index_select(0, hit)
        emit(func.index_select(0, hit), rows, keys)


def _dense_tests(
    part: torch.Tensor,
    k: int,
    width: torch.Tensor,
    count: torch.Tensor,
    x0: torch.Tensor,
    y0: torch.Tensor,
    coef_a: torch.Tensor,
    coef_b: torch.Tensor,
    coef_c: torch.Tensor,
    c: float,
    s: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Edge functions of faces `part` at the first k pixels of their boxes.

    Returns func (P, k, 3), ok (P, k) bool (slot inside the box) and the slots' pixel offsets
    from the box corner in the flattened image, (P, k) long.
    """
    px0, py0 = x0.index_select(0, part).unsqueeze(1), y0.index_select(0, part).unsqueeze(1)
    if k == 1:
        col = row = torch.zeros_like(px0)
        ok = torch.ones_like(px0, dtype=torch.bool)
    else:
        slot = torch.arange(k, device=part.device).unsqueeze(0)
        w = width.index_select(0, part).unsqueeze(1)
        row = torch.div(slot, w, rounding_mode="floor")
        col = slot - row * w
        ok = slot < count.index_select(0, part).unsqueeze(1)
    dtype = coef_a.dtype
    px = ((px0 + col).to(dtype) - c).unsqueeze(2)
    py = ((py0 + row).to(dtype) - c).unsqueeze(2)
    func = (
        coef_a.index_select(0, part).unsqueeze(1) * px
        + coef_b.index_select(0, part).unsqueeze(1) * py
        + coef_c.index_select(0, part).unsqueeze(1)
    )
    return func, ok, row * s + col


def _fragments(vertices: torch.Tensor, faces: torch.Tensor, camera: Camera, zbuf: torch.Tensor) -> Fragments:
    """Recompute depth and barycentrics of each covered pixel from its winning face, with grad."""
    n, s, _ = zbuf.shape
    dtype, device = vertices.dtype, vertices.device
    flat = zbuf.flatten()
    pix = (flat != _EMPTY).nonzero().squeeze(1)
    face = flat[pix] & _LOW32
    img = torch.div(pix, s * s, rounding_mode="floor")
    yx = pix - img * (s * s)
    py = torch.div(yx, s, rounding_mode="floor")
    px = yx - py * s

    # (M, 3, 3) with grad. index_select, not vertices[img[:, None], faces[face]]: the backward of
    # advanced indexing (index_put_ with accumulate) adds in a thread-dependent order on a multi-core
    # CPU, so two runs of one seed drift apart; index_select's backward (index_add_) adds in order.
    rows = (img[:, None] * vertices.shape[1] + faces.index_select(0, face)).flatten()
    corners = vertices.reshape(-1, 3).index_select(0, rows).view(-1, 3, 3)
    uv = _project(corners, camera)  # (M, 3, 2)
    p = torch.stack([px, py], dim=1).to(dtype)[:, None, :]  # (M, 1, 2)
    rel = uv - p  # vertex k relative to the pixel centre
    nxt = rel.roll(-1, dims=1)
    # Signed doubled area of (pixel, k, k+1) is the unnormalised weight of vertex k+2.
    func = rel[..., 0] * nxt[..., 1] - rel[..., 1] * nxt[..., 0]
    bary = func.roll(-1, dims=1)
    bary = bary / bary.sum(dim=1, keepdim=True)
    depth = 1.0 / (bary / corners[..., 2]).sum(dim=1)

    depth_img = vertices.new_full((n * s * s,), float("inf")).index_put((pix,), depth)
    bary_img = vertices.new_zeros((n * s * s, 3)).index_put((pix,), bary)
    face_img = torch.full((n * s * s,), -1, dtype=torch.long, device=device).index_put((pix,), face)
    return Fragments(depth=depth_img.view(n, s, s), face_index=face_img.view(n, s, s), bary=bary_img.view(n, s, s, 3))
