"""The synthetic head benchmark: procedural heads rendered under random views and lights, with
exact depth, normals and masks in the input view (a BFM-synface-like dataset we can build anywhere).

For each head (head_model.py gives its canonical depth, mask and albedo) a view and a light are
drawn from the configured uniform ranges. The albedo is shaded in the canonical frame
(``shade(albedo, depth_to_normals(canonical depth), ...)``, as the photo-geometric model does) and
rendered from the view with ``render_view`` over a random smooth background. Ground truth in the
input view: depth (background pixels = ``background_depth``, larger than every head depth, so
"foreground = depth < its max" holds), normals from that depth, and the foreground mask.

Randomness: every instance draws from its own ``torch.Generator`` seeded from (seed, split,
index), so any instance or batch can be regenerated alone and the arrays do not depend on
``batch_size``; train and test use different streams.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import yaml

from gan2shape.artifacts import ArtifactWriter, read_artifact
from gan2shape.config import HeadsConfig
from gan2shape.data import head_model as hm
from gan2shape.data.contact_sheet import save_contact_sheets
from gan2shape.errors import ArtifactError, ConfigError
from gan2shape.progress import Progress
from gan2shape.render import Camera, depth_to_normals, light_direction, render_view, shade

__all__ = [
    "SPLITS",
    "HeadSample",
    "heads_camera",
    "background_depth",
    "sample_heads",
    "render_heads",
    "make_heads",
    "load_heads",
]

SPLITS: tuple[str, ...] = ("train", "test")
KIND = "heads"

# Fixed sizes of each instance's random stream (uniform block: shape, albedo, view, light and
# background parameters in that order; normal block: skin noise), independent of the config, so
# changing e.g. the view ranges rescales the same draws instead of reshuffling the heads. Adding a
# head parameter does change every head (the blocks are read in order).
_N_UNIFORM = 64
_N_NORMAL = 96
_NOISE_TERMS = hm.NOISE_SYM_TERMS + hm.NOISE_ANTI_TERMS
_ANTI_NOISE_GAIN = 4.0  # at asymmetry 0.25 the skin noise is as antisymmetric as symmetric
_SHEET_HEADS = 64  # heads on the contact sheets


@dataclass(frozen=True)
class HeadSample:
    """Everything random about a batch of N heads (all float32 tensors).

    shape: (N, P) SHAPE_PARAMS values; albedo: (N, Q) ALBEDO_PARAMS values;
    noise: (N, 3, T) skin-variation coefficients; view: (N, 6) physical view [pitch (x), yaw (y),
    roll (z) in radians, tx, ty, tz]; light: (N, 4) [ambient, diffuse, lx, ly];
    background: (N, 7) background parameters in [0, 1] (see head_model.smooth_background).
    """

    shape: torch.Tensor
    albedo: torch.Tensor
    noise: torch.Tensor
    view: torch.Tensor
    light: torch.Tensor
    background: torch.Tensor

    def to(self, device: torch.device | str) -> "HeadSample":
        return HeadSample(**{f.name: getattr(self, f.name).to(device) for f in dataclasses.fields(self)})


def heads_camera(config: HeadsConfig) -> Camera:
    """The benchmark's true camera: its image size and fov, the method's depth range."""
    return Camera(config.image_size, fov_deg=config.fov_deg)


def background_depth(config: HeadsConfig) -> float:
    """Depth given to background pixels: config.background_depth, or the renderer's far clamp."""
    if config.background_depth is not None:
        return float(config.background_depth)
    return float(heads_camera(config).depth_clamp[1])


def _instance_seed(seed: int, split: str, index: int) -> int:
    """A well-mixed 63-bit seed for instance ``index`` of ``split``."""
    words = np.random.SeedSequence([seed, SPLITS.index(split), index]).generate_state(2, dtype=np.uint32)
    return (int(words[0]) << 31) ^ int(words[1])


def _uniform(u: torch.Tensor, bounds: tuple[float, float]) -> torch.Tensor:
    return bounds[0] + (bounds[1] - bounds[0]) * u


