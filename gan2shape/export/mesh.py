"""A canonical depth map as a textured Wavefront OBJ mesh (+ MTL + texture PNG), and a reader.

Vertices are the back-projected pixel centres (gan2shape.render.depth_to_points), one per pixel,
row-major (vertex k <-> pixel (row, col) = divmod(k, S)); all S*S are written even when a face
drop leaves some unreferenced, so vertex k always means pixel k.

Frames: ``frame="camera"`` writes the renderer's camera frame as is (x right, y down, z forward:
the object is upside down in a y-up viewer); ``frame="opengl"`` writes (x, -y, -z), a 180 degree
rotation about x into the y-up, camera-looks-down--z frame of OBJ viewers (a proper rotation:
nothing is mirrored).
Faces: grid_faces (two triangles per pixel quad) written with the winding reversed, (a, c, b), so
that they are counter-clockwise, i.e. front-facing in OBJ viewers, when seen from the camera.
A face is dropped when the depth spread of its three vertices (max - min) exceeds
``max_depth_step`` (a depth discontinuity: e.g. the step from a face to the clamped image border),
or when it touches a pixel within ``crop_border`` pixels of the image edge.
UVs: vertex at pixel (col, row) gets (u, v) = (col / (S-1), 1 - row / (S-1)), in [0, 1]; OBJ's v
runs up, image rows run down, so the texture PNG is stored as the plain image.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from gan2shape.atomic import write_png, write_text_atomic
from gan2shape.render import Camera, depth_to_points, grid_faces
from gan2shape.render._checks import check_image_size, check_tensor

__all__ = ["TexturedMesh", "ObjMesh", "mesh_from_depth", "write_textured_mesh", "read_obj"]

FRAMES = ("camera", "opengl")


@dataclass
class TexturedMesh:
    """A triangle mesh with one UV per vertex.

    vertices: (V, 3) float64; uvs: (V, 2) float64 in [0, 1]; faces: (F, 3) int64 0-based vertex
    indices, in the winding that is written (counter-clockwise seen from the camera).
    """

    vertices: np.ndarray
    uvs: np.ndarray
    faces: np.ndarray


@dataclass
class ObjMesh:
    """An OBJ file read back. faces and face_uvs: (F, 3) int64, 0-based; mtllib/material: names or None."""

    vertices: np.ndarray
    uvs: np.ndarray
    faces: np.ndarray
    face_uvs: np.ndarray
    mtllib: str | None
    material: str | None


def mesh_from_depth(
    depth: torch.Tensor,
    camera: Camera,
    max_depth_step: float | None = None,
    crop_border: int = 0,
    frame: str = "camera",
) -> TexturedMesh:
    """The mesh of one canonical depth map.

    depth: (S, S) float, positive, S = camera.image_size.
    max_depth_step: drop faces whose vertex depths spread more than this (camera units); None =
        camera.depth_margin / 2 (0.05 for the default [0.9, 1.1], a quarter of the depth range,
        far above the per-pixel slope of a smooth object at S >= 32); float("inf") keeps all.
    crop_border: drop faces touching the outermost ``crop_border`` rows/columns (the depth net
        clamps a 2-column border to camera.border_depth).
    frame: "camera" or "opengl" (see the module docstring).
    Returns a TexturedMesh with V = S*S vertices.
    """
    dims = check_tensor("depth", depth, ("H", "W"))
    check_image_size("depth", dims["H"], dims["W"], camera.image_size)
    if frame not in FRAMES:
        raise ValueError(f"frame must be one of {FRAMES}, got {frame!r}")
    s = camera.image_size
    if isinstance(crop_border, bool) or not isinstance(crop_border, int) or not 0 <= 2 * crop_border < s - 1:
        raise ValueError(f"crop_border must be an int in [0, {(s - 2) // 2}], got {crop_border!r}")
    step = camera.depth_margin / 2.0 if max_depth_step is None else float(max_depth_step)
    if not step > 0:
        raise ValueError(f"max_depth_step must be > 0, got {max_depth_step!r}")
    d = depth.detach().to("cpu", torch.float64)
    points = depth_to_points(d[None], camera)[0].reshape(-1, 3).numpy()
    if frame == "opengl":
        points = points * np.array([1.0, -1.0, -1.0])
    faces = grid_faces(s, s).numpy()
    flat = d.reshape(-1).numpy()
    fd = flat[faces]
    keep = fd.max(axis=1) - fd.min(axis=1) <= step
    if crop_border > 0:
        rows, cols = np.divmod(faces, s)
        inside = (rows >= crop_border) & (rows < s - crop_border) & (cols >= crop_border) & (cols < s - crop_border)
        keep &= inside.all(axis=1)
    faces = faces[keep][:, [0, 2, 1]]
    rows, cols = np.divmod(np.arange(s * s), s)
    uvs = np.stack([cols / (s - 1), 1.0 - rows / (s - 1)], axis=1)
    return TexturedMesh(vertices=points, uvs=uvs, faces=faces.astype(np.int64))


def _obj_text(mesh: TexturedMesh, mtl_name: str, material: str) -> str:
    buf = io.StringIO()
    buf.write("# gan2shape canonical mesh: one vertex per pixel (row-major), UV per vertex\n")
    buf.write(f"mtllib {mtl_name}\n")
    # %.7g keeps ~7 significant digits (float32 precision): coordinates round-trip to ~1e-7 relative.
    np.savetxt(buf, mesh.vertices, fmt="v %.7g %.7g %.7g")
    np.savetxt(buf, mesh.uvs, fmt="vt %.7g %.7g")
    buf.write(f"usemtl {material}\n")
    one = mesh.faces + 1  # OBJ indices are 1-based; vertex k and its UV share index k
    np.savetxt(buf, np.repeat(one, 2, axis=1), fmt="f %d/%d %d/%d %d/%d")
    return buf.getvalue()


def _mtl_text(material: str, texture_name: str) -> str:
    return (
        f"# gan2shape material: unlit texture\nnewmtl {material}\n"
        "Ka 1.0 1.0 1.0\nKd 1.0 1.0 1.0\nKs 0.0 0.0 0.0\nd 1.0\nillum 1\n"
        f"map_Kd {texture_name}\n"
    )


def write_textured_mesh(
    obj_path: str | Path,
    mesh: TexturedMesh,
    texture: np.ndarray,
    mtl_name: str | None = None,
    texture_name: str | None = None,
    material: str = "canonical",
) -> tuple[Path, Path, Path]:
    """Write ``mesh`` to ``obj_path`` with its MTL and texture PNG beside it, each atomically.

    texture: (S, S, 3) uint8 (e.g. imaging.rgb_image of the canonical albedo). mtl_name and
    texture_name are file names in the OBJ's folder (default <stem>.mtl and <stem>_texture.png).
    The texture and MTL are written first and the OBJ last, so a present OBJ has its companions.
    Returns (obj_path, mtl_path, texture_path).
    """
    obj_path = Path(obj_path)
    mtl_name = mtl_name or obj_path.stem + ".mtl"
    texture_name = texture_name or obj_path.stem + "_texture.png"
    for name in (mtl_name, texture_name, material):
        if not name or any(ch in name for ch in "/\\ \n"):
            raise ValueError(f"file and material names must be plain names without spaces or slashes, got {name!r}")
    mesh_checks(mesh)
    texture_path = write_png(obj_path.with_name(texture_name), texture)
    mtl_path = write_text_atomic(obj_path.with_name(mtl_name), _mtl_text(material, texture_name))
    write_text_atomic(obj_path, _obj_text(mesh, mtl_name, material))
    return obj_path, mtl_path, texture_path


def mesh_checks(mesh: TexturedMesh) -> None:
    """Raise ValueError unless the mesh arrays have consistent shapes and valid indices."""
    v, uv, f = mesh.vertices, mesh.uvs, mesh.faces
    if v.ndim != 2 or v.shape[1] != 3 or uv.shape != (v.shape[0], 2) or f.ndim != 2 or f.shape[1] != 3:
        raise ValueError(f"mesh needs vertices (V, 3), uvs (V, 2), faces (F, 3); got {v.shape}, {uv.shape}, {f.shape}")
    if f.size and (f.min() < 0 or f.max() >= v.shape[0]):
        raise ValueError(f"mesh faces index vertices outside 0..{v.shape[0] - 1}")


def read_obj(path: str | Path) -> ObjMesh:
    """Parse the subset of OBJ that write_textured_mesh writes (v, vt, f a/ta ..., mtllib, usemtl).

    Returns 0-based indices. Raises ValueError naming the file and line on anything malformed.
    """
    path = Path(path)
    verts: list[list[float]] = []
    uvs: list[list[float]] = []
    faces: list[list[int]] = []
    face_uvs: list[list[int]] = []
    mtllib = material = None
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            parts = line.split()
            if not parts or parts[0].startswith("#"):
                continue
            try:
                if parts[0] == "v":
                    verts.append([float(x) for x in parts[1:4]])
                elif parts[0] == "vt":
                    uvs.append([float(x) for x in parts[1:3]])
                elif parts[0] == "f":
                    if len(parts) != 4:
                        raise ValueError("only triangles are supported")
                    pairs = [p.split("/") for p in parts[1:]]
                    faces.append([int(p[0]) - 1 for p in pairs])
                    face_uvs.append([int(p[1]) - 1 if len(p) > 1 and p[1] else -1 for p in pairs])
                elif parts[0] == "mtllib":
                    mtllib = parts[1]
                elif parts[0] == "usemtl":
                    material = parts[1]
            except (ValueError, IndexError) as exc:
                raise ValueError(f"{path}:{lineno}: cannot parse {line.strip()!r} ({exc})") from None
    return ObjMesh(
        vertices=np.asarray(verts, np.float64).reshape(-1, 3),
        uvs=np.asarray(uvs, np.float64).reshape(-1, 2),
        faces=np.asarray(faces, np.int64).reshape(-1, 3),
        face_uvs=np.asarray(face_uvs, np.int64).reshape(-1, 3),
        mtllib=mtllib,
        material=material,
    )
