"""A preview picture of the reconstructed mesh: the bare surface (uniform gray, no albedo) seen from
a 3/4 view and lit by a light fixed to the viewer, so the shape reads at a glance.

How: the canonical depth is upsampled ``scale`` times (bilinear, align_corners=True, which keeps
every pixel's viewing ray; the camera keeps its field of view at the new size); its normals
(gan2shape.render.depth_to_normals) are rotated into the view, n_view = R n (R of the view,
gan2shape.render.rotation_matrix), and shaded s = ambient + diffuse * max(0, <n_view, l>) with
l = normalize([lx, ly, 1]) in the VIEW frame; the canonical map gray * s is then rendered from
the view (gan2shape.render.render_view), background where no surface is hit.
Light convention (gan2shape.render.shading): (lx, ly) = (0, 0) shines from the camera; lx > 0
lights surfaces facing the left of the image, ly > 0 those facing up (the default, upper left).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import torch
import torch.nn.functional as F

from gan2shape.imaging import to_uint8
from gan2shape.render import Camera, depth_to_normals, lambertian, light_direction, render_view, rotation_matrix
from gan2shape.render._checks import check_tensor

__all__ = ["PREVIEW_FILE", "mesh_preview"]

PREVIEW_FILE = "mesh_preview.png"


def mesh_preview(
    depth: torch.Tensor,
    camera: Camera,
    yaw_deg: float = 35.0,
    pitch_deg: float = 15.0,
    light_xy: tuple[float, float] = (0.5, 0.5),
    ambient: float = 0.3,
    diffuse: float = 0.7,
    gray: float = 0.8,
    scale: int = 2,
    background: float = 1.0,
) -> np.ndarray:
    """Render the surface of a canonical depth map, shaded gray, from a rotated view.

    depth: (S, S) float canonical depth (camera units, e.g. in [0.9, 1.1]), S = camera.image_size.
    yaw_deg, pitch_deg: the view (pitch > 0 tips the top of the object towards the camera, i.e.
    a view from above). light_xy: (lx, ly) of the view-frame light (module docstring).
    ambient, diffuse: shading terms; gray: the surface's reflectance in [0, 1]; scale: integer
    upsampling factor of the output; background: in [0, 1] (1 = white).
    Returns (scale*S, scale*S, 3) uint8: gray * (ambient + diffuse * max(0, <n_view, l>)) where a
    surface is hit, background elsewhere (quantised as imaging.to_uint8).
    """
    s = camera.image_size
    check_tensor("depth", depth, (s, s))
    if isinstance(scale, bool) or not isinstance(scale, int) or scale < 1:
        raise ValueError(f"mesh_preview: scale must be an int >= 1, got {scale!r}")
    for name, value in (("gray", gray), ("background", background)):
        if not 0.0 <= float(value) <= 1.0:
            raise ValueError(f"mesh_preview: {name} must be in [0, 1], got {value!r}")
    size = s * scale
    cam = dataclasses.replace(camera, image_size=size)
    with torch.no_grad():
        d = depth.detach().to("cpu", torch.float32)[None]
        if scale > 1:
            d = F.interpolate(d[:, None], size=(size, size), mode="bilinear", align_corners=True)[:, 0]
        view = torch.tensor([[math.radians(float(pitch_deg)), math.radians(float(yaw_deg)), 0.0, 0.0, 0.0, 0.0]])
        rot = rotation_matrix(view[:, :3])
        normals = depth_to_normals(d, cam) @ rot[0].T  # n_view = R n, on row vectors
        light = light_direction(torch.tensor([[float(light_xy[0]), float(light_xy[1])]]))
        shading = float(ambient) + float(diffuse) * lambertian(normals, light)
        texture = (float(gray) * shading).expand(1, 3, size, size) * 2.0 - 1.0
        back = torch.full_like(texture, 2.0 * float(background) - 1.0)
        image = render_view(texture, d, view, cam, background=back).image[0]
    return to_uint8((image.permute(1, 2, 0).numpy().astype(np.float64) + 1.0) / 2.0)