def sample_heads(config: HeadsConfig, split: str, start: int, count: int) -> HeadSample:
    """Draw instances ``start .. start+count-1`` of ``split`` (on the CPU, deterministic).

    Returns a HeadSample of ``count`` heads; instance i's values depend only on
    (config, split, i), never on which batch it is drawn in.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if start < 0 or count < 0:
        raise ValueError(f"start and count must be >= 0, got start={start}, count={count}")
    uniform = torch.empty(count, _N_UNIFORM)
    normal = torch.empty(count, _N_NORMAL)
    gen = torch.Generator()
    for row in range(count):
        gen.manual_seed(_instance_seed(config.seed, split, start + row))
        torch.rand(_N_UNIFORM, generator=gen, out=uniform[row])
        torch.randn(_N_NORMAL, generator=gen, out=normal[row])

    cursor = 0

    def take(k: int) -> torch.Tensor:
        nonlocal cursor
        block = uniform[:, cursor : cursor + k]
        cursor += k
        return block

    shape = hm.params_from_unit(take(len(hm.SHAPE_PARAMS)), hm.SHAPE_PARAMS, config.asymmetry)
    albedo = hm.params_from_unit(take(len(hm.ALBEDO_PARAMS)), hm.ALBEDO_PARAMS, config.asymmetry)
    vs, ls = config.view, config.light
    u_view = take(5)
    angles = torch.stack(
        [_uniform(u_view[:, 0], vs.pitch_deg), _uniform(u_view[:, 1], vs.yaw_deg), _uniform(u_view[:, 2], vs.roll_deg)],
        dim=1,
    ) * (math.pi / 180.0)
    shift = (2.0 * u_view[:, 3:5] - 1.0) * vs.translate_xy
    view = torch.cat([angles, shift, torch.zeros(count, 1)], dim=1)
    u_light = take(4)
    light = torch.stack(
        [
            _uniform(u_light[:, 0], ls.ambient),
            _uniform(u_light[:, 1], ls.diffuse),
            _uniform(u_light[:, 2], ls.dir_x),
            _uniform(u_light[:, 3], ls.dir_y),
        ],
        dim=1,
    )
    background = take(7)
    assert cursor <= _N_UNIFORM, "the uniform block of the random stream is too small"

    noise = normal[:, : 3 * _NOISE_TERMS].reshape(count, 3, _NOISE_TERMS).clone()
    noise[..., hm.NOISE_SYM_TERMS :] *= _ANTI_NOISE_GAIN * config.asymmetry
    return HeadSample(shape=shape, albedo=albedo, noise=noise, view=view, light=light, background=background.clone())


def _fill_outside(texture: torch.Tensor, mask: torch.Tensor, steps: int = 2) -> torch.Tensor:
    """Extend a texture past its mask by repeated 3x3 averaging of known pixels.

    texture: (N, C, S, S); mask: (N, S, S) bool. Returns (N, C, S, S), equal to ``texture`` inside
    the mask. The renderer samples bilinearly, so silhouette pixels blend in texels just outside
    the mask; filling them with the head's own colours avoids a rim of unrelated shading.
    """
    known = mask.unsqueeze(1).to(texture.dtype)
    out = texture * known
    for _ in range(steps):
        total = F.avg_pool2d(out, 3, stride=1, padding=1, count_include_pad=False)
        weight = F.avg_pool2d(known, 3, stride=1, padding=1, count_include_pad=False)
        grown = (weight > 0).to(texture.dtype)
        out = torch.where(known > 0, out, total / weight.clamp(min=1e-6) * grown)
        known = torch.maximum(known, grown)
    return torch.where(known > 0, out, texture)


def render_heads(sample: HeadSample, config: HeadsConfig) -> dict[str, torch.Tensor]:
    """Build and render a batch of heads.

    sample: HeadSample of N heads (on the device to compute on).
    Returns float/bool tensors on that device:
      image (N, 3, S, S) float in [-1, 1]; depth (N, S, S) float, head pixels = rendered view
      depth, background = background_depth(config); normal (N, 3, S, S) unit vectors
      (depth_to_normals of depth, channel-first); mask (N, S, S) bool foreground;
      canonical_depth (N, S, S) float (background_depth outside the head);
      canonical_mask (N, S, S) bool; canonical_albedo (N, 3, S, S) float in [-1, 1].
    Raises ValueError if background_depth is not larger than every head depth.
    """
    camera = heads_camera(config)
    size = config.image_size
    canon_depth, canon_mask = hm.canonical_shape(sample.shape, size, config.fov_deg)
    albedo = hm.canonical_albedo(sample.shape, sample.albedo, sample.noise, size)
    normals = depth_to_normals(canon_depth, camera)
    light = sample.light
    texture, _ = shade(albedo, normals, light[:, 0], light[:, 1], light_direction(light[:, 2:4]))
    texture = _fill_outside(texture, canon_mask)
    bg = hm.smooth_background(sample.background, size)
    rendered = render_view(texture, canon_depth, sample.view, camera, canon_mask=canon_mask, background=bg)

    far = background_depth(config)
    mask = rendered.mask[:, 0] > 0.5
    if mask.any() and float(rendered.depth[mask].max()) >= far:
        raise ConfigError(
            "heads.background_depth",
            f"{far} is not larger than the farthest head depth "
            f"{float(rendered.depth[mask].max()):.4f}: set it above {camera.max_depth} (or null)",
        )
    depth = torch.where(mask, rendered.depth, torch.full_like(rendered.depth, far))
    normal = depth_to_normals(depth, camera).permute(0, 3, 1, 2)
    return {
        "image": rendered.image.clamp(-1.0, 1.0),
        "depth": depth,
        "normal": normal,
        "mask": mask,
        "canonical_depth": torch.where(canon_mask, canon_depth, torch.full_like(canon_depth, far)),
        "canonical_mask": canon_mask,
        "canonical_albedo": albedo,
    }


def _to_uint8(image: torch.Tensor) -> np.ndarray:
    """(N, 3, S, S) float in [-1, 1] -> uint8 RGB in [0, 255] (round to nearest)."""
    return ((image.clamp(-1.0, 1.0) + 1.0) * 127.5).round().to(torch.uint8).cpu().numpy()


def _records(sample: HeadSample, rendered: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    """The stored datasets of one batch, in their storage dtypes."""
    cpu = lambda t: t.detach().cpu()  # noqa: E731
    return {
        "image": _to_uint8(rendered["image"]),
        "depth": cpu(rendered["depth"]).float().numpy(),
        "normal": cpu(rendered["normal"]).half().numpy(),
        "mask": cpu(rendered["mask"]).to(torch.uint8).numpy(),
        "view": cpu(sample.view).float().numpy(),
        "light": cpu(sample.light).float().numpy(),
        "shape_params": cpu(sample.shape).float().numpy(),
        "albedo_params": cpu(sample.albedo).float().numpy(),
        "canonical_depth": cpu(rendered["canonical_depth"]).half().numpy(),
        "canonical_mask": cpu(rendered["canonical_mask"]).to(torch.uint8).numpy(),
    }


def _params_text(config: HeadsConfig) -> str:
    return yaml.safe_dump({"heads": json.loads(json.dumps(dataclasses.asdict(config)))}, sort_keys=True)


def make_heads(
    config: HeadsConfig,
    out_dir: str | Path,
    *,
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> dict:
    """Build the benchmark: out_dir/train.h5, out_dir/test.h5 (kind 'heads') and contact sheets.

    Each split file holds, for N instances with ids '<split>-000123':
      image (N, 3, S, S) uint8 RGB; depth (N, S, S) float32 (background = background_depth);
      normal (N, 3, S, S) float16 unit; mask (N, S, S) uint8 {0, 1}; view (N, 6) float32
      [pitch, yaw, roll (radians), tx, ty, tz]; light (N, 4) float32 [ambient, diffuse, lx, ly];
      shape_params (N, P) float32; albedo_params (N, Q) float32; canonical_depth (N, S, S)
      float16; canonical_mask (N, S, S) uint8.
    Attributes: image_size, camera_fov_deg, camera_min_depth, camera_max_depth,
    camera_rot_center_depth, seed, background_depth, split, asymmetry, shape_param_names,
    albedo_param_names. Batches of config.batch_size are streamed to disk.
    Also writes contact_sheet.png (the first train images) and contact_sheet_depth.png (their
    depth and normal maps). Returns a summary dict (paths, counts, timings).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    camera = heads_camera(config)
    far = background_depth(config)
    text = _params_text(config)
    timings = {"sample": 0.0, "render": 0.0, "write": 0.0}
    sheet: dict[str, list[np.ndarray]] = {"image": [], "depth": [], "normal": [], "mask": []}
    paths: dict[str, str] = {}
    start_all = time.perf_counter()
    for split in SPLITS:
        n = config.n_train if split == "train" else config.n_test
        attrs = {
            "split": split,
            "image_size": config.image_size,
            "camera_fov_deg": camera.fov_deg,
            "camera_min_depth": camera.min_depth,
            "camera_max_depth": camera.max_depth,
            "camera_rot_center_depth": camera.rot_center_depth,
            "seed": config.seed,
            "asymmetry": config.asymmetry,
            "background_depth": far,
            "shape_param_names": list(hm.SHAPE_PARAM_NAMES),
            "albedo_param_names": list(hm.ALBEDO_PARAM_NAMES),
        }
        path = out_dir / f"{split}.h5"
        # lzf (shipped with h5py): a third of the size (masks, constant backgrounds) for ~5% time.
        with (
            ArtifactWriter(path, KIND, params_text=text, attrs=attrs, compression="lzf") as writer,
            Progress(n, f"heads {split}", unit="img", bar=progress) as bar,
        ):
            for start in range(0, n, config.batch_size):
                count = min(config.batch_size, n - start)
                t0 = time.perf_counter()
                sample = sample_heads(config, split, start, count).to(device)
                t1 = time.perf_counter()
                with torch.no_grad():
                    rendered = render_heads(sample, config)
                records = _records(sample, rendered)
                t2 = time.perf_counter()
                writer.append([f"{split}-{i:06d}" for i in range(start, start + count)], records)
                t3 = time.perf_counter()
                timings["sample"] += t1 - t0
                timings["render"] += t2 - t1
                timings["write"] += t3 - t2
                if split == "train" and len(sheet["image"]) < _SHEET_HEADS:
                    for name in sheet:
                        sheet[name].extend(records[name][: _SHEET_HEADS - len(sheet[name])])
                bar.update(count)
        paths[split] = str(path)
    sheets = {}
    if sheet["image"]:
        sheets = save_contact_sheets(
            out_dir,
            np.stack(sheet["image"]),
            np.stack(sheet["depth"]),
            np.stack(sheet["normal"]).astype(np.float32),
            np.stack(sheet["mask"]).astype(bool),
        )
    total = time.perf_counter() - start_all
    count = config.n_train + config.n_test
    return {
        **paths,
        **{k: str(v) for k, v in sheets.items()},
        "n_train": config.n_train,
        "n_test": config.n_test,
        "image_size": config.image_size,
        "timings": {k: round(v, 3) for k, v in timings.items()},
        "total_seconds": round(total, 3),
        "images_per_second": round(count / total, 2) if total > 0 else None,
    }


