"""Export of reconstructed instances: depth/normal/albedo/shading/texture PNGs, textured OBJ meshes,
rotation and relighting GIFs (METHOD.md section 6). See exporter.py for the file layout."""

from __future__ import annotations

from .exporter import OUTPUT_FILES, OUTPUTS, SUMMARY_FILE, ExportOptions, export_instance, export_instances
from .images import depth_image, normal_image, rgb_image, shading_image, tile_images, write_png
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

__all__ = [
    "OUTPUTS",
    "OUTPUT_FILES",
    "SUMMARY_FILE",
    "ExportOptions",
    "ObjMesh",
    "TexturedMesh",
    "depth_image",
    "export_instance",
    "export_instances",
    "frames_strip",
    "mesh_from_depth",
    "normal_image",
    "read_obj",
    "relight_frames",
    "relight_light_xy",
    "render_views",
    "rgb_image",
    "rotation_frames",
    "rotation_grid",
    "rotation_yaws",
    "shading_image",
    "tile_images",
    "write_gif",
    "write_png",
    "write_textured_mesh",
]
