"""Export of reconstructed instances: depth/normal/albedo/shading/texture PNGs, textured OBJ meshes,
rotation and relighting GIFs (docs/METHOD.md section 6). See exporter.py for the file layout; gan_refine.py
writes the GAN-refined versions of the rotation/relighting media."""

from __future__ import annotations

from .exporter import OUTPUT_FILES, OUTPUTS, SUMMARY_FILE, ExportOptions, export_instance, export_instances
from .gan_refine import GAN_OUTPUT_FILES, GAN_OUTPUTS, GanRefiner, export_gan_refined, load_gan_refiner
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
from .preview import PREVIEW_FILE, mesh_preview

__all__ = [
    "GAN_OUTPUTS",
    "GAN_OUTPUT_FILES",
    "GanRefiner",
    "export_gan_refined",
    "load_gan_refiner",
    "OUTPUTS",
    "OUTPUT_FILES",
    "PREVIEW_FILE",
    "SUMMARY_FILE",
    "ExportOptions",
    "ObjMesh",
    "TexturedMesh",
    "depth_image",
    "export_instance",
    "export_instances",
    "frames_strip",
    "mesh_from_depth",
    "mesh_preview",
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