def load_heads(
    path: str | Path,
    split: str,
    *,
    limit: int | None = None,
    device: str | torch.device = "cpu",
) -> dict[str, torch.Tensor]:
    """Load a split written by make_heads as tensors.

    path: the folder holding '<split>.h5' (or that file itself); limit: the first ``limit``
    instances only (None = all; the full 64 px train split is ~1 GB as float images).
    Returns image (N, 3, S, S) float32 in [-1, 1]; depth (N, S, S) float32; normal (N, 3, S, S)
    float32; mask (N, S, S) bool; view (N, 6), light (N, 4), shape_params (N, P), albedo_params
    (N, Q) float32; canonical_depth (N, S, S) float32; canonical_mask (N, S, S) bool.
    Instance ids and attributes: read_artifact(path, 'heads').
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    path = Path(path)
    file = path if path.suffix == ".h5" else path / f"{split}.h5"
    rows = None if limit is None else slice(0, int(limit))
    with read_artifact(file, KIND, require=("image", "depth", "normal", "mask")) as art:
        if art.attrs.get("split") != split:
            raise ArtifactError(
                f"{file} holds the {art.attrs.get('split')!r} split, not {split!r}: give the {split} split's file"
            )
        out: dict[str, torch.Tensor] = {}
        for name in art.names:
            data = torch.from_numpy(np.ascontiguousarray(art.array(name, rows)))
            if name == "image":
                data = data.float() / 127.5 - 1.0
            elif name in ("mask", "canonical_mask"):
                data = data > 0
            else:
                data = data.float()
            out[name] = data.to(device)
    return out
