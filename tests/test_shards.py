"""Shards of a workflow run (gan2shape.shards): row ranges, splitting an instances artifact, joining
the shards' export folders.

Checks: the bounds cover 0..N once, in order, shard_size rows each but the last; a split holds
exactly its source rows of every dataset, the ids, the source's attributes and params text, and
the split of every shard put back together is the source; a shard index past the end fails naming
the count; collected exports are hard links to the shards' files (same inode, no copy), built
atomically; an id in two shards, a stray file, a missing folder fail with the path.
"""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

from gan2shape.artifacts import read_artifact, write_artifact
from gan2shape.cli import main
from gan2shape.shards import collect_exports, shard_bounds, split_instances


@pytest.mark.parametrize(
    "n, size, expected",
    [
        (5, None, [(0, 5)]),
        (5, 2, [(0, 2), (2, 4), (4, 5)]),
        (4, 2, [(0, 2), (2, 4)]),
        (3, 7, [(0, 3)]),
        (1, 1, [(0, 1)]),
    ],
)
def test_shard_bounds(n, size, expected):
    bounds = shard_bounds(n, size)
    assert bounds == expected
    assert [i for a, b in bounds for i in range(a, b)] == list(range(n))


def test_shard_bounds_rejects_bad_counts():
    for n, size in ((0, 2), (3, 0), (3, -1), (True, 1), (3, 1.5)):
        with pytest.raises(ValueError):
            shard_bounds(n, size)


def _instances(path, n=5):
    rng = np.random.default_rng(0)
    arrays = {
        "image": rng.uniform(-1, 1, (n, 3, 4, 4)).astype(np.float32),
        "latent": rng.normal(size=(n, 3, 8)).astype(np.float32),
        "noise_0": rng.normal(size=(n, 1, 4, 4)).astype(np.float32),
        "mask": rng.integers(0, 2, (n, 4, 4), dtype=np.uint8),
    }
    ids = [f"s0_{i:05d}" for i in range(n)]
    write_artifact(
        path,
        "instances",
        arrays,
        ids=ids,
        params_text="method: {seed: 3}\n",
        attrs={"n_noise": 1, "image_size": 4, "source": "sampled", "seed": 0},
    )
    return arrays, ids


def test_split_instances_keeps_rows_ids_and_attributes(tmp_path):
    src = tmp_path / "instances.h5"
    arrays, ids = _instances(src)
    rows = []
    for shard, (a, b) in enumerate(shard_bounds(5, 2)):
        out = split_instances(src, tmp_path / f"shard{shard}" / "instances.h5", shard, 2)
        with read_artifact(out, "instances") as art:
            assert art.ids == ids[a:b]
            assert art.names == sorted(arrays)
            for name, value in arrays.items():
                assert np.array_equal(art.array(name), value[a:b]) and art.array(name).dtype == value.dtype
            assert art.attrs["params_text"] == "method: {seed: 3}\n"
            assert (art.attrs["n_noise"], art.attrs["image_size"], art.attrs["source"]) == (1, 4, "sampled")
            assert (art.attrs["shard"], list(art.attrs["shard_rows"])) == (shard, [a, b])
            rows.append(art.array("latent"))
    assert np.array_equal(np.concatenate(rows), arrays["latent"])  # the shards put together are the source
    assert not list(tmp_path.rglob("*.tmp"))


def test_split_instances_index_past_the_end_fails(tmp_path):
    src = tmp_path / "instances.h5"
    _instances(src)
    with pytest.raises(ValueError, match=r"5 instance\(s\): 3 shard\(s\) of 2, so shard 3 does not exist"):
        split_instances(src, tmp_path / "x.h5", 3, 2)
    res = CliRunner().invoke(
        main,
        [
            "split-instances",
            "--instances",
            str(src),
            "--shard",
            "0",
            "--shard-size",
            "0",
            "--out",
            str(tmp_path / "x.h5"),
        ],
    )
    assert res.exit_code != 0 and "--shard-size must be >= 1" in res.output
    assert not (tmp_path / "x.h5").exists()


def _export(folder, ids):
    for i in ids:
        (folder / i).mkdir(parents=True)
        (folder / i / "depth.png").write_bytes(f"png of {i}".encode())
        (folder / i / "mesh.obj").write_text(f"v 0 0 {i}\n")
    (folder / ".snakemake_timestamp").touch()  # what Snakemake leaves in a directory output


def test_collect_exports_links_every_shard(tmp_path):
    _export(tmp_path / "shard0/export", ["a", "b"])
    _export(tmp_path / "shard1/export", ["c"])
    out = tmp_path / "export"
    res = CliRunner().invoke(
        main, ["collect-exports", str(tmp_path / "shard0/export"), str(tmp_path / "shard1/export"), "--out", str(out)]
    )
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in out.iterdir()) == ["a", "b", "c"]
    for shard, i in (("shard0", "a"), ("shard0", "b"), ("shard1", "c")):
        for name in ("depth.png", "mesh.obj"):
            src, dest = tmp_path / shard / "export" / i / name, out / i / name
            assert dest.read_bytes() == src.read_bytes()
            assert dest.stat().st_ino == src.stat().st_ino  # a hard link, not a copy
    assert not (tmp_path / "export.tmp").exists()
    # a rerun replaces the folder (e.g. after one shard was redone)
    assert collect_exports([tmp_path / "shard1/export"], out) == ["c"]
    assert sorted(p.name for p in out.iterdir()) == ["c"]


def test_collect_exports_rejects_mixed_or_broken_folders(tmp_path):
    _export(tmp_path / "s0", ["a"])
    _export(tmp_path / "s1", ["a"])
    with pytest.raises(ValueError, match=r"instance 'a' is exported by two shards"):
        collect_exports([tmp_path / "s0", tmp_path / "s1"], tmp_path / "out")
    with pytest.raises(ValueError, match=r"missing is not a folder"):
        collect_exports([tmp_path / "missing"], tmp_path / "out")
    (tmp_path / "s0" / "stray.txt").write_text("x")
    with pytest.raises(ValueError, match=r"stray.txt: an export folder holds only one folder per instance id"):
        collect_exports([tmp_path / "s0"], tmp_path / "out")
    assert not (tmp_path / "out").exists()
