"""User images (gan2shape.data.images): a folder of PNG/JPG files as an image artifact.

Checks: pixels and ids round-trip exactly (PNG; gray and RGBA become RGB), files are taken in name
order and `limit` keeps the first ones; a file of the wrong size, an unreadable file, an empty
folder and two files with one id fail naming the file and what to do; the CLI writes the artifact.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from gan2shape.artifacts import read_artifact
from gan2shape.cli import main
from gan2shape.data.images import ImageFolderError, image_id, import_images, load_image_folder

S = 8


def _rgb(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (S, S, 3), dtype=np.uint8)


def test_folder_round_trips_pixels_ids_and_order(tmp_path):
    a, b = _rgb(0), _rgb(1)
    Image.fromarray(b).save(tmp_path / "b face.png")
    Image.fromarray(a).save(tmp_path / "a.PNG")
    Image.fromarray(a[..., 0]).save(tmp_path / "c_gray.png")  # mode L
    Image.fromarray(np.dstack([a, np.full((S, S), 7, np.uint8)])).save(tmp_path / "d.png")  # RGBA
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / ".hidden.png").write_bytes(b"")
    ids, images = load_image_folder(tmp_path, S)
    assert ids == ["a", "b_face", "c_gray", "d"]
    assert images.shape == (4, 3, S, S) and images.dtype == np.uint8
    assert np.array_equal(images[0], a.transpose(2, 0, 1)) and np.array_equal(images[1], b.transpose(2, 0, 1))
    assert all(np.array_equal(images[2][c], a[..., 0]) for c in range(3))
    assert np.array_equal(images[3], a.transpose(2, 0, 1))
    ids, images = load_image_folder(tmp_path, S, limit=2)
    assert ids == ["a", "b_face"] and images.shape[0] == 2
    out = import_images(tmp_path, tmp_path / "out" / "images.h5", S, limit=1)
    with read_artifact(out, "images", require=("image",)) as art:
        assert art.ids == ["a"] and np.array_equal(art.array("image")[0], a.transpose(2, 0, 1))


def test_bad_folders_fail_naming_the_file(tmp_path):
    Image.fromarray(_rgb(0)).save(tmp_path / "good.png")
    Image.fromarray(np.zeros((S, S + 4, 3), np.uint8)).save(tmp_path / "wide.jpg")
    with pytest.raises(ImageFolderError, match=rf"wide\.jpg is {S + 4}x{S} pixels, expected {S}x{S}.*resize"):
        load_image_folder(tmp_path, S, limit=1)  # every file is checked, not only the kept ones
    (tmp_path / "wide.jpg").unlink()
    (tmp_path / "broken.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(ImageFolderError, match=r"broken\.png cannot be read"):
        load_image_folder(tmp_path, S)
    (tmp_path / "broken.png").unlink()
    Image.fromarray(_rgb(1)).save(tmp_path / "good.jpg")
    with pytest.raises(ImageFolderError, match="both give the instance id 'good'"):
        load_image_folder(tmp_path, S)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ImageFolderError, match="holds no"):
        load_image_folder(tmp_path / "empty", S)
    with pytest.raises(ImageFolderError, match="is not a folder"):
        load_image_folder(tmp_path / "missing", S)
    assert image_id("x/ä b+c.png") == "__b_c"  # one '_' per character outside [A-Za-z0-9._-]


def test_cli_import_images(tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    Image.fromarray(_rgb(2)).save(folder / "x.png")
    res = CliRunner().invoke(
        main, ["import-images", "--images", str(folder), "--size", str(S), "--out", str(tmp_path / "i.h5")]
    )
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["size"] == S
    res = CliRunner().invoke(
        main, ["import-images", "--images", str(folder), "--size", str(S + 1), "--out", str(tmp_path / "j.h5")]
    )
    assert res.exit_code == 1 and "x.png" in res.output and not (tmp_path / "j.h5").exists()
    res = CliRunner().invoke(main, ["import-images", "--images", str(folder), "--out", str(tmp_path / "k.h5")])
    assert res.exit_code == 2 and "exactly one of" in res.output
