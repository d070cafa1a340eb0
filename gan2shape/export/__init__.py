"""Export of reconstructed instances: depth/normal/albedo/shading/texture PNGs, textured OBJ meshes,
rotation and relighting GIFs (docs/METHOD.md section 6). See exporter.py for the file layout; the
GAN-refined versions of the rotation/relighting media need the method's encoder and latents and
live in gan2shape.method.gan_refine (export sits below method: tests/test_layers.py). The image
conversions are gan2shape.imaging's."""

from __future__ import annotations

from .exporter import OUTPUT_FILES, OUTPUTS, SUMMARY_FILE, ExportOptions, export_instance, export_instances
from .media import (
    frames_strip,
    relight_frames,
    relight_light_xy,
    render_views,
    rotation_frames,
    rotation_grid,
    rotation_yaws,
    write_gif,
)
from .mesh import ObjMesh, TexturedMesh, mesh_from_depth, read_obj, write_textured_mesh
from .preview import PREVIEW_FILE, mesh_preview

__all__ = [
    "OUTPUTS",
    "OUTPUT_FILES",
    "PREVIEW_FILE",
    "SUMMARY_FILE",
    "ExportOptions",
    "ObjMesh",
    "TexturedMesh",
    "export_instance",
    "export_instances",
    "frames_strip",
    "mesh_from_depth",
    "mesh_preview",
    "read_obj",
    "relight_frames",
    "relight_light_xy",
    "render_views",
    "rotation_frames",
    "rotation_grid",
    "rotation_yaws",
    "write_gif",
    "write_textured_mesh",
]
