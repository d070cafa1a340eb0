"""HDF5 artifacts exchanged between pipeline steps (docs/DESIGN.md, "Artifacts").

Layout of one artifact file::

    /                     attrs: kind, schema_version, complete, ids (json), params_text,
                                 params_digest, code_version, created, device, + caller attrs
    /<name>               one dataset per tensor, leading axis N = number of instances
    /networks/<net>/<key> one dataset per state-dict tensor (network weights travel inside)

Writes are atomic: everything goes to ``<path>.tmp`` first, the ``complete`` flag is set last and
the file is moved into place with ``os.replace``; a killed job never leaves a file that looks
complete. Reads validate the schema and say which file is wrong, why, and what to do.

Integrity: every numeric dataset carries CRC32 checksums of its bytes (attributes ``crc32``, one
per block of ``crc32_rows`` consecutive rows, the dataset's HDF5 chunk; ``crc32_rows`` 0 = one
checksum of the whole dataset, as for network tensors). Every read checks the blocks it touches,
so bytes changed after the write (a disk or copy error) are reported with the file and the
dataset instead of being computed with. Files written before checksums existed read unchecked.

Network links: an artifact may name networks it does not store but that another artifact holds
unchanged (attribute ``network_links``, from ``network_links``: name -> the other file's path
relative to this one's folder and a digest of that network's checksums). ``Artifact.network``
reads a linked network from there, after checking the digest, so a step that leaves a network
untouched does not store a second copy of it (per-instance networks are ~80 MB per instance at
64 px).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import platform
import zlib
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import h5py
import numpy as np
import torch

from gan2shape import __version__
from gan2shape.config import params_digest
from gan2shape.errors import ArtifactError, CorruptArtifactError

__all__ = [
    "SCHEMA_VERSION",
    "ArtifactError",
    "CorruptArtifactError",
    "Artifact",
    "ArtifactWriter",
    "write_artifact",
    "read_artifact",
    "network_links",
]

SCHEMA_VERSION = 1
_NETWORKS = "networks"
_CRC, _CRC_ROWS = "crc32", "crc32_rows"
_LINKS = "network_links"
# At most this many block checksums per dataset: an HDF5 attribute holds up to 64 KiB (the writer
# coarsens the blocks beyond it).
_MAX_CRC_BLOCKS = 8192
_FIX = "delete it and rerun the step that produces it"


def _to_numpy(value: Any, name: str) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu()
        if value.dtype == torch.bfloat16:
            value = value.float()
        return value.numpy()
    if isinstance(value, np.ndarray):
        return value
    raise TypeError(f"artifact dataset {name!r} must be a numpy array or a torch tensor, got {type(value).__name__}")


def _check_name(name: str) -> None:
    if not name or "/" in name or name == _NETWORKS:
        raise ValueError(f"invalid artifact dataset name {name!r}: use a non-empty name without '/', not {_NETWORKS!r}")


def _json_attr(value: Any) -> Any:
    """HDF5 attributes hold scalars, strings and arrays; anything else is stored as JSON text."""
    if isinstance(value, (str, int, float, bool, np.integer, np.floating, np.bool_)):
        return value
    if isinstance(value, np.ndarray) and value.dtype.kind in "biuf":
        return value
    return "json:" + json.dumps(value, sort_keys=True, default=str)


def _read_attr(value: Any) -> Any:
    if isinstance(value, bytes):
        value = value.decode()
    if isinstance(value, str) and value.startswith("json:"):
        return json.loads(value[5:])
    if isinstance(value, np.generic):
        return value.item()
    return value


def _bytes(data: np.ndarray) -> np.ndarray:
    """The bytes of a C-contiguous array as a flat uint8 view (what zlib.crc32 reads)."""
    return data.reshape(-1).view(np.uint8)


def _checksummed(dtype: np.dtype) -> bool:
    """Numbers and booleans: their bytes read back as written (object / variable-length data do not)."""
    return dtype.kind in "biufc"


class _BlockCrc:
    """CRC32 of each block of ``rows`` consecutive rows of a dataset, fed batch by batch in row order."""

    def __init__(self, rows: int):
        self.rows = rows
        self.crcs: list[int] = []
        self._crc = 0
        self._filled = 0

    def update(self, data: np.ndarray) -> None:
        data = np.ascontiguousarray(data)
        i = 0
        while i < data.shape[0]:
            take = min(self.rows - self._filled, data.shape[0] - i)
            self._crc = zlib.crc32(_bytes(data[i : i + take]), self._crc)
            self._filled += take
            i += take
            if self._filled == self.rows:
                self.crcs.append(self._crc)
                self._crc, self._filled = 0, 0

    def finish(self) -> np.ndarray:
        if self._filled:
            self.crcs.append(self._crc)
            self._crc, self._filled = 0, 0
        return np.asarray(self.crcs, dtype=np.uint32)


def _block_crcs(ds: h5py.Dataset, rows: int) -> np.ndarray:
    """CRC32 per block of ``rows`` rows of a dataset as stored (read back block by block)."""
    crc = _BlockCrc(rows)
    for start in range(0, ds.shape[0], rows):
        crc.update(ds[start : start + rows])
    return crc.finish()


def _set_checksums(ds: h5py.Dataset, crcs: np.ndarray, rows: int) -> None:
    if crcs.size > _MAX_CRC_BLOCKS:  # coarser blocks, a whole number of the old ones
        rows *= -(-crcs.size // _MAX_CRC_BLOCKS)
        crcs = _block_crcs(ds, rows)
    ds.attrs[_CRC] = crcs
    ds.attrs[_CRC_ROWS] = rows


class ArtifactWriter:
    """Stream instances into an artifact, batch by batch, committed atomically on close.

    Usage::

        with ArtifactWriter("out/train.h5", "heads", params_text=text, attrs={"split": "train"}) as w:
            for batch in batches:
                w.append(ids, {"image": images_uint8, "depth": depth})
            w.add_network("depth_net", model.state_dict())   # optional

    Every append must carry the same dataset names with the same per-instance shapes and dtypes.
    On an exception inside the ``with`` block the temporary file is removed and nothing appears at
    ``path``.
    """

    def __init__(
        self,
        path: str | Path,
        kind: str,
        *,
        params_text: str | None = None,
        attrs: Mapping[str, Any] | None = None,
        compression: str | None = None,
    ):
        self.path = Path(path)
        self.kind = kind
        self.tmp_path = self.path.with_name(self.path.name + ".tmp")
        self._params_text = params_text
        self._attrs = dict(attrs or {})
        self._compression = compression
        self._ids: list[str] = []
        self._file: h5py.File | None = None
        self._shapes: dict[str, tuple[tuple[int, ...], np.dtype]] = {}
        self._crcs: dict[str, _BlockCrc] = {}

    def __enter__(self) -> "ArtifactWriter":
        self.open()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()

    def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.tmp_path.exists():
            self.tmp_path.unlink()  # left over by a killed run: never resumed from, always rebuilt
        self._file = h5py.File(self.tmp_path, "w")

    def _require_open(self) -> h5py.File:
        if self._file is None:
            raise RuntimeError("ArtifactWriter is not open: use it as a context manager")
        return self._file

    def append(self, ids: Sequence[str], arrays: Mapping[str, Any]) -> None:
        """Append a batch: ``ids`` (B,) strings and ``arrays`` name -> (B, ...) array/tensor."""
        f = self._require_open()
        ids = [str(i) for i in ids]
        b = len(ids)
        if self._shapes and set(arrays) != set(self._shapes):
            raise ValueError(
                f"append to {self.path}: dataset names {sorted(arrays)} differ from the first batch's "
                f"{sorted(self._shapes)}"
            )
        for name, value in arrays.items():
            _check_name(name)
            data = _to_numpy(value, name)
            if data.ndim == 0 or data.shape[0] != b:
                raise ValueError(
                    f"append to {self.path}: dataset {name!r} has shape {data.shape}, expected a leading "
                    f"instance axis of {b} (one row per id)"
                )
            if name not in self._shapes:
                self._shapes[name] = (data.shape[1:], data.dtype)
                chunk_rows = max(1, min(64, (1 << 20) // max(1, data[0].nbytes)))
                f.create_dataset(
                    name,
                    shape=(0, *data.shape[1:]),
                    maxshape=(None, *data.shape[1:]),
                    dtype=data.dtype,
                    chunks=(chunk_rows, *data.shape[1:]),
                    compression=self._compression,
                )
                if _checksummed(data.dtype):  # a block = a chunk, which HDF5 reads whole anyway
                    self._crcs[name] = _BlockCrc(chunk_rows)
            shape, dtype = self._shapes[name]
            if data.shape[1:] != shape or data.dtype != dtype:
                raise ValueError(
                    f"append to {self.path}: dataset {name!r} batch has per-instance shape "
                    f"{data.shape[1:]} {data.dtype}, earlier batches had {shape} {dtype}"
                )
            ds = f[name]
            start = ds.shape[0]
            ds.resize(start + b, axis=0)
            ds[start:] = data
            if name in self._crcs:
                self._crcs[name].update(data)
        self._ids.extend(ids)

    def add_network(self, name: str, state_dict: Mapping[str, torch.Tensor]) -> None:
        """Store a network's weights (one dataset per tensor) under ``networks/<name>``."""
        f = self._require_open()
        _check_name(name)
        group = f.require_group(_NETWORKS).create_group(name)
        for key, tensor in state_dict.items():
            data = np.ascontiguousarray(_to_numpy(tensor, f"{name}.{key}"))
            ds = group.create_dataset(key, data=data)
            if _checksummed(data.dtype):
                ds.attrs[_CRC] = np.asarray([zlib.crc32(_bytes(data))], dtype=np.uint32)
                ds.attrs[_CRC_ROWS] = 0

    def commit(self) -> Path:
        f = self._require_open()
        if len(set(self._ids)) != len(self._ids):
            self.abort()
            raise ValueError(f"artifact {self.path}: instance ids are not unique")
        for name, crc in self._crcs.items():
            _set_checksums(f[name], crc.finish(), crc.rows)
        attrs = {
            "kind": self.kind,
            "schema_version": SCHEMA_VERSION,
            "ids": "json:" + json.dumps(self._ids),
            "code_version": __version__,
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "host": platform.node(),
        }
        if self._params_text is not None:
            attrs["params_text"] = self._params_text
            attrs["params_digest"] = params_digest(self._params_text)
        for key, value in self._attrs.items():
            f.attrs[key] = _json_attr(value)
        for key, value in attrs.items():
            f.attrs[key] = value
        f.attrs["complete"] = True  # last: a file without it was never finished
        f.flush()
        f.close()
        self._file = None
        with open(self.tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(self.tmp_path, self.path)
        return self.path

    def abort(self) -> None:
        if self._file is not None:
            try:
                self._file.close()
            finally:
                self._file = None
        if self.tmp_path.exists():
            self.tmp_path.unlink()


def write_artifact(
    path: str | Path,
    kind: str,
    arrays: Mapping[str, Any],
    *,
    ids: Sequence[str],
    params_text: str | None = None,
    attrs: Mapping[str, Any] | None = None,
    networks: Mapping[str, Mapping[str, torch.Tensor]] | None = None,
) -> Path:
    """Write a whole artifact at once (atomically). ``arrays``: name -> (N, ...) with N = len(ids)."""
    with ArtifactWriter(path, kind, params_text=params_text, attrs=attrs) as writer:
        if arrays:
            writer.append(ids, arrays)
        else:
            writer._ids.extend(str(i) for i in ids)
        for name, state in (networks or {}).items():
            writer.add_network(name, state)
    return Path(path)


class Artifact:
    """A validated, open artifact file. Datasets are read lazily with :meth:`array`."""

    def __init__(self, path: Path, handle: h5py.File):
        self.path = path
        self._f = handle
        self.attrs: dict[str, Any] = {k: _read_attr(v) for k, v in handle.attrs.items()}
        self.kind: str = self.attrs["kind"]
        self.ids: list[str] = list(self.attrs["ids"])

    @property
    def n(self) -> int:
        return len(self.ids)

    @property
    def names(self) -> list[str]:
        return sorted(k for k in self._f.keys() if k != _NETWORKS)

    @property
    def network_names(self) -> list[str]:
        return sorted(self._f[_NETWORKS].keys()) if _NETWORKS in self._f else []

    def shape(self, name: str) -> tuple[int, ...]:
        return tuple(self._dataset(name).shape)

    def _dataset(self, name: str) -> h5py.Dataset:
        if name not in self.names:
            raise ArtifactError(f"{self.path} (kind {self.kind!r}) has no dataset {name!r}; it has {self.names}")
        return self._f[name]

    def array(self, name: str, index: slice | Sequence[int] | np.ndarray | None = None) -> np.ndarray:
        """Read dataset ``name`` (all rows, a slice, or sorted/unsorted row indices).

        The checksum blocks the rows lie in are read whole and checked (CorruptArtifactError, naming
        the file and the dataset, when the bytes changed since the write).
        """
        ds = self._dataset(name)
        n = ds.shape[0]
        if isinstance(index, slice):
            start, stop, step = index.indices(n)
            if step == 1:
                if stop <= start:
                    return ds[start:start]
                lo, data = self._read_blocks(name, ds, start, stop)
                return data[start - lo : stop - lo]
            index = np.arange(start, stop, step)
        if index is None:
            return self._read_blocks(name, ds, 0, n)[1]
        # read the blocks holding the rows, then pick (reordered, repeated) rows from them
        rows = np.asarray(index, dtype=np.int64).reshape(-1)
        if rows.size and (rows.min() < 0 or rows.max() >= n):
            raise IndexError(f"{self.path}: row index out of range 0..{n - 1} for {name!r}")
        if rows.size == 0:
            return ds[0:0]
        block = self._block_rows(ds) or n
        blocks = np.unique(rows // block)
        runs = np.split(blocks, np.flatnonzero(np.diff(blocks) != 1) + 1)
        parts, firsts, offsets, filled = [], [], [], 0
        for run in runs:  # consecutive blocks in one read
            first, data = self._read_blocks(name, ds, int(run[0]) * block, min(n, (int(run[-1]) + 1) * block))
            parts.append(data)
            firsts.append(first)
            offsets.append(filled)
            filled += data.shape[0]
        which = np.searchsorted(np.asarray(firsts), rows, side="right") - 1
        return np.concatenate(parts)[np.asarray(offsets)[which] + rows - np.asarray(firsts)[which]]

    @staticmethod
    def _block_rows(ds: h5py.Dataset) -> int | None:
        """Rows per checksum block (0 = one checksum of the whole dataset), None without checksums."""
        return int(ds.attrs[_CRC_ROWS]) if _CRC in ds.attrs and _CRC_ROWS in ds.attrs else None

    def _read_blocks(self, name: str, ds: h5py.Dataset, start: int, stop: int) -> tuple[int, np.ndarray]:
        """Rows [first, last) of ``ds``: the checksum blocks holding rows [start, stop), checked.
        Returns (first, rows)."""
        block = self._block_rows(ds)
        whole = block == 0 or ds.ndim == 0
        if block is None:
            first, last = start, stop
        elif whole:
            first, last = 0, (ds.shape[0] if ds.ndim else 0)
        else:
            first, last = start // block * block, min(ds.shape[0], -(-stop // block) * block)
        try:
            data = ds[()] if ds.ndim == 0 or (first == 0 and last == ds.shape[0]) else ds[first:last]
        except Exception as exc:  # noqa: BLE001 - h5py raises OSError and others on damaged chunks
            raise CorruptArtifactError(
                f"{self.path}: dataset {name!r} cannot be read ({type(exc).__name__}: {exc}); the file is "
                f"damaged: {_FIX}"
            ) from None
        data = np.ascontiguousarray(data)
        if block is None:
            return first, data
        expected = np.asarray(ds.attrs[_CRC], dtype=np.uint32).reshape(-1)
        if whole:
            found = [(0, zlib.crc32(_bytes(data)))]
        else:
            found = [
                (b, zlib.crc32(_bytes(data[r - first : r - first + block])))
                for b, r in enumerate(range(first, last, block), start=first // block)
            ]
        for b, crc in found:
            if b >= expected.size or crc != int(expected[b]):
                rows = "" if whole else f" (rows {b * block}..{min(ds.shape[0], (b + 1) * block) - 1})"
                raise CorruptArtifactError(
                    f"{self.path}: dataset {name!r} is corrupted{rows}: its bytes differ from the checksum "
                    f"written with the file (a disk or copy error, or an edit); {_FIX}"
                )
        return first, data

    def verify(self) -> int:
        """Read every dataset and network tensor, checking all checksums (CorruptArtifactError names the
        first damaged dataset). Returns the number of datasets checked (those without checksums, in
        files written before checksums existed, are read but cannot be checked)."""
        checked = 0
        for name in self.names:
            ds = self._f[name]
            block = self._block_rows(ds) or max(1, ds.shape[0])
            rows_per_read = block * max(1, (16 << 20) // max(1, block * ds.dtype.itemsize * int(np.prod(ds.shape[1:]))))
            for start in range(0, ds.shape[0], rows_per_read):
                self._read_blocks(name, ds, start, min(ds.shape[0], start + rows_per_read))
            checked += self._block_rows(ds) is not None
        for net in self.network_names:
            group = self._f[_NETWORKS][net]
            self.network(net)
            checked += sum(self._block_rows(group[key]) is not None for key in group.keys())
        return checked

    def tensor(self, name: str, index=None, device: str | torch.device = "cpu") -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(self.array(name, index))).to(device)

    @property
    def linked_network_names(self) -> list[str]:
        """Networks this artifact names but another one stores (``network_links``)."""
        return sorted(self.attrs.get(_LINKS) or {})

    def network_digest(self, name: str) -> str:
        """A digest of the stored network ``name`` (of its tensors' names, shapes, dtypes and CRC32s;
        of their bytes in files without checksums)."""
        group = self._f[_NETWORKS][name]
        h = hashlib.sha256()
        for key in sorted(group):
            ds = group[key]
            h.update(f"{key}:{ds.shape}:{ds.dtype}:".encode())
            if _CRC in ds.attrs:
                h.update(np.asarray(ds.attrs[_CRC], dtype=np.uint32).tobytes())
            else:
                h.update(np.ascontiguousarray(ds[()]).tobytes())
        return h.hexdigest()[:32]

    def network(self, name: str) -> dict[str, torch.Tensor]:
        """The state dict stored under ``networks/<name>`` or, for a linked network, in the artifact the
        link names (ArtifactError when that file is missing or its network changed since the link)."""
        links = self.attrs.get(_LINKS) or {}
        if name not in self.network_names and name in links:
            return self._linked_network(name, links[name])
        if name not in self.network_names:
            raise ArtifactError(f"{self.path} has no network {name!r}; it has {self.network_names}")
        group = self._f[_NETWORKS][name]
        return {
            key: torch.from_numpy(
                self._read_blocks(
                    f"{_NETWORKS}/{name}/{key}", group[key], 0, group[key].shape[0] if group[key].ndim else 0
                )[1]
            )
            for key in group.keys()
        }

    def _linked_network(self, name: str, link: Mapping[str, str]) -> dict[str, torch.Tensor]:
        source = self.path.parent / link["path"]
        fix = f"rerun the step that made {self.path} (its input changed or moved after it was made)"
        try:
            with read_artifact(source) as other:
                if name not in other.network_names or other.network_digest(name) != link["digest"]:
                    raise ArtifactError(
                        f"{self.path}: its network {name!r} lies in {source}, whose {name!r} has changed since: {fix}"
                    )
                return other.network(name)
        except ArtifactError as exc:
            if str(exc).startswith(str(self.path)):
                raise
            raise ArtifactError(
                f"{self.path}: its network {name!r} lies in {source}, which is not usable ({exc}): {fix}"
            ) from None

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> "Artifact":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __iter__(self) -> Iterator[str]:
        return iter(self.names)


def read_artifact(
    path: str | Path,
    kind: str | None = None,
    require: Sequence[str] = (),
    shapes: Mapping[str, tuple[int | None, ...]] | None = None,
) -> Artifact:
    """Open and validate an artifact.

    Checks: the file exists, is a complete HDF5 file (not truncated, not a leftover ``.tmp``),
    has the expected ``kind`` and a supported schema version, holds the ``require``d datasets,
    every dataset's leading axis equals the number of ids, and (optionally) per-instance
    ``shapes`` match (None = any size on that axis). Raises :class:`ArtifactError` saying which
    file is wrong, why, and what to do.
    """
    path = Path(path)
    if not path.exists():
        raise ArtifactError(f"{path} does not exist: run the step that produces it first")
    try:
        handle = h5py.File(path, "r")
    except OSError as exc:
        raise ArtifactError(
            f"{path} cannot be opened as HDF5 ({exc}); it is truncated or not an artifact: delete it and "
            "rerun the step that produces it"
        ) from None
    try:
        attrs = handle.attrs
        if not attrs.get("complete", False):
            raise ArtifactError(f"{path} was never completed (a killed write?): delete it and rerun its step")
        found_kind = _read_attr(attrs.get("kind", ""))
        if kind is not None and found_kind != kind:
            raise ArtifactError(f"{path} holds a {found_kind!r} artifact, expected {kind!r}: check the path")
        version = int(attrs.get("schema_version", -1))
        if version != SCHEMA_VERSION:
            raise ArtifactError(
                f"{path} has schema version {version}, this gan2shape {__version__} reads version "
                f"{SCHEMA_VERSION}: rebuild it with this version"
            )
        artifact = Artifact(path, handle)
        for name in require:
            if name not in artifact.names:
                raise ArtifactError(f"{path} lacks the required dataset {name!r}; it has {artifact.names}")
        for name in artifact.names:
            try:
                n = handle[name].shape[0]
            except (OSError, KeyError, IndexError) as exc:
                raise ArtifactError(f"{path}: dataset {name!r} cannot be read ({exc}); rebuild the file") from None
            if n != artifact.n:
                raise ArtifactError(
                    f"{path}: dataset {name!r} has {n} rows but the file lists {artifact.n} instance ids"
                )
        for name, expected in (shapes or {}).items():
            found = artifact.shape(name)[1:]
            if len(found) != len(expected) or any(e is not None and e != s for e, s in zip(expected, found)):
                raise ArtifactError(
                    f"{path}: dataset {name!r} has per-instance shape {found}, expected {tuple(expected)}"
                )
    except ArtifactError:
        handle.close()
        raise
    except Exception as exc:  # h5py raises a variety of errors on damaged files
        handle.close()
        raise ArtifactError(f"{path} is damaged ({type(exc).__name__}: {exc}): delete it and rerun its step") from None
    return artifact


def network_links(source: str | Path, names: Sequence[str], out_path: str | Path) -> dict[str, dict[str, str]]:
    """The ``network_links`` attribute for an artifact to be written at ``out_path`` that uses the
    networks ``names`` of the artifact ``source`` unchanged instead of storing copies: name ->
    {path: source relative to out_path's folder, digest: ``Artifact.network_digest``}. A network that
    ``source`` itself links is linked to where it is stored."""
    source, out_dir = Path(source), Path(out_path).parent
    links = {}
    with read_artifact(source) as art:
        own = art.attrs.get(_LINKS) or {}
        for name in names:
            if name in art.network_names:
                links[name] = {"path": os.path.relpath(source, out_dir), "digest": art.network_digest(name)}
            elif name in own:  # follow it: the link names the file that stores the network
                links[name] = {
                    "path": os.path.relpath(source.parent / own[name]["path"], out_dir),
                    "digest": own[name]["digest"],
                }
            else:
                raise ArtifactError(f"{source} has no network {name!r}; it has {art.network_names}")
    return links
