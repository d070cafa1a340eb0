"""Tests of gan2shape.export: analytic cases (flat planes, ramps) and round trips, tiny sizes."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

from gan2shape.artifacts import ArtifactError, write_artifact
from gan2shape.export import (
    OUTPUT_FILES,
    SUMMARY_FILE,
    ExportOptions,
    export_instances,
    frames_strip,
    mesh_from_depth,
    read_obj,
    relight_frames,
    relight_light_xy,
    rotation_frames,
    rotation_grid,
    rotation_yaws,
    write_gif,
    write_textured_mesh,
)
from gan2shape.imaging import depth_image, normal_image, rgb_image, shading_image, write_png
from gan2shape.render import Camera, depth_to_normals, depth_to_points, light_direction, render_view, shade

S = 16


def _cap(s: int = S) -> torch.Tensor:
    """A smooth bump (near 0.92 at the centre, 1.02 outside), (s, s)."""
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, s), torch.linspace(-1, 1, s), indexing="ij")
    return 1.02 - 0.1 * torch.clamp(1 - (xx**2 + yy**2) / 0.5, min=0)


def _texture(s: int = S, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(3, s, s, generator=g) * 2 - 1


# ---- images -------------------------------------------------------------------------------------


def test_normal_png_of_flat_plane_is_uniform(tmp_path):
    cam = Camera(S)
    normals = depth_to_normals(torch.full((1, S, S), 1.0), cam)[0]
    img = normal_image(normals)
    assert img.shape == (S, S, 3) and img.dtype == np.uint8
    assert (img == np.array([128, 128, 255], np.uint8)).all()
    path = write_png(tmp_path / "n.png", img)
    assert np.array_equal(np.asarray(Image.open(path)), img)
    assert not list(tmp_path.glob("*.tmp"))


def test_normal_png_sign_convention():
    # A plane whose depth grows to the right (z = k x) has the camera-side (outward) normal
    # ~ (k, 0, -1): it faces the right of the image. Our n is the negated outward normal, so
    # n_x < 0 -> R < 128; rows unchanged -> G = 128.
    cam = Camera(S)
    depth = (1.0 + 0.002 * torch.arange(S, dtype=torch.float32)).expand(1, S, S)
    img = normal_image(depth_to_normals(depth, cam)[0])
    inner = img[1:-1, 1:-1]
    assert (inner[..., 0] < 128).all() and (np.abs(inner[..., 1].astype(int) - 128) <= 1).all()
    assert (inner[..., 2] > 128).all()


def test_depth_png_is_monotone_and_uses_the_fixed_range():
    cam = Camera(S)
    depth = torch.linspace(0.85, 1.15, S).expand(4, S)  # beyond [0.9, 1.1] on both ends
    img = depth_image(depth, cam)
    assert img.dtype == np.uint8 and img.shape == (4, S)
    row = img[0].astype(int)
    assert (np.diff(row) <= 0).all() and row[0] == 255 and row[-1] == 0
    # strictly decreasing inside the range (steps of 0.02 depth = 25.5 gray levels)
    inside = (depth[0] > 0.9) & (depth[0] < 1.1)
    assert (np.diff(row[inside.numpy()]) < 0).all()
    # the mid depth maps to mid gray
    assert depth_image(torch.full((2, 2), 1.0), cam)[0, 0] == 128
    col = depth_image(depth, cam, colormap="viridis")
    assert col.shape == (4, S, 3)
    assert tuple(col[0, 0]) == (253, 231, 37) and tuple(col[0, -1]) == (68, 1, 84)
    with pytest.raises(ValueError, match="colormap"):
        depth_image(depth, cam, colormap="jet")
    with pytest.raises(ValueError, match="depth_range"):
        depth_image(depth)


def test_rgb_and_shading_images():
    x = torch.tensor([-1.0, 0.0, 1.0, 2.0]).reshape(1, 1, 4).expand(3, 1, 4)
    assert rgb_image(x)[0, :, 0].tolist() == [0, 128, 255, 255]
    assert shading_image(torch.tensor([[[0.0, 0.5, 1.0, 1.5]]])).tolist() == [[0, 128, 255, 255]]
    assert shading_image(np.array([[1.0]]), max_value=2.0).tolist() == [[128]]
    with pytest.raises(ValueError, match="one instance"):
        normal_image(torch.zeros(2, S, S, 3))


# ---- mesh ---------------------------------------------------------------------------------------


def test_obj_round_trip(tmp_path):
    cam = Camera(S)
    depth = _cap()
    mesh = mesh_from_depth(depth, cam, max_depth_step=float("inf"))
    tex = rgb_image(_texture())
    obj, mtl, png = write_textured_mesh(tmp_path / "mesh.obj", mesh, tex)
    assert (obj.name, mtl.name, png.name) == ("mesh.obj", "mesh.mtl", "mesh_texture.png")
    back = read_obj(obj)
    assert back.vertices.shape == (S * S, 3) and back.faces.shape == (2 * (S - 1) ** 2, 3)
    expected = depth_to_points(depth[None].double(), cam)[0].reshape(-1, 3).numpy()
    np.testing.assert_allclose(back.vertices, expected, rtol=1e-6, atol=1e-7)
    assert back.uvs.shape == (S * S, 2) and back.uvs.min() >= 0.0 and back.uvs.max() <= 1.0
    # uv of vertex k points at its own pixel (row, col) = divmod(k, S) in the texture image
    rows, cols = np.divmod(np.arange(S * S), S)
    np.testing.assert_allclose(back.uvs[:, 0] * (S - 1), cols, atol=1e-5)
    np.testing.assert_allclose((1 - back.uvs[:, 1]) * (S - 1), rows, atol=1e-5)
    assert back.faces.min() >= 0 and back.faces.max() < S * S
    assert np.array_equal(back.face_uvs, back.faces)
    assert back.mtllib == "mesh.mtl" and back.material == "canonical"
    assert "map_Kd mesh_texture.png" in mtl.read_text()
    assert np.array_equal(np.asarray(Image.open(png)), tex)
    assert not list(tmp_path.glob("*.tmp"))


def test_mesh_faces_front_facing_and_opengl_frame():
    cam = Camera(S)
    depth = torch.full((S, S), 1.0)
    for frame, towards_camera_z in (("camera", -1.0), ("opengl", 1.0)):
        m = mesh_from_depth(depth, cam, frame=frame)
        a, b, c = (m.vertices[m.faces[:, k]] for k in range(3))
        normal = np.cross(b - a, c - a)  # counter-clockwise rule of OBJ front faces
        assert (np.sign(normal[:, 2]) == towards_camera_z).all()
    cam_v = mesh_from_depth(_cap(), cam, frame="camera").vertices
    gl_v = mesh_from_depth(_cap(), cam, frame="opengl").vertices
    np.testing.assert_allclose(gl_v, cam_v * np.array([1.0, -1.0, -1.0]))


def test_mesh_drops_faces_at_discontinuities_and_border():
    cam = Camera(S)
    depth = torch.full((S, S), 0.95)
    depth[:, S // 2 :] = 1.05  # a 0.1 step between columns S/2-1 and S/2
    assert mesh_from_depth(depth, cam).faces.shape[0] == 2 * (S - 1) ** 2 - 2 * (S - 1)
    assert mesh_from_depth(depth, cam, max_depth_step=0.2).faces.shape[0] == 2 * (S - 1) ** 2
    flat = torch.full((S, S), 1.0)
    cropped = mesh_from_depth(flat, cam, crop_border=2)
    assert cropped.faces.shape[0] == 2 * (S - 5) ** 2
    rows, cols = np.divmod(cropped.faces, S)
    assert rows.min() == 2 and rows.max() == S - 3 and cols.min() == 2 and cols.max() == S - 3
    with pytest.raises(ValueError, match="image_size"):
        mesh_from_depth(torch.ones(S + 1, S + 1), cam)


# ---- media --------------------------------------------------------------------------------------


def test_rotation_sweep_gif_and_first_frame(tmp_path):
    cam = Camera(S)
    yaws = rotation_yaws(4, 90.0)
    np.testing.assert_allclose(yaws.numpy(), [0.0, math.pi / 2, 0.0, -math.pi / 2], atol=1e-6)
    tex, depth = _texture(), _cap()
    # 8 frames: no two consecutive frames are equal (Pillow would merge them, see write_gif)
    frames = rotation_frames(tex, depth, cam, n_frames=8, max_yaw_deg=40.0)
    assert frames.shape == (8, S, S, 3) and frames.dtype == np.uint8
    ref = render_view(tex[None], depth[None], torch.zeros(1, 6), cam).image[0]
    assert np.array_equal(frames[0], rgb_image(ref))
    assert not np.array_equal(frames[1], frames[0])  # it does rotate
    path = write_gif(tmp_path / "rotate.gif", frames, fps=10)
    with Image.open(path) as gif:
        assert gif.n_frames == 8
        assert gif.info.get("loop") == 0
    strip = frames_strip(frames, n_shown=3, pad=2)
    assert strip.shape == (S, 3 * S + 4, 3)
    assert np.array_equal(strip[:, :S], frames[0])
    assert np.array_equal(strip[:, S + 2 : 2 * S + 2], frames[3])  # frame round(1 * 8 / 3)


def test_rotation_grid_layout():
    cam = Camera(S)
    tex, depth = _texture(), _cap()
    grid = rotation_grid(tex, depth, cam, n_pitch=3, max_pitch_deg=20, n_yaw=5, max_yaw_deg=60, pad=1)
    assert grid.shape == (3 * S + 2, 5 * S + 4, 3)
    centre = grid[S + 1 : 2 * S + 1, 2 * (S + 1) : 2 * (S + 1) + S]  # pitch 0, yaw 0
    ref = render_view(tex[None], depth[None], torch.zeros(1, 6), cam).image[0]
    assert np.array_equal(centre, rgb_image(ref))


def test_relight_frontal_light_on_flat_plane_is_constant():
    cam = Camera(S)
    albedo = torch.tensor([0.2, -0.4, 0.6])[:, None, None].expand(3, S, S).contiguous()
    depth = torch.full((S, S), 1.0)
    k_a, k_d = 0.3, 0.5
    for radius in (0.0, 0.6):
        frames = relight_frames(albedo, depth, torch.zeros(6), k_a, k_d, cam, n_frames=5, radius=radius)
        assert frames.shape == (5, S, S, 3)
        # flat plane: <n, l> = 1 / sqrt(1 + r^2) for every pixel and every light on the circle
        shading = k_a + k_d / math.sqrt(1 + radius**2)
        expected = rgb_image(((albedo / 2 + 0.5) * shading * 2 - 1))
        assert (frames == expected[None]).all()


def test_relight_frames_match_shade_and_render_view():
    cam = Camera(S)
    albedo, depth = _texture(seed=1), _cap()
    view = torch.tensor([0.05, -0.2, 0.02, 0.01, -0.01, 0.0])
    frames = relight_frames(albedo, depth, view, 0.4, 0.6, cam, n_frames=3, radius=0.8)
    light_dir = light_direction(relight_light_xy(3, 0.8))
    normals = depth_to_normals(depth[None], cam)
    for k in range(3):
        tex, _ = shade(albedo[None], normals, torch.tensor([0.4]), torch.tensor([0.6]), light_dir[k : k + 1])
        r = render_view(tex, depth[None], view[None], cam, background=torch.ones_like(tex))
        assert np.abs(frames[k].astype(int) - rgb_image(r.image[0].clamp(-1, 1)).astype(int)).max() <= 1
    assert not np.array_equal(frames[0], frames[1])  # the light moves


# ---- exporter -----------------------------------------------------------------------------------


def _shape_arrays(n: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    return {
        "canon_depth": torch.stack([_cap()] * n),
        "canon_albedo": torch.rand(n, 3, S, S, generator=g) * 2 - 1,
        "view": torch.tensor([[0.0, 0.1, 0.0, 0.0, 0.0, 0.0]] * n),
        "light": torch.tensor([[0.0, 0.0, 0.4, -0.3]] * n),
        "image": torch.rand(n, 3, S, S, generator=g) * 2 - 1,
        "recon_depth": torch.stack([_cap()] * n),
    }


def test_export_instances_from_artifact_writes_every_file(tmp_path):
    cam = Camera(S)
    art = write_artifact(tmp_path / "shape.h5", "shape", _shape_arrays(2), ids=["face_0", "face_1"])
    opts = ExportOptions(n_frames=4, n_yaw=3, n_pitch=2)
    out = export_instances(art, tmp_path / "out", cam, options=opts)
    expected = {name for names in OUTPUT_FILES.values() for name in names} | {SUMMARY_FILE, "recon_depth.png"}
    assert set(out) == {"face_0", "face_1"}
    for inst, files in out.items():
        assert set(files) == expected
        for name, path in files.items():
            assert path == tmp_path / "out" / inst / name and path.is_file() and path.stat().st_size > 0
        assert not list((tmp_path / "out" / inst).glob("*.tmp"))
        with Image.open(files["rotate.gif"]) as gif:
            assert gif.n_frames == 4
        assert read_obj(files["mesh.obj"]).vertices.shape == (S * S, 3)
        assert np.asarray(Image.open(files[SUMMARY_FILE])).shape == (S, 6 * S + 10, 3)
        assert (np.asarray(Image.open(files["normal.png"])).shape) == (S, S, 3)
    # a subset by id, and a subset of outputs
    sub = export_instances(
        art, tmp_path / "sub", cam, ids=["face_1"], what=("depth",), options=ExportOptions(summary=False)
    )
    assert list(sub) == ["face_1"] and set(sub["face_1"]) == {"depth.png", "recon_depth.png"}
    with pytest.raises(ValueError, match="no instance"):
        export_instances(art, tmp_path / "bad", cam, ids=["nope"])
    other = write_artifact(tmp_path / "heads.h5", "heads", _shape_arrays(1), ids=["x"])
    with pytest.raises(ArtifactError, match="shape"):
        export_instances(other, tmp_path / "bad", cam)


def test_export_instances_from_dict_and_input_errors(tmp_path):
    cam = Camera(S)
    arrays = _shape_arrays(2)
    del arrays["image"], arrays["recon_depth"]
    out = export_instances(
        {k: v.numpy() for k, v in arrays.items()},
        tmp_path,
        cam,
        ids=["a", "b"],
        what=("normal", "mesh"),
        options=ExportOptions(mesh_frame="camera"),
    )
    assert set(out["a"]) == {"normal.png", "mesh.obj", "mesh.mtl", "mesh_texture.png", SUMMARY_FILE}
    pts = depth_to_points(arrays["canon_depth"][1:2].double(), cam)[0].reshape(-1, 3).numpy()
    np.testing.assert_allclose(read_obj(out["b"]["mesh.obj"]).vertices, pts, rtol=1e-6, atol=1e-7)
    with pytest.raises(ValueError, match="ids"):
        export_instances(arrays, tmp_path, cam)
    with pytest.raises(ValueError, match="folder"):
        export_instances(arrays, tmp_path, cam, ids=["a/b", "c"])
    with pytest.raises(ValueError, match="unknown export"):
        export_instances(arrays, tmp_path, cam, ids=["a", "b"], what=("video",))
    with pytest.raises(ValueError, match="canon_depth"):
        export_instances(arrays, tmp_path, Camera(S * 2), ids=["a", "b"])
    with pytest.raises(ValueError, match="n_frames"):
        ExportOptions(n_frames=0)
