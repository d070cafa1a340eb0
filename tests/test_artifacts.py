"""HDF5 artifacts: round trips, atomic writes, and clear errors on bad files."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from gan2shape.artifacts import (
    SCHEMA_VERSION,
    ArtifactError,
    ArtifactWriter,
    CorruptArtifactError,
    read_artifact,
    write_artifact,
)


def test_round_trip_arrays_attrs_networks(tmp_path):
    rng = np.random.default_rng(0)
    depth = rng.random((3, 8, 8)).astype(np.float32)
    image = torch.randint(0, 255, (3, 3, 8, 8), dtype=torch.uint8)
    net = torch.nn.Conv2d(3, 4, 3)
    path = write_artifact(
        tmp_path / "a.h5",
        "shape",
        {"depth": depth, "image": image},
        ids=["a", "b", "c"],
        params_text="x: 1\n",
        attrs={"stage": 2, "timings": {"step1": 1.5}},
        networks={"net": net.state_dict()},
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


# ----- integrity: CRC32 checksums per block of rows --------------------------------------------


def _damage(path, offset: int, n_bytes: int, seed: int = 0) -> None:
    """Overwrite n_bytes of the file at offset with random bytes (what a disk or copy error does)."""
    with open(path, "r+b") as fh:
        fh.seek(offset)
        fh.write(np.random.default_rng(seed).integers(0, 256, n_bytes, dtype=np.uint8).tobytes())


def _chunk_offset(path, name: str, chunk: int) -> tuple[int, int]:
    """(byte offset, size) of a chunked dataset's chunk in the file."""
    with h5py.File(path, "r") as f:
        info = f[name].id.get_chunk_info(chunk)
        return info.byte_offset, info.size


def test_checksums_cover_every_block_and_every_way_of_reading(tmp_path):
    """Rows (64,) float32 make chunks (= checksum blocks) of 64 rows; batches of 7 rows straddle them."""
    data = np.random.default_rng(0).random((200, 64)).astype(np.float32)
    with ArtifactWriter(tmp_path / "c.h5", "shape") as writer:
        for start in range(0, 200, 7):
            writer.append([f"i{k}" for k in range(start, min(200, start + 7))], {"x": data[start : start + 7]})
        writer.add_network("net", {"w": torch.arange(6.0).reshape(2, 3), "steps": torch.tensor(3)})
    with h5py.File(tmp_path / "c.h5", "r") as f:
        assert f["x"].chunks[0] == 64 and f["x"].attrs["crc32_rows"] == 64 and f["x"].attrs["crc32"].shape == (4,)
        assert f["networks/net/w"].attrs["crc32_rows"] == 0
    with read_artifact(tmp_path / "c.h5") as art:
        np.testing.assert_array_equal(art.array("x"), data)
        for index in (slice(60, 70), slice(199, None), slice(0, 0), slice(None, None, 7), slice(150, 10, -3)):
            np.testing.assert_array_equal(art.array("x", index), data[index])
        for rows in ([199, 0, 64, 64, 3], np.array([[5, 130], [131, 5]]), []):
            np.testing.assert_array_equal(art.array("x", rows), data[np.asarray(rows, dtype=np.int64).reshape(-1)])
        net = art.network("net")
        assert torch.equal(net["w"], torch.arange(6.0).reshape(2, 3)) and int(net["steps"]) == 3
        assert art.verify() == 3


def test_a_damaged_block_is_named_with_its_file_dataset_and_fix(tmp_path):
    data = np.random.default_rng(1).random((200, 64)).astype(np.float32)
    path = write_artifact(
        tmp_path / "shape.h5",
        "shape",
        {"x": data, "y": data[:, :2].copy()},
        ids=[str(i) for i in range(200)],
        networks={"net": {"w": torch.ones(300, 300)}},
    )
    offset, size = _chunk_offset(path, "x", 1)  # rows 64..127
    _damage(path, offset + 100, 8)
    with read_artifact(path) as art:
        np.testing.assert_array_equal(art.array("x", slice(0, 64)), data[:64])  # other blocks still read
        np.testing.assert_array_equal(art.array("y"), data[:, :2])
        for read in (
            lambda: art.array("x"),
            lambda: art.array("x", [70]),
            lambda: art.array("x", slice(120, 130)),
            art.verify,
        ):
            with pytest.raises(CorruptArtifactError) as info:
                read()
            message = str(info.value)
            assert str(path) in message and "dataset 'x' is corrupted (rows 64..127)" in message
            assert "delete it and rerun the step that produces it" in message
    with h5py.File(path, "r") as f:
        net_offset = f["networks/net/w"].id.get_offset()
    _damage(path, net_offset + 4096, 16, seed=2)
    with read_artifact(path) as art:
        with pytest.raises(CorruptArtifactError, match="dataset 'networks/net/w' is corrupted: .*delete it"):
            art.network("net")


def test_artifacts_without_checksums_still_read(tmp_path):
    """Files written before checksums existed: read as before, nothing to check against."""
    data = np.arange(40, dtype=np.int16).reshape(20, 2)
    path = write_artifact(
        tmp_path / "old.h5",
        "shape",
        {"x": data},
        ids=[str(i) for i in range(20)],
        networks={"net": {"w": torch.ones(2, 2)}},
    )
    with h5py.File(path, "a") as f:
        for ds in (f["x"], f["networks/net/w"]):
            del ds.attrs["crc32"], ds.attrs["crc32_rows"]
    with read_artifact(path) as art:
        np.testing.assert_array_equal(art.array("x", slice(3, 9)), data[3:9])
        np.testing.assert_array_equal(art.array("x", [7, 2]), data[[7, 2]])
        assert torch.equal(art.network("net")["w"], torch.ones(2, 2)) and art.verify() == 0


