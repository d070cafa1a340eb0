"""Baseline rows of the benchmark table (unsup3d Table 2 / GAN2Shape Table 1 style).

Each baseline makes a depth prediction for every test image without looking at the image:

- ``null_depth`` ("constant null depth"): a constant map, all ones, i.e. a fronto-parallel plane
  facing the camera. The constant is irrelevant: SIDE is invariant to a global depth scale, and
  every constant map has normals (0, 0, 1).
- ``average_gt_depth`` ("average g.t. depth"): the per-pixel mean of the TRAIN split's GT depth
  maps, the same map for every test image. By default each pixel averages only the train images in
  which it is foreground (depth < that image's max); pixels that are never foreground get the mean
  foreground depth. Averaging the raw maps instead (``foreground_only=False``) mixes in the
  background value, an arbitrary constant of the benchmark's encoding (the renderer's far clamp),
  which then dominates the error near silhouettes: on a 200/100-image 64 px heads split the raw
  mean scored SIDE 4.60e-2 / MAD 41.2 deg, worse than the constant null depth (1.36e-2 / 37.0),
  against 1.05e-2 / 28.8 foreground-only, so the row would measure the background encoding rather
  than the average shape (the paper's table has the average below the null depth). unsup3d's
  public code does not include this baseline, so this is our reading of "average g.t. depth".
  Sums are streamed from the HDF5 file in chunks into float64 (S, S) accumulators: a 20,000-image
  split never sits in memory.
- ``ellipsoid_prior``: the shape prior of docs/METHOD.md section 3 over the box of the GT foreground
  mask (depth < the image's max) with the synthetic-face rule (top raised by 1/6 of the box
  height), its apex and background depth those the method uses (``gan2shape evaluate`` passes
  params.yaml's method.prior near / far / raise_top_frac), so that the row is the prior the
  reconstructions start from. The GT mask stands in for the reference's parsing-model (BiSeNet) mask, which does not
  exist here. The prior lives in the canonical (frontal) frame and is compared directly with the
  input-view GT, as the reference's prior baseline is.

All baselines are valid everywhere (no predicted-valid mask), so the evaluation mask is the eroded
GT foreground.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch

from gan2shape.artifacts import Artifact, read_artifact
from gan2shape.errors import ArtifactError
from gan2shape.evaluate.metrics import ScoreAccumulator
from gan2shape.progress import track
from gan2shape.render import Camera
from gan2shape.render.prior import box_from_mask, ellipsoid_prior

__all__ = [
    "BASELINES",
    "null_depth_prediction",
    "average_gt_depth",
    "ellipsoid_prior_prediction",
    "select_rows",
    "evaluate_baselines",
]

BASELINES: tuple[str, ...] = ("null_depth", "average_gt_depth", "ellipsoid_prior")


def null_depth_prediction(gt_depth: torch.Tensor) -> torch.Tensor:
    """A constant depth of 1 shaped like ``gt_depth`` (N, H, W); float32 on its device."""
    return torch.ones(gt_depth.shape, dtype=torch.float32, device=gt_depth.device)


def average_gt_depth(
    train_path: str,
    chunk: int = 512,
    max_images: int | None = None,
    foreground_only: bool = True,
    progress: bool = False,
) -> torch.Tensor:
    """Per-pixel mean of a split's GT depth maps, streamed from its HDF5 file.

    Args:
        train_path: a heads artifact (kind 'heads') with dataset 'depth' (N, S, S), background
            pixels at each image's max depth.
        chunk: images read per step.
        max_images: average only the first this many images (None = all).
        foreground_only: average each pixel over the images where it is foreground (pixels never
            foreground get the mean foreground depth); False = mean of the raw maps.
        progress: show a tqdm bar.

    Returns:
        (S, S) float32 mean depth (accumulated in float64), > 0.
    """
    if chunk < 1:
        raise ValueError(f"average_gt_depth: chunk must be >= 1, got {chunk}")
    with read_artifact(train_path, kind="heads", require=("depth",)) as art:
        shape = art.shape("depth")
        if len(shape) != 3 or shape[1] != shape[2]:
            raise ArtifactError(
                f"{train_path}: dataset 'depth' must be (N, S, S), got {shape}: give a split of `gan2shape make-heads`"
            )
        n = art.n if max_images is None else min(art.n, int(max_images))
        if n < 1:
            raise ArtifactError(
                f"{train_path} holds no images to average (n={art.n}, max_images={max_images}): "
                "give a train split with images"
            )
        total = np.zeros(shape[1:], dtype=np.float64)
        count = np.zeros(shape[1:], dtype=np.int64)
        for start in track(range(0, n, chunk), "average GT depth", unit="chunk", bar=progress):
            block = art.array("depth", slice(start, min(n, start + chunk)))
            if foreground_only:
                fg = block < block.reshape(block.shape[0], -1).max(axis=1)[:, None, None]
                total += np.where(fg, block, 0.0).sum(axis=0, dtype=np.float64)
                count += fg.sum(axis=0)
            else:
                total += block.sum(axis=0, dtype=np.float64)
                count += block.shape[0]
    if count.sum() == 0:
        raise ArtifactError(
            f"{train_path}: no foreground pixel in the first {n} depth maps (all at their max): "
            "give a split of `gan2shape make-heads`"
        )
    fill = total.sum() / count.sum()
    mean = np.where(count > 0, total / np.maximum(count, 1), fill)
    return torch.from_numpy(mean).to(torch.float32)


def ellipsoid_prior_prediction(
    gt_depth: torch.Tensor,
    raise_top_frac: float = 1.0 / 6.0,
    near: float = 0.91,
    far: float = 1.02,
) -> torch.Tensor:
    """The ellipsoid prior over each GT foreground's box (module docstring).

    gt_depth: (N, S, S) float GT depth, background at each image's max.
    Returns (N, S, S) float32 depth in [near, far].
    """
    if gt_depth.dim() != 3 or gt_depth.shape[1] != gt_depth.shape[2]:
        raise ValueError(f"gt_depth must be (N, S, S), got {tuple(gt_depth.shape)}")
    foreground = gt_depth < gt_depth.flatten(1).amax(dim=1).view(-1, 1, 1)
    boxes = box_from_mask(foreground, raise_top_frac=raise_top_frac)
    return ellipsoid_prior(boxes, gt_depth.shape[-1], near=near, far=far)


def select_rows(art: Artifact, ids: Sequence[str] | None = None, max_images: int | None = None) -> np.ndarray:
    """Row indices of ``art`` to evaluate: those of ``ids`` (in that order), else the first
    ``max_images`` rows (None = all). Raises ArtifactError naming ids that ``art`` lacks."""
    if ids is not None:
        position = {name: i for i, name in enumerate(art.ids)}
        missing = [name for name in ids if name not in position]
        if missing:
            raise ArtifactError(
                f"{art.path} lacks {len(missing)} of the {len(ids)} ids of the prediction, e.g. {missing[:5]} (it "
                f"holds {art.ids[:3]}...): evaluate a prediction made from this test split, or give the test "
                "split it was made from (--test)"
            )
        rows = np.asarray([position[name] for name in ids], dtype=np.int64)
    else:
        n = art.n if max_images is None else min(art.n, int(max_images))
        rows = np.arange(n, dtype=np.int64)
    if max_images is not None:
        rows = rows[: int(max_images)]
    if rows.size == 0:
        raise ArtifactError(
            f"no test images selected from {art.path} (n={art.n}, max_images={max_images}): give a "
            "test split with images"
        )
    return rows


def evaluate_baselines(
    train_path: str | None,
    test_path: str,
    camera: Camera,
    max_images: int | None = None,
    *,
    names: Sequence[str] = BASELINES,
    ids: Sequence[str] | None = None,
    erode_pixels: int = 1,
    batch_size: int = 128,
    progress: bool = False,
    prior_near: float = 0.91,
    prior_far: float = 1.02,
    prior_raise_top_frac: float = 1.0 / 6.0,
) -> dict[str, dict[str, object]]:
    """SIDE and MAD of each baseline on the test split.

    Args:
        train_path: the train split (kind 'heads'), needed only for 'average_gt_depth'.
        test_path: the test split (kind 'heads', dataset 'depth' (N, S, S)).
        camera: the camera of the test images (S = camera.image_size), for MAD's normals.
        max_images: evaluate the first this many test images (the paper: 500); None = all.
        names: which baselines, a subset of :data:`BASELINES`, in table order.
        ids: evaluate exactly these test ids (e.g. those of a prediction file) instead.
        erode_pixels: erosion of the evaluation mask (1 in the protocol).
        batch_size: test images per step.
        progress: show a tqdm bar.
        prior_near, prior_far, prior_raise_top_frac: the 'ellipsoid_prior' row's cap (apex and
            background depth, 0 < near < far) and box rule: pass the method's prior settings
            (method.prior) so that the row is the prior the method starts from.

    Returns:
        {name: ScoreAccumulator.result()} = per-image 'ids', 'side', 'mad' and the summary keys
        'n', 'side_x1e2_mean', 'side_x1e2_std', 'mad_mean', 'mad_std'.
    """
    unknown = [name for name in names if name not in BASELINES]
    if unknown:
        raise ValueError(f"unknown baseline(s) {unknown}; known: {list(BASELINES)}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")

    predictors: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {}
    for name in names:
        if name == "null_depth":
            predictors[name] = null_depth_prediction
        elif name == "ellipsoid_prior":
            if not 0.0 < prior_near < prior_far:
                raise ValueError(
                    "the ellipsoid_prior baseline needs 0 < prior_near < prior_far, "
                    f"got {prior_near}, {prior_far}: fix method.prior.near / far"
                )
            predictors[name] = lambda gt: ellipsoid_prior_prediction(
                gt, raise_top_frac=prior_raise_top_frac, near=prior_near, far=prior_far
            )
        elif name == "average_gt_depth":
            if train_path is None:
                raise ValueError("the 'average_gt_depth' baseline needs the train split: pass train_path")
            mean_map = average_gt_depth(train_path, progress=progress)
            if mean_map.shape != (camera.image_size, camera.image_size):
                raise ArtifactError(
                    f"{train_path} depth maps are {tuple(mean_map.shape)}, the test camera is "
                    f"{camera.image_size}x{camera.image_size}: use the train split of the same benchmark"
                )
            predictors[name] = lambda gt, m=mean_map: m.to(gt.device).expand(gt.shape)

    accumulators = {name: ScoreAccumulator() for name in predictors}
    with read_artifact(test_path, kind="heads", require=("depth",)) as art:
        rows = select_rows(art, ids=ids, max_images=max_images)
        for start in track(range(0, rows.size, batch_size), "baselines", unit="batch", bar=progress):
            batch_rows = rows[start : start + batch_size]
            batch_ids = [art.ids[i] for i in batch_rows]
            gt = torch.from_numpy(art.array("depth", batch_rows)).to(torch.float32)
            for name, predict in predictors.items():
                accumulators[name].add(batch_ids, predict(gt), gt, camera, erode_pixels=erode_pixels)
    return {name: acc.result() for name, acc in accumulators.items()}
