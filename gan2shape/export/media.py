"""Rotation and relighting sweeps of one instance, as frames, animated GIFs and PNG strips/grids.

Rotation: the canonical texture + depth rendered (gan2shape.render.render_view) from views that
rotate the object about the camera's rotation centre (0, 0, rot_center_depth), no translation.
The yaw of frame k of T is max_yaw * sin(2 pi k / T): the sweep starts frontal (yaw 0), goes to
+max_yaw, back through 0 to -max_yaw and back, so the GIF loops without a jump.
Relighting: the albedo re-shaded (gan2shape.render.shade) with the light direction
normalize([r cos(2 pi k / T), r sin(2 pi k / T), 1]) moving on a circle of radius r around the
camera direction, then rendered in the instance's own (input) view.
Frames are uint8 (T, S, S, 3); pixels no surface covers (render mask 0) take ``background``
(in [-1, 1] image units; 1 = white).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from gan2shape.atomic import write_atomic
from gan2shape.imaging import tile_images, to_uint8
from gan2shape.render import (
    Camera,
    depth_to_normals,
    light_direction,
    render_view,
    shade,
    valid_mask,
    view_depth,
    view_to_canon_grid,
)
from gan2shape.render._checks import check_image_size, check_tensor

__all__ = [
    "rotation_yaws",
    "render_views",
    "rotation_frames",
    "rotation_grid",
    "relight_light_xy",
    "relight_frames",
    "frames_strip",
    "write_gif",
]


def _count(name: str, value: int, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return value


def rotation_yaws(n_frames: int = 24, max_yaw_deg: float = 70.0) -> torch.Tensor:
    """Yaw angles (T,) in radians: max_yaw * sin(2 pi k / T), k = 0..T-1 (starts at 0).

    With T = 2 mod 4 the two frames around each extreme are equal; a GIF then shows them as one
    longer frame (see write_gif). T divisible by 4 (the default 24) has no equal neighbours.
    """
    _count("n_frames", n_frames)
    k = torch.arange(n_frames, dtype=torch.float64)
    return (math.radians(float(max_yaw_deg)) * torch.sin(2 * math.pi * k / n_frames)).float()


def _frames_uint8(images: torch.Tensor) -> np.ndarray:
    """(T, 3, S, S) float in [-1, 1] -> (T, S, S, 3) uint8."""
    return to_uint8((images.detach().to("cpu", torch.float64).permute(0, 2, 3, 1).numpy() + 1.0) / 2.0)


def render_views(
    texture: torch.Tensor,
    depth: torch.Tensor,
    views: torch.Tensor,
    camera: Camera,
    background: float = 1.0,
    batch_size: int = 32,
) -> torch.Tensor:
    """Render one canonical texture + depth from T views.

    texture: (C, S, S) float; depth: (S, S) float canonical depth; views: (T, 6) physical views.
    Returns (T, C, S, S) float, ``background`` where the render mask is 0. Rendering runs in
    chunks of ``batch_size`` views to bound memory.
    """
    dims = check_tensor("texture", texture, ("C", "S", "S"))
    check_tensor("depth", depth, ("S", "S"), dims)
    check_tensor("views", views, ("T", 6))
    check_image_size("texture", dims["S"], dims["S"], camera.image_size)
    _count("batch_size", batch_size)
    out = []
    with torch.no_grad():
        for start in range(0, views.shape[0], batch_size):
            v = views[start : start + batch_size].to(texture)
            b = v.shape[0]
            tex = texture.expand(b, *texture.shape)
            bg = torch.full_like(tex, float(background))
            out.append(render_view(tex, depth.expand(b, *depth.shape), v, camera, background=bg).image)
    return torch.cat(out, dim=0)


def rotation_frames(
    texture: torch.Tensor,
    depth: torch.Tensor,
    camera: Camera,
    n_frames: int = 24,
    max_yaw_deg: float = 70.0,
    pitch_deg: float = 0.0,
    background: float = 1.0,
) -> np.ndarray:
    """The yaw sweep of rotation_yaws as frames.

    texture: (3, S, S) float in [-1, 1] (the shaded canonical texture); depth: (S, S) canonical.
    Returns (n_frames, S, S, 3) uint8; frame 0 is the frontal (identity) view.
    """
    yaws = rotation_yaws(n_frames, max_yaw_deg)
    views = torch.zeros(n_frames, 6)
    views[:, 0] = math.radians(float(pitch_deg))
    views[:, 1] = yaws
    return _frames_uint8(render_views(texture, depth, views, camera, background).clamp(-1, 1))


def rotation_grid(
    texture: torch.Tensor,
    depth: torch.Tensor,
    camera: Camera,
    n_pitch: int = 3,
    max_pitch_deg: float = 20.0,
    n_yaw: int = 7,
    max_yaw_deg: float = 70.0,
    background: float = 1.0,
    pad: int = 2,
) -> np.ndarray:
    """A pitch x yaw grid of renders: rows pitch = linspace(-max_pitch, max_pitch, n_pitch) from top
    to bottom, columns yaw = linspace(-max_yaw, max_yaw, n_yaw) from left to right.

    texture: (3, S, S) float in [-1, 1]; depth: (S, S). Returns (n_pitch*S + pad*(n_pitch-1),
    n_yaw*S + pad*(n_yaw-1), 3) uint8 with white padding.
    """
    _count("n_pitch", n_pitch)
    _count("n_yaw", n_yaw)
    pitches = torch.linspace(-1.0, 1.0, n_pitch) * math.radians(float(max_pitch_deg)) if n_pitch > 1 else torch.zeros(1)
    yaws = torch.linspace(-1.0, 1.0, n_yaw) * math.radians(float(max_yaw_deg)) if n_yaw > 1 else torch.zeros(1)
    grid_p, grid_y = torch.meshgrid(pitches, yaws, indexing="ij")
    views = torch.zeros(n_pitch * n_yaw, 6)
    views[:, 0] = grid_p.reshape(-1)
    views[:, 1] = grid_y.reshape(-1)
    frames = _frames_uint8(render_views(texture, depth, views, camera, background).clamp(-1, 1))
    return tile_images(list(frames), n_cols=n_yaw, pad=pad)


def relight_light_xy(n_frames: int = 24, radius: float = 0.8) -> torch.Tensor:
    """Light (lx, ly) of frame k: radius * (cos(2 pi k / T), sin(2 pi k / T)); (T, 2)."""
    _count("n_frames", n_frames)
    k = torch.arange(n_frames, dtype=torch.float64)
    angle = 2 * math.pi * k / n_frames
    return (float(radius) * torch.stack([torch.cos(angle), torch.sin(angle)], dim=1)).float()


def relight_frames(
    albedo: torch.Tensor,
    depth: torch.Tensor,
    view: torch.Tensor,
    ambient: float,
    diffuse: float,
    camera: Camera,
    n_frames: int = 24,
    radius: float = 0.8,
    background: float = 1.0,
) -> np.ndarray:
    """The albedo re-shaded under a light circling the camera axis, rendered in the input view.

    albedo: (3, S, S) float in [-1, 1]; depth: (S, S) canonical depth; view: (6,) physical view;
    ambient, diffuse: the instance's k_a, k_d (decode_light). radius: see relight_light_xy
    (0 keeps the light at the camera). Returns (n_frames, S, S, 3) uint8.
    """
    dims = check_tensor("albedo", albedo, (3, "S", "S"))
    check_tensor("depth", depth, ("S", "S"), dims)
    check_tensor("view", view, (6,))
    check_image_size("albedo", dims["S"], dims["S"], camera.image_size)
    light_dir = light_direction(relight_light_xy(n_frames, radius)).to(albedo)
    t = n_frames
    with torch.no_grad():
        normals = depth_to_normals(depth[None], camera).expand(t, -1, -1, -1)
        k_a = torch.full((t,), float(ambient)).to(albedo)
        k_d = torch.full((t,), float(diffuse)).to(albedo)
        texture, _ = shade(albedo.expand(t, -1, -1, -1), normals, k_a, k_d, light_dir)
        # One view for every frame: rasterize once and warp all T textures with the same grid
        # (the same steps as render_view, without T identical rasterizations).
        v = view.to(albedo)[None]
        view_d = view_depth(depth[None], v, camera)
        mask = valid_mask(view_d, camera)
        grid = view_to_canon_grid(view_d, v, camera).to(albedo).expand(t, -1, -1, -1)
        image = F.grid_sample(texture, grid, mode="bilinear", padding_mode="border", align_corners=True)
        image = torch.where(mask > 0, image, torch.full_like(image, float(background)))
    return _frames_uint8(image.clamp(-1, 1))


def frames_strip(frames: np.ndarray, n_shown: int = 8, pad: int = 2) -> np.ndarray:
    """``n_shown`` evenly spaced frames (k = round(i * T / n_shown)) side by side, white padding.

    frames: (T, H, W, 3) uint8. Returns (H, n*W + pad*(n-1), 3) uint8 with n = min(n_shown, T).
    """
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 (T, H, W, 3), got {frames.dtype} {frames.shape}")
    n = min(_count("n_shown", n_shown), frames.shape[0])
    picks = [int(round(i * frames.shape[0] / n)) for i in range(n)]
    return tile_images([frames[k] for k in picks], pad=pad)


def write_gif(path: str | Path, frames: np.ndarray, fps: float = 12.0) -> Path:
    """Write frames (T, H, W, 3) uint8 as a looping animated GIF, atomically.

    Colours are quantised to a 256-colour palette per frame (GIF's limit). Pillow merges
    CONSECUTIVE IDENTICAL frames into one longer frame, so a GIF read back can hold fewer frames
    than T when the animation stands still (the playing time is unchanged).
    """
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or frames.shape[0] < 1:
        raise ValueError(
            f"write_gif({path}): frames must be uint8 (T, H, W, 3) with T >= 1, got {frames.dtype} {frames.shape}"
        )
    if not fps > 0:
        raise ValueError(f"fps must be > 0, got {fps!r}")
    images = [Image.fromarray(np.ascontiguousarray(f)) for f in frames]
    duration = int(round(1000.0 / fps))

    def save(tmp: Path) -> None:
        images[0].save(tmp, format="GIF", save_all=True, append_images=images[1:], duration=duration, loop=0)

    return write_atomic(path, save)
