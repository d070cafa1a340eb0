"""Shards of a workflow run (docs/DESIGN.md "Devices and scale").

The instances of a run are split into shards of consecutive rows; each shard is its own chain of
method steps (``<run>/shard<i>/stage<k>/...``), so shards run side by side, one GPU each, on one host
(``snakemake --resources gpu=N``) or on a cluster. The shards' exports are then joined into one
folder, ``<run>/export/<id>/``, by hard links (no copy of the media; a copy where the file system
has no hard links).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from pathlib import Path

from gan2shape.artifacts import ArtifactWriter, read_artifact

__all__ = ["collect_exports", "shard_bounds", "split_instances"]

# Attributes the artifact writer sets itself; every other attribute of the source travels with a shard.
_WRITER_ATTRS = {
    "kind",
    "schema_version",
    "ids",
    "code_version",
    "created",
    "host",
    "params_text",
    "params_digest",
    "complete",
}


def shard_bounds(n: int, shard_size: int | None) -> list[tuple[int, int]]:
    """Row ranges ``[start, stop)`` of the shards of ``n`` instances: consecutive, ``shard_size`` rows
    each (the last one may hold fewer); ``None``: one shard of all ``n``."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"shard_bounds: n must be an int >= 1, got {n!r}")
    if shard_size is None:
        return [(0, n)]
    if isinstance(shard_size, bool) or not isinstance(shard_size, int) or shard_size < 1:
        raise ValueError(f"shard_bounds: shard_size must be None or an int >= 1, got {shard_size!r}")
    return [(start, min(n, start + shard_size)) for start in range(0, n, shard_size)]


def split_instances(src: str | Path, out: str | Path, shard: int, shard_size: int | None) -> Path:
    """Write shard ``shard`` of the 'instances' artifact ``src`` (its rows ``shard_bounds(N,
    shard_size)[shard]``) to ``out``: every dataset's rows, the ids, the source's attributes and params
    text, plus ``shard``, ``shard_rows`` [start, stop) and ``shard_source``. Atomic, as every artifact.

    Raises ValueError when the shard index is out of range for this artifact and shard size.
    """
    with read_artifact(src, "instances") as art:
        bounds = shard_bounds(art.n, shard_size)
        if not 0 <= shard < len(bounds):
            raise ValueError(
                f"{src} holds {art.n} instance(s): {len(bounds)} shard(s) of {shard_size or art.n}, so shard {shard} "
                f"does not exist; rerun the workflow so that its shard list is rebuilt from workflow.instances "
                f"and workflow.shard_size"
            )
        start, stop = bounds[shard]
        rows = slice(start, stop)
        attrs = {k: v for k, v in art.attrs.items() if k not in _WRITER_ATTRS}
        attrs.update(shard=shard, shard_rows=[start, stop], shard_source=str(src))
        with ArtifactWriter(out, "instances", params_text=art.attrs.get("params_text"), attrs=attrs) as writer:
            writer.append(art.ids[rows], {name: art.array(name, rows) for name in art.names})
    return Path(out)


def _link_tree(src: Path, dest: Path) -> None:
    """``dest`` as a tree of hard links to the files of ``src`` (copies where linking fails)."""
    dest.mkdir(parents=True)
    for entry in sorted(src.iterdir()):
        target = dest / entry.name
        if entry.is_dir():
            _link_tree(entry, target)
            continue
        try:
            os.link(entry, target)
        except OSError:  # another file system, or one without hard links
            shutil.copy2(entry, target)


def collect_exports(shard_dirs: Sequence[str | Path], out: str | Path) -> list[str]:
    """Join the shards' export folders (each holding ``<id>/`` folders of ``gan2shape export``) into
    ``out/<id>/`` and return the ids, sorted. Files are hard links to the shards' files. Built in
    ``out.tmp`` and moved into place, so ``out`` is complete or absent.

    Hidden entries (Snakemake's ``.snakemake_timestamp``) are skipped. Raises ValueError for a missing
    shard folder, a file beside the id folders, or an id found in two shards (shards of different runs
    given together).
    """
    out = Path(out)
    seen: dict[str, Path] = {}
    for folder in map(Path, shard_dirs):
        if not folder.is_dir():
            raise ValueError(
                f"{folder} is not a folder: give the export folders of the shards (gan2shape export --out)"
            )
        for entry in sorted(folder.iterdir()):
            if entry.name.startswith("."):
                continue  # hidden: Snakemake's .snakemake_timestamp in a directory output
            if not entry.is_dir():
                raise ValueError(
                    f"{entry}: an export folder holds only one folder per instance id; remove this "
                    "file or rerun that shard's export"
                )
            if entry.name in seen:
                raise ValueError(
                    f"instance {entry.name!r} is exported by two shards ({seen[entry.name]} and "
                    f"{folder}): give the shard folders of one run"
                )
            seen[entry.name] = folder
    tmp = out.with_name(out.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)  # left by a killed run
    tmp.mkdir(parents=True)
    for name, folder in seen.items():
        _link_tree(folder / name, tmp / name)
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    return sorted(seen)