def test_many_blocks_are_merged_to_fit_an_attribute(tmp_path, monkeypatch):
    """Beyond _MAX_CRC_BLOCKS blocks the writer checksums coarser blocks (whole multiples of a chunk)."""
    import gan2shape.artifacts as artifacts

    monkeypatch.setattr(artifacts, "_MAX_CRC_BLOCKS", 3)
    data = np.random.default_rng(2).random((500, 64)).astype(np.float32)  # 8 chunks of 64 rows
    path = write_artifact(tmp_path / "m.h5", "shape", {"x": data}, ids=[str(i) for i in range(500)])
    with h5py.File(path, "r") as f:
        assert f["x"].attrs["crc32_rows"] == 192 and f["x"].attrs["crc32"].shape == (3,)
    offset, _ = _chunk_offset(path, "x", 4)  # rows 256..319, in the block of rows 192..383
    _damage(path, offset, 4)
    with read_artifact(path) as art:
        np.testing.assert_array_equal(art.array("x", slice(0, 190)), data[:190])
        with pytest.raises(CorruptArtifactError, match=r"rows 192\.\.383"):
            art.array("x", [300])


def test_four_megabytes_of_random_bytes_inside_a_shape_artifact_are_named(tmp_path):
    """The review's case: 4 MB of random bytes written inside a shape.h5 (here into its network weights,
    most of such a file). `gan2shape check-artifact` names the file and the dataset in one line; a step
    reading the damaged dataset says the same and writes nothing."""
    from click.testing import CliRunner

    from gan2shape.cli import main

    n = 4
    depth = np.full((n, 32, 32), 1.0, np.float32)
    path = write_artifact(
        tmp_path / "shape.h5",
        "shape",
        {"recon_depth": depth, "canon_depth": depth},
        ids=[f"te{i:03d}" for i in range(n)],
        networks={"depth": {"w": torch.randn(n, 2048, 1024)}},
    )  # 32 MB of weights
    with h5py.File(path, "r") as f:
        start = f["networks/depth/w"].id.get_offset()
    _damage(path, start + (8 << 20), 4 << 20)
    result = CliRunner().invoke(main, ["check-artifact", str(path)])
    assert result.exit_code == 1 and "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error")]
    assert len(errors) == 1 and str(path) in errors[0] and "'networks/depth/w' is corrupted" in errors[0]
    assert "delete it and rerun the step that produces it" in errors[0]
    # the same bytes inside a dataset a step reads: evaluate stops with that line, writes no metrics
    offset, size = _chunk_offset(path, "recon_depth", 0)
    _damage(path, offset, size)
    write_artifact(
        tmp_path / "test.h5",
        "heads",
        {"depth": depth * 1.01, "mask": np.ones((n, 32, 32), np.uint8)},
        ids=[f"te{i:03d}" for i in range(n)],
        attrs={"image_size": 32, "camera_fov_deg": 10.0},
    )
    params = Path(__file__).resolve().parents[1] / "params.yaml"
    result = CliRunner().invoke(
        main,
        [
            "evaluate",
            "--params",
            str(params),
            "--test",
            str(tmp_path / "test.h5"),
            "--pred",
            str(path),
            "--out",
            str(tmp_path / "ev"),
            "--no-baselines",
        ],
    )
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "dataset 'recon_depth' is corrupted" in result.output and not (tmp_path / "ev").exists()


def test_linked_networks_read_from_their_source_and_refuse_a_changed_one(tmp_path):
    from gan2shape.artifacts import network_links

    g = torch.Generator().manual_seed(0)
    nets = {
        name: {"w": torch.randn(3, 4, generator=g).half(), "b": torch.randn(4, generator=g).half()}
        for name in ("depth", "albedo")
    }
    src = write_artifact(tmp_path / "stage0/shape.h5", "shape", {}, ids=["a"], networks=nets)
    # a second artifact stores albedo and links depth (a chain: a third links through it)
    links = network_links(src, ["depth"], tmp_path / "stage1/albedo.h5")
    assert links["depth"]["path"] == os.path.join("..", "stage0", "shape.h5")
    mid = write_artifact(
        tmp_path / "stage1/albedo.h5",
        "albedo",
        {},
        ids=["a"],
        networks={"albedo": nets["albedo"]},
        attrs={"network_links": links},
    )
    last = write_artifact(
        tmp_path / "stage1/next.h5",
        "albedo",
        {},
        ids=["a"],
        attrs={"network_links": network_links(mid, ["depth", "albedo"], tmp_path / "stage1/next.h5")},
    )
    with read_artifact(last) as art:
        assert art.network_names == [] and art.linked_network_names == ["albedo", "depth"]
        for name in ("depth", "albedo"):
            got = art.network(name)
            assert got.keys() == nets[name].keys()
            assert all(torch.equal(got[k], nets[name][k]) for k in got)
    # the folder moved as a whole: the relative links still hold
    shutil.copytree(tmp_path / "stage0", tmp_path / "moved/stage0")
    shutil.copytree(tmp_path / "stage1", tmp_path / "moved/stage1")
    with read_artifact(tmp_path / "moved/stage1/albedo.h5") as art:
        assert torch.equal(art.network("depth")["w"], nets["depth"]["w"])
    # the source rewritten with other weights: the link is refused, naming both files and the fix
    write_artifact(
        src,
        "shape",
        {},
        ids=["a"],
        networks={"depth": {k: v + 1 for k, v in nets["depth"].items()}, "albedo": nets["albedo"]},
    )
    with read_artifact(mid) as art, pytest.raises(ArtifactError, match="changed since: rerun the step"):
        art.network("depth")
    src.unlink()
    with read_artifact(mid) as art, pytest.raises(ArtifactError, match="not usable"):
        art.network("depth")
