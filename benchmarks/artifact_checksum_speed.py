"""Cost of the artifacts' CRC32 checksums: write and read a ~1 GB artifact with and without them.

Usage (from the repo root)::

    python benchmarks/artifact_checksum_speed.py [--gib 1.0] [--dir /tmp]

Two datasets: float32 rows of 256 KiB (network weights or depth maps; ~--gib GiB) and the
make-heads layout, uint8 images (N, 3, 64, 64) with lzf compression (a quarter of that). 'with'
is ArtifactWriter.append / Artifact.array (checksum per chunk, checked on read); 'without' is the
same h5py layout written and read directly (what artifacts did before checksums). Each read
follows its write, so it comes from the page cache: the disk-free worst case for the checksum's
share. Also times zlib.crc32 alone. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import zlib
from pathlib import Path

import h5py
import numpy as np

from gan2shape.artifacts import ArtifactWriter, read_artifact


def _chunk_rows(row: np.ndarray) -> int:
    return max(1, min(64, (1 << 20) // max(1, row.nbytes)))  # ArtifactWriter's rule


def _write_raw(path: Path, batches: list[np.ndarray], compression: str | None) -> None:
    with h5py.File(path, "w") as f:
        first = batches[0]
        ds = f.create_dataset(
            "x",
            shape=(0, *first.shape[1:]),
            maxshape=(None, *first.shape[1:]),
            dtype=first.dtype,
            chunks=(_chunk_rows(first[0]), *first.shape[1:]),
            compression=compression,
        )
        for b in batches:
            start = ds.shape[0]
            ds.resize(start + b.shape[0], axis=0)
            ds[start:] = b
    with open(path, "rb+") as fh:  # as ArtifactWriter.commit does
        os.fsync(fh.fileno())


def _write_artifact(path: Path, batches: list[np.ndarray], compression: str | None) -> None:
    with ArtifactWriter(path, "bench", compression=compression) as w:
        start = 0
        for b in batches:
            w.append([str(i) for i in range(start, start + b.shape[0])], {"x": b})
            start += b.shape[0]


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _case(folder: Path, name: str, batches: list[np.ndarray], compression: str | None, repeats: int) -> list[str]:
    nbytes = sum(b.nbytes for b in batches)
    raw, art = folder / f"{name}_raw.h5", folder / f"{name}_art.h5"
    times: dict[str, list[float]] = {k: [] for k in ("w_raw", "w_art", "r_raw", "r_art")}
    for _ in range(repeats):  # interleaved, best of: the machine is shared
        times["w_raw"].append(_timed(lambda: _write_raw(raw, batches, compression)))
        times["w_art"].append(_timed(lambda: _write_artifact(art, batches, compression)))

        def read_raw() -> None:
            with h5py.File(raw, "r") as f:
                f["x"][()]

        def read_art() -> None:
            with read_artifact(art) as a:
                a.array("x")

        times["r_raw"].append(_timed(read_raw))
        times["r_art"].append(_timed(read_art))
    best = {k: min(v) for k, v in times.items()}
    gb = nbytes / 1e9
    size = art.stat().st_size / 1e9
    raw.unlink()
    art.unlink()
    return [
        f"| {name} write | {gb:.2f} ({size:.2f} on disk) | {best['w_raw']:.2f} | {best['w_art']:.2f} | "
        f"{100 * (best['w_art'] / best['w_raw'] - 1):+.0f}% |",
        f"| {name} read (all rows) | {gb:.2f} | {best['r_raw']:.2f} | {best['r_art']:.2f} | "
        f"{100 * (best['r_art'] / best['r_raw'] - 1):+.0f}% |",
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gib", type=float, default=1.0, help="size of the float32 dataset in GiB")
    ap.add_argument("--dir", default=None, help="folder for the temporary files (default: the system's)")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    rows = int(args.gib * (1 << 30)) // (256 << 10)
    floats = rng.standard_normal((rows, 64, 1024), dtype=np.float32)  # rows of 256 KiB, chunks of 4 rows
    t0 = time.perf_counter()
    zlib.crc32(floats.reshape(-1).view(np.uint8))
    crc_gbs = floats.nbytes / 1e9 / (time.perf_counter() - t0)
    n_img = int(args.gib * (1 << 30) / 4) // (3 * 64 * 64)
    u, v = np.meshgrid(np.arange(64), np.arange(64), indexing="ij")
    disk = ((u - 32) ** 2 + (v - 32) ** 2 < 24**2)[None, None]
    images = np.where(disk, rng.integers(0, 256, (n_img, 3, 64, 64), dtype=np.uint8), 0).astype(np.uint8)
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        folder = Path(tmp)
        lines = ["| data | GB | h5py alone (s) | artifact, checksummed (s) | difference |", "|---|---|---|---|---|"]
        lines += _case(folder, "float32 (N, 64, 1024)", np.array_split(floats, 64), None, args.repeats)
        lines += _case(folder, "uint8 images (N, 3, 64, 64), lzf", np.array_split(images, 40), "lzf", args.repeats)
    print(f"zlib.crc32 alone: {crc_gbs:.2f} GB/s\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
