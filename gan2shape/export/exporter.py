"""Export the final shape artifact of each instance as images, a textured mesh and media.

Layout (names fixed, one folder per instance id)::

    out_dir/<id>/depth.png          canonical depth, near = bright (imaging.depth_image)
                 recon_depth.png    depth in the input view, only if the source has recon_depth
                 normal.png         canonical normals, (n + 1) / 2 (imaging.normal_image)
                 albedo.png         canonical albedo
                 shading.png        k_a + k_d max(0, <n, l>) in the canonical frame
                 texture.png        shaded canonical texture (albedo * shading)
                 mesh.obj, mesh.mtl, mesh_texture.png   (mesh.write_textured_mesh)
                 rotate.gif, rotate_grid.png            (media.rotation_frames / rotation_grid)
                 relight.gif, relight_strip.png         (media.relight_frames / frames_strip)
                 mesh_preview.png   the bare mesh, shaded gray, from a 3/4 view (preview.mesh_preview)
                 summary.png        input | depth | normal | albedo | shading | rotated view
                 rotate_gan.gif, rotate_gan_grid.png, relight_gan.gif, relight_gan_strip.png
                                    GAN-refined media, only from gan_refine.export_gan_refined (it needs
                                    the run's projected.h5 encoder and instances.h5 latents)

Every file is written atomically. The source is either a dict of arrays or the path of an HDF5
artifact of kind "shape" (gan2shape.artifacts), holding per instance (N rows):
canon_depth (N, S, S) camera units; canon_albedo (N, 3, S, S) in [-1, 1]; view (N, 6) physical
(pitch, yaw, roll radians, tx, ty, tz); light (N, 4) raw (decode_light); optionally image
(N, 3, S, S) in [-1, 1] (the input) and recon_depth (N, S, S).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gan2shape import imaging
from gan2shape.artifacts import read_artifact
from gan2shape.errors import ArtifactError, InputError
from gan2shape.model.decode import decode_light
from gan2shape.progress import track
from gan2shape.render import Camera, depth_to_normals, render_view, shade
from gan2shape.render._checks import check_tensor

from . import media, mesh, preview

__all__ = ["OUTPUTS", "OUTPUT_FILES", "SUMMARY_FILE", "ExportOptions", "export_instance", "export_instances"]

OUTPUTS = ("depth", "normal", "albedo", "shading", "texture", "mesh", "rotate", "relight", "preview")
OUTPUT_FILES: dict[str, tuple[str, ...]] = {
    "depth": ("depth.png",),
    "normal": ("normal.png",),
    "albedo": ("albedo.png",),
    "shading": ("shading.png",),
    "texture": ("texture.png",),
    "mesh": ("mesh.obj", "mesh.mtl", "mesh_texture.png"),
    "rotate": ("rotate.gif", "rotate_grid.png"),
    "relight": ("relight.gif", "relight_strip.png"),
    "preview": (preview.PREVIEW_FILE,),
}
SUMMARY_FILE = "summary.png"
REQUIRED = ("canon_depth", "canon_albedo", "view", "light")
OPTIONAL = ("image", "recon_depth")
_SAFE_ID = re.compile(r"^[A-Za-z0-9._-]+$")


@dataclass(frozen=True)
class ExportOptions:
    """How the exported files look. Defaults suit faces; use max_yaw_deg=45 for cars/churches.

    depth_colormap: imaging.COLORMAPS key; shading_max: shading value shown as white.
    mesh_texture: "albedo" (lighting-free, for relighting in a viewer) or "texture" (shaded).
    mesh_frame: "opengl" (y up, for viewers) or "camera" (the renderer's frame); see mesh.py.
    mesh_max_depth_step, mesh_crop_border: face dropping, see mesh.mesh_from_depth.
    n_frames, fps: GIF frames and speed; max_yaw_deg: rotation sweep amplitude.
    n_pitch, max_pitch_deg, n_yaw: the rotation grid. relight_radius: light circle radius (lx, ly).
    strip_frames: frames in relight_strip.png. background: in [-1, 1] (1 = white).
    summary: write summary.png; summary_yaw_deg: its rotated view (None = max_yaw_deg / 2).
    """

    depth_colormap: str = "gray"
    shading_max: float = 1.0
    mesh_texture: str = "albedo"
    mesh_frame: str = "opengl"
    mesh_max_depth_step: float | None = None
    mesh_crop_border: int = 0
    n_frames: int = 24
    fps: float = 12.0
    max_yaw_deg: float = 70.0
    n_pitch: int = 3
    max_pitch_deg: float = 20.0
    n_yaw: int = 7
    relight_radius: float = 0.8
    strip_frames: int = 8
    background: float = 1.0
    summary: bool = True
    summary_yaw_deg: float | None = None

    def __post_init__(self) -> None:
        if self.depth_colormap not in imaging.COLORMAPS:
            raise ValueError(
                f"ExportOptions.depth_colormap must be one of {sorted(imaging.COLORMAPS)}, got {self.depth_colormap!r}"
            )
        if self.mesh_texture not in ("albedo", "texture"):
            raise ValueError(f"ExportOptions.mesh_texture must be 'albedo' or 'texture', got {self.mesh_texture!r}")
        if self.mesh_frame not in mesh.FRAMES:
            raise ValueError(f"ExportOptions.mesh_frame must be one of {mesh.FRAMES}, got {self.mesh_frame!r}")
        for name in ("n_frames", "n_pitch", "n_yaw", "strip_frames"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"ExportOptions.{name} must be an int >= 1, got {value!r}")
        for name in ("shading_max", "fps"):
            if not getattr(self, name) > 0:
                raise ValueError(f"ExportOptions.{name} must be > 0, got {getattr(self, name)!r}")
        for name in ("max_yaw_deg", "max_pitch_deg", "relight_radius", "background"):
            if not math.isfinite(float(getattr(self, name))):
                raise ValueError(f"ExportOptions.{name} must be finite, got {getattr(self, name)!r}")


def _check_id(instance_id: str) -> str:
    instance_id = str(instance_id)
    if not _SAFE_ID.match(instance_id) or instance_id in (".", ".."):
        raise ValueError(
            f"instance id {instance_id!r} cannot name a folder: use letters, digits, '.', '_' and '-' only"
        )
    return instance_id


def export_instance(
    out_dir: str | Path,
    camera: Camera,
    canon_depth: torch.Tensor,
    canon_albedo: torch.Tensor,
    view: torch.Tensor,
    light: torch.Tensor,
    image: torch.Tensor | None = None,
    recon_depth: torch.Tensor | None = None,
    what: Sequence[str] = OUTPUTS,
    options: ExportOptions | None = None,
) -> dict[str, Path]:
    """Export one instance into the folder ``out_dir`` (created).

    canon_depth: (S, S); canon_albedo: (3, S, S) in [-1, 1]; view: (6,) physical; light: (4,) raw;
    image: (3, S, S) in [-1, 1] or None; recon_depth: (S, S) or None; S = camera.image_size.
    Returns file name -> path of every file written (names as in OUTPUT_FILES, + summary.png,
    + recon_depth.png when recon_depth is given and "depth" is in ``what``).
    """
    opts = options or ExportOptions()
    unknown = [w for w in what if w not in OUTPUTS]
    if unknown:
        raise ValueError(f"unknown export output(s) {unknown}; choose from {OUTPUTS}")
    s = camera.image_size
    dims = check_tensor("canon_depth", canon_depth, (s, s))
    check_tensor("canon_albedo", canon_albedo, (3, s, s), dims)
    check_tensor("view", view, (6,))
    check_tensor("light", light, (4,))
    if image is not None:
        check_tensor("image", image, (3, s, s))
    if recon_depth is not None:
        check_tensor("recon_depth", recon_depth, (s, s))
    out_dir = Path(out_dir)
    written: dict[str, Path] = {}

    def put(name: str, path: Path) -> None:
        written[name] = path

    with torch.no_grad():
        ambient, diffuse, light_dir = decode_light(light[None])
        normals = depth_to_normals(canon_depth[None], camera)
        texture, shading = shade(canon_albedo[None], normals, ambient, diffuse, light_dir)
    normals, texture, shading = normals[0], texture[0], shading[0]

    depth_png = imaging.depth_image(canon_depth, camera, colormap=opts.depth_colormap)
    normal_png = imaging.normal_image(normals)
    albedo_png = imaging.rgb_image(canon_albedo)
    shading_png = imaging.shading_image(shading, opts.shading_max)
    if "depth" in what:
        put("depth.png", imaging.write_png(out_dir / "depth.png", depth_png))
        if recon_depth is not None:
            put(
                "recon_depth.png",
                imaging.write_png(
                    out_dir / "recon_depth.png", imaging.depth_image(recon_depth, camera, colormap=opts.depth_colormap)
                ),
            )
    if "normal" in what:
        put("normal.png", imaging.write_png(out_dir / "normal.png", normal_png))
    if "albedo" in what:
        put("albedo.png", imaging.write_png(out_dir / "albedo.png", albedo_png))
    if "shading" in what:
        put("shading.png", imaging.write_png(out_dir / "shading.png", shading_png))
    if "texture" in what:
        put("texture.png", imaging.write_png(out_dir / "texture.png", imaging.rgb_image(texture)))
    if "mesh" in what:
        m = mesh.mesh_from_depth(canon_depth, camera, opts.mesh_max_depth_step, opts.mesh_crop_border, opts.mesh_frame)
        tex = albedo_png if opts.mesh_texture == "albedo" else imaging.rgb_image(texture)
        obj, mtl, tex_path = mesh.write_textured_mesh(out_dir / "mesh.obj", m, tex)
        put("mesh.obj", obj)
        put("mesh.mtl", mtl)
        put("mesh_texture.png", tex_path)
    if "rotate" in what:
        frames = media.rotation_frames(
            texture, canon_depth, camera, opts.n_frames, opts.max_yaw_deg, background=opts.background
        )
        put("rotate.gif", media.write_gif(out_dir / "rotate.gif", frames, opts.fps))
        grid = media.rotation_grid(
            texture,
            canon_depth,
            camera,
            opts.n_pitch,
            opts.max_pitch_deg,
            opts.n_yaw,
            opts.max_yaw_deg,
            background=opts.background,
        )
        put("rotate_grid.png", imaging.write_png(out_dir / "rotate_grid.png", grid))
    if "relight" in what:
        frames = media.relight_frames(
            canon_albedo,
            canon_depth,
            view,
            float(ambient),
            float(diffuse),
            camera,
            opts.n_frames,
            opts.relight_radius,
            opts.background,
        )
        put("relight.gif", media.write_gif(out_dir / "relight.gif", frames, opts.fps))
        put(
            "relight_strip.png",
            imaging.write_png(out_dir / "relight_strip.png", media.frames_strip(frames, opts.strip_frames)),
        )
    if "preview" in what:
        put(
            preview.PREVIEW_FILE,
            imaging.write_png(out_dir / preview.PREVIEW_FILE, preview.mesh_preview(canon_depth, camera)),
        )
    if opts.summary:
        if image is None:  # no input stored: show the model's reconstruction of it instead
            with torch.no_grad():
                image = render_view(texture[None], canon_depth[None], view[None], camera).image[0]
        yaw = opts.max_yaw_deg / 2 if opts.summary_yaw_deg is None else opts.summary_yaw_deg
        turned = torch.zeros(1, 6)
        turned[0, 1] = math.radians(float(yaw))
        rotated = media.render_views(texture, canon_depth, turned, camera, opts.background).clamp(-1, 1)[0]
        panels = [imaging.rgb_image(image), depth_png, normal_png, albedo_png, shading_png, imaging.rgb_image(rotated)]
        put(SUMMARY_FILE, imaging.write_png(out_dir / SUMMARY_FILE, imaging.tile_images(panels, pad=2)))
    return written


def _tensor(name: str, value: Any) -> torch.Tensor:
    if isinstance(value, np.ndarray):
        value = torch.from_numpy(np.ascontiguousarray(value))
    if not isinstance(value, torch.Tensor):
        raise ValueError(f"source[{name!r}] must be a numpy array or a torch tensor, got {type(value).__name__}")
    return value.detach().to("cpu", torch.float32)


def export_instances(
    source: Mapping[str, Any] | str | Path,
    out_dir: str | Path,
    camera: Camera,
    *,
    ids: Sequence[str] | None = None,
    what: Sequence[str] = OUTPUTS,
    options: ExportOptions | None = None,
    progress: bool = False,
) -> dict[str, dict[str, Path]]:
    """Export every (or every selected) instance of a shape artifact under ``out_dir/<id>/``.

    source: a dict with REQUIRED (+ optional OPTIONAL) arrays (module docstring for shapes), or
        the path of an HDF5 artifact of kind "shape".
    ids: for a dict, the N instance ids (required unless the dict has an "ids" entry); for an
        artifact, the ids to export (None = all), each must be in the artifact.
    what: a subset of OUTPUTS. options: ExportOptions (defaults when None).
    Returns {id: {file name: path}} (see export_instance).
    """
    options = options or ExportOptions()
    s = camera.image_size
    if isinstance(source, (str, Path)):
        shapes = {"canon_depth": (s, s), "canon_albedo": (3, s, s), "view": (6,), "light": (4,)}
        with read_artifact(source, kind="shape", require=REQUIRED, shapes=shapes) as art:
            present = [n for n in OPTIONAL if n in art.names]
            for name, shape in (("image", (3, s, s)), ("recon_depth", (s, s))):
                if name in present and art.shape(name)[1:] != shape:
                    raise ArtifactError(
                        f"{source}: dataset {name!r} has per-instance shape {art.shape(name)[1:]}, expected {shape}: "
                        "export with the params of the run that made it (method.image_size)"
                    )
            if ids is None:
                rows = list(range(art.n))
            else:
                missing = [i for i in ids if str(i) not in art.ids]
                if missing:
                    raise InputError(
                        f"{source} has no instance(s) {missing}; it holds {art.n} ids, e.g. "
                        f"{art.ids[:5]}: give ids of this file (--id)"
                    )
                rows = [art.ids.index(str(i)) for i in ids]
            names = [_check_id(art.ids[r]) for r in rows]
            result: dict[str, dict[str, Path]] = {}
            for name, row in track(list(zip(names, rows)), "export", unit="instance", bar=progress):
                data = {k: _tensor(k, art.array(k, [row])[0]) for k in (*REQUIRED, *present)}
                result[name] = export_instance(Path(out_dir) / name, camera, **data, what=what, options=options)
            return result
    if not isinstance(source, Mapping):
        raise ValueError(f"source must be a dict of arrays or an artifact path, got {type(source).__name__}")
    missing = [k for k in REQUIRED if k not in source]
    if missing:
        raise ValueError(f"source dict lacks {missing}; it needs {REQUIRED} (+ optional {OPTIONAL})")
    if ids is None:
        if "ids" not in source:
            raise ValueError("give ids=[...] (one per instance) or an 'ids' entry in the source dict")
        ids = list(source["ids"])
    arrays = {k: _tensor(k, source[k]) for k in (*REQUIRED, *OPTIONAL) if source.get(k) is not None}
    dims = {"N": len(ids)}
    layouts = {
        "canon_depth": ("N", s, s),
        "canon_albedo": ("N", 3, s, s),
        "view": ("N", 6),
        "light": ("N", 4),
        "image": ("N", 3, s, s),
        "recon_depth": ("N", s, s),
    }
    for k, v in arrays.items():
        check_tensor(k, v, layouts[k], dims)
    names = [_check_id(i) for i in ids]
    if len(set(names)) != len(names):
        raise ValueError(f"instance ids must be unique, got {names}")
    result = {}
    for row, name in enumerate(track(names, "export", unit="instance", bar=progress)):
        data = {k: v[row] for k, v in arrays.items()}
        result[name] = export_instance(Path(out_dir) / name, camera, **data, what=what, options=options)
    return result
