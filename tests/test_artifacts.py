"""HDF5 artifacts: round trips, atomic writes, and clear errors on bad files."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch

from gan2shape.artifacts import SCHEMA_VERSION, ArtifactError, ArtifactWriter, read_artifact, write_artifact


def test_round_trip_arrays_attrs_networks(tmp_path):
    rng = np.random.default_rng(0)
    depth = rng.random((3, 8, 8)).astype(np.float32)
    image = torch.randint(0, 255, (3, 3, 8, 8), dtype=torch.uint8)
    net = torch.nn.Conv2d(3, 4, 3)
    path = write_artifact(
        tmp_path / "a.h5", "shape", {"depth": depth, "image": image}, ids=["a", "b", "c"],
        params_text="x: 1\n", attrs={"stage": 2, "timings": {"step1": 1.5}}, networks={"net": net.state_dict()},
    )
    with read_artifact(path, kind="shape", require=["depth"], shapes={"depth": (8, None)}) as art:
        assert art.ids == ["a", "b", "c"] and art.n == 3
        np.testing.assert_array_equal(art.array("depth"), depth)
        assert torch.equal(art.tensor("image"), image)
        np.testing.assert_array_equal(art.array("depth", [2, 0, 2]), depth[[2, 0, 2]])
        np.testing.assert_array_equal(art.array("depth", slice(1, 3)), depth[1:3])
        assert art.attrs["stage"] == 2 and art.attrs["timings"] == {"step1": 1.5}
        assert art.attrs["schema_version"] == SCHEMA_VERSION and len(art.attrs["params_digest"]) == 16
        loaded = art.network("net")
        for key, value in net.state_dict().items():
            assert torch.equal(loaded[key], value)
        with pytest.raises(ArtifactError, match="no dataset 'nope'"):
            art.array("nope")


def test_streaming_writer_appends_and_checks_batches(tmp_path):
    path = tmp_path / "s.h5"
    with ArtifactWriter(path, "heads") as writer:
        for start in range(0, 10, 4):
            n = min(4, 10 - start)
            writer.append([f"i{start + k}" for k in range(n)], {"x": np.full((n, 2), start, np.int16)})
        with pytest.raises(ValueError, match="leading instance axis"):
            writer.append(["z"], {"x": np.zeros((2, 2), np.int16)})
        with pytest.raises(ValueError, match="per-instance shape"):
            writer.append(["z"], {"x": np.zeros((1, 3), np.int16)})
        with pytest.raises(ValueError, match="differ from the first batch"):
            writer.append(["z"], {"y": np.zeros((1, 2), np.int16)})
    with read_artifact(path) as art:
        assert art.n == 10 and art.array("x")[:, 0].tolist() == [0] * 4 + [4] * 4 + [8] * 2


def test_failed_write_leaves_nothing(tmp_path):
    path = tmp_path / "x.h5"
    with pytest.raises(RuntimeError, match="boom"):
        with ArtifactWriter(path, "heads") as writer:
            writer.append(["a"], {"x": np.zeros((1, 2))})
            raise RuntimeError("boom")
    assert not path.exists() and not (tmp_path / "x.h5.tmp").exists()


def test_read_errors_say_what_is_wrong(tmp_path):
    with pytest.raises(ArtifactError, match="does not exist"):
        read_artifact(tmp_path / "missing.h5")
    path = write_artifact(tmp_path / "ok.h5", "shape", {"d": np.zeros((2, 4), np.float32)}, ids=["a", "b"])
    with pytest.raises(ArtifactError, match="expected 'albedo'"):
        read_artifact(path, kind="albedo")
    with pytest.raises(ArtifactError, match="lacks the required dataset 'x'"):
        read_artifact(path, require=["x"])
    with pytest.raises(ArtifactError, match=r"per-instance shape \(4,\), expected \(5,\)"):
        read_artifact(path, shapes={"d": (5,)})
    # truncated file
    data = path.read_bytes()
    trunc = tmp_path / "trunc.h5"
    trunc.write_bytes(data[: len(data) // 3])
    with pytest.raises(ArtifactError, match="truncated"):
        read_artifact(trunc)
    # not an HDF5 file at all
    junk = tmp_path / "junk.h5"
    junk.write_text("hello")
    with pytest.raises(ArtifactError, match="cannot be opened as HDF5"):
        read_artifact(junk)
    # a file that was never completed, and a wrong schema version
    with h5py.File(tmp_path / "inc.h5", "w") as f:
        f.attrs["kind"] = "shape"
    with pytest.raises(ArtifactError, match="never completed"):
        read_artifact(tmp_path / "inc.h5")
    with h5py.File(path, "a") as f:
        f.attrs["schema_version"] = 99
    with pytest.raises(ArtifactError, match="schema version 99"):
        read_artifact(path)


def test_row_count_mismatch_is_caught(tmp_path):
    path = write_artifact(tmp_path / "m.h5", "shape", {"d": np.zeros((2, 4))}, ids=["a", "b"])
    with h5py.File(path, "a") as f:
        f.create_dataset("extra", data=np.zeros((3, 1)))
    with pytest.raises(ArtifactError, match="has 3 rows but the file lists 2"):
        read_artifact(path)


def test_duplicate_ids_rejected(tmp_path):
    with pytest.raises(ValueError, match="not unique"):
        write_artifact(tmp_path / "d.h5", "shape", {"d": np.zeros((2, 1))}, ids=["a", "a"])
    assert not (tmp_path / "d.h5").exists()
