"""The ``gan2shape evaluate`` step: score a prediction file and the baselines on a test split.

Writes, in ``out_dir``:
- ``metrics.json``: per row the summary (n, SIDE x10^-2 mean/std, MAD degrees mean/std), plus the
  camera and inputs used; small and flat enough for ``dvc metrics``.
- ``per_image.json``: per row the test ids with raw SIDE, MAD (degrees) and the relief ratio
  (``metrics.relief_ratio``) per image; for the method's shape artifact also its input view and the
  test split's GT view (``view_deg``, ``gt_view_deg``: pitch, yaw, roll, degrees, wrapped to
  [-180, 180)) and the absolute error between them (``view_err_deg``), and the roughness of
  its canonical depth (``canon_roughness``: mean |second differences| of 'canon_depth', camera units
  per pixel^2, the unweighted smoothness term of steps 1 and 3: the bench prior, near 0.965 at 64 px,
  gives 4.9e-4; the same with ridges of amplitude 0.01 every 4 pixels, like the "lenticular" depths
  some joint pre-training runs grow, 4.6e-3).
- in ``metrics.json`` under 'diagnostics' (not table rows): per row the median and mean relief
  ratio, and for a shape artifact the mean and median view errors, the view gains and canonical
  roughness: why a SIDE is what it is (a wrong relief depth, a turned input view or a ridged surface
  all cost SIDE). The gain of an angle is the least-squares slope through 0 of the predicted on the
  GT angle (sum(pred * gt) / sum(gt^2)): 1 for a right rotation scale, below 1 where the views are
  under-turned. Under the relief-rotation trade (a head d times as deep turned 1/d as far re-renders
  about the same) a yaw gain g goes with a relief ratio near 1/g.
- ``table.md``: the markdown table of :func:`gan2shape.evaluate.tables.markdown_table`.
- ``depth_sheet.png`` (with a prediction, when the test split has its images): input image | GT
  depth | predicted depth of the worst-SIDE heads, on one grey scale per head
  (:func:`gan2shape.evaluate.sheet.depth_sheet`): the depth maps behind the numbers.

Prediction file: an artifact of kind 'prediction' with dataset 'depth' (N, S, S) float, > 0, in
the input view, and optionally 'valid' (N, S, S) {0, 1} (pixels where the predicted surface was
hit; eroded and multiplied into the evaluation mask); or the method's kind 'shape' artifact
(stage{k}/shape.h5), scored by its 'recon_depth' and 'recon_mask'. Its ids must be ids of the test
split; the GT rows are matched by id, and the baselines are scored on the same images.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from gan2shape.artifacts import Artifact, ArtifactError, read_artifact
from gan2shape.atomic import write_png, write_text_atomic
from gan2shape.config import EvaluateConfig, PriorConfig
from gan2shape.errors import InputError
from gan2shape.evaluate.baselines import evaluate_baselines, select_rows
from gan2shape.evaluate.metrics import ScoreAccumulator
from gan2shape.evaluate.sheet import depth_sheet
from gan2shape.evaluate.tables import ROW_LABELS, markdown_table, write_metrics_json
from gan2shape.model.losses import smoothness
from gan2shape.render import Camera

__all__ = ["SUMMARY_KEYS", "angle_gain", "camera_from_artifact", "evaluate_prediction", "run_evaluate", "wrap_degrees"]

log = logging.getLogger(__name__)

SUMMARY_KEYS = ("n", "side_x1e2_mean", "side_x1e2_std", "mad_mean", "mad_std")


def camera_from_artifact(art: Artifact) -> Camera:
    """The camera the split was rendered with, from the attributes make_heads writes.

    Reads ``image_size`` (else the depth maps' size), ``camera_fov_deg`` and, when present,
    ``camera_min_depth``, ``camera_max_depth``, ``camera_rot_center_depth``. Raises ArtifactError
    naming the file when the fov is missing.
    """
    attrs = art.attrs
    size = attrs.get("image_size")
    if size is None:
        size = art.shape("depth")[-1]
    if attrs.get("camera_fov_deg") is None:
        raise ArtifactError(
            f"{art.path} has no 'camera_fov_deg' attribute (the camera it was rendered with): pass "
            "camera= explicitly or rebuild the split with `gan2shape make-heads`"
        )
    optional = {
        key: float(attrs[f"camera_{key}"])
        for key in ("min_depth", "max_depth", "rot_center_depth")
        if attrs.get(f"camera_{key}") is not None
    }
    return Camera(image_size=int(size), fov_deg=float(attrs["camera_fov_deg"]), **optional)


# kind -> (depth dataset, valid-mask dataset) of the artifacts that can be scored
_PREDICTION_DATASETS = {"prediction": ("depth", "valid"), "shape": ("recon_depth", "recon_mask")}


def _check_split(art: Artifact, expected: str) -> None:
    found = art.attrs.get("split")
    if found is not None and found != expected:
        log.warning("%s holds the %r split, used here as the %s split", art.path, found, expected)


def evaluate_prediction(
    test: Artifact,
    pred_path: str | Path,
    camera: Camera,
    erode_pixels: int = 1,
    max_images: int | None = None,
    batch_size: int = 128,
) -> dict[str, object]:
    """Score a prediction artifact against the test split ``test`` (see the module docstring).

    Returns ScoreAccumulator.result(): per-image 'ids', 'side', 'mad', 'relief' and the summary keys;
    plus, when the prediction is a shape artifact with 'view' and the test split has 'view' (both
    physical [pitch, yaw, roll (radians), tx, ty, tz]): 'view_deg' and 'gt_view_deg' (N, 3) float64
    degrees, the predicted and GT pitch, yaw, roll wrapped to [-180, 180), and 'view_err' (N, 3)
    float64 degrees, |pitch, yaw, roll error| wrapped to [0, 180]; plus 'canon_roughness' (N,) float64 (``smoothness``
    of the canonical depth, camera units per pixel^2) when it is a shape artifact with
    'canon_depth'; plus 'sheet' (images (N, 3, S, S) uint8, gt (N, S, S), pred (N, S, S), mask
    (N, S, S) bool: the inputs of :func:`depth_sheet`) when the test split has 'image'.
    """
    size = camera.image_size
    # A 'shape' artifact (the method's stage{k}/shape.h5) is scored directly: its depth seen in the
    # input view and that view's valid mask.
    with read_artifact(pred_path) as probe:
        kind = probe.kind
    if kind not in _PREDICTION_DATASETS:
        raise ArtifactError(
            f"{pred_path} holds a {kind!r} artifact; evaluate reads {sorted(_PREDICTION_DATASETS)} artifacts: give "
            "--pred a stage<k>/shape.h5 of the method or a prediction file"
        )
    depth_name, valid_name = _PREDICTION_DATASETS[kind]
    with read_artifact(pred_path, kind=kind, require=(depth_name,), shapes={depth_name: (size, size)}) as pred:
        rows = select_rows(test, ids=pred.ids, max_images=max_images)
        has_valid = valid_name in pred.names
        with_view = kind == "shape" and "view" in pred.names and "view" in test.names
        with_canon = kind == "shape" and "canon_depth" in pred.names
        roughness: list[np.ndarray] = []
        with_images = "image" in test.names
        views: dict[str, list[np.ndarray]] = {"view_deg": [], "gt_view_deg": []}
        sheet: dict[str, list[np.ndarray]] = {"images": [], "gt": [], "pred": [], "mask": []}
        acc = ScoreAccumulator()
        for start in range(0, rows.size, batch_size):
            stop = min(rows.size, start + batch_size)
            batch_ids = pred.ids[start:stop]
            gt = torch.from_numpy(test.array("depth", rows[start:stop])).to(torch.float32)
            depth = torch.from_numpy(pred.array(depth_name, slice(start, stop))).to(torch.float32)
            valid = torch.from_numpy(pred.array(valid_name, slice(start, stop))) if has_valid else None
            try:
                mask = acc.add(batch_ids, depth, gt, camera, pred_valid=valid, erode_pixels=erode_pixels)
            except ValueError as exc:  # e.g. an image without a valid predicted pixel
                raise ArtifactError(f"{pred_path}: {exc}; check how the prediction was made") from None
            if with_images:
                sheet["images"].append(test.array("image", rows[start:stop]))
                sheet["gt"].append(gt.numpy())
                sheet["pred"].append(depth.numpy())
                sheet["mask"].append(mask.numpy() > 0.5)
            if with_view:
                views["view_deg"].append(pred.array("view", slice(start, stop))[:, :3])  # radians until the end
                views["gt_view_deg"].append(test.array("view", rows[start:stop])[:, :3])
            if with_canon:
                canon = torch.from_numpy(pred.array("canon_depth", slice(start, stop))).to(torch.float32)
                roughness.append(smoothness(canon).double().numpy())
    result = acc.result()
    if with_canon:
        result["canon_roughness"] = np.concatenate(roughness)
    if with_view:
        result.update({k: wrap_degrees(np.degrees(np.concatenate(v).astype(np.float64))) for k, v in views.items()})
        result["view_err"] = np.abs(wrap_degrees(result["view_deg"] - result["gt_view_deg"]))
    if with_images and sheet["images"][0].dtype != np.uint8:
        log.warning("no depth sheet: the test split's images are %s, not uint8", sheet["images"][0].dtype)
    elif with_images:
        result["sheet"] = {k: np.concatenate(v) for k, v in sheet.items()}
    return result


def wrap_degrees(degrees: np.ndarray) -> np.ndarray:
    """Angles in degrees (any shape) -> float64 degrees wrapped to [-180, 180)."""
    return (np.asarray(degrees, dtype=np.float64) + 180.0) % 360.0 - 180.0


def angle_gain(pred_deg: np.ndarray, gt_deg: np.ndarray) -> float:
    """Least-squares slope through 0 of predicted on GT angles, sum(pred * gt) / sum(gt^2).

    pred_deg, gt_deg: (N,) degrees. 1 = the right rotation scale, < 1 = under-turned, < 0 = turned the
    wrong way; NaN when every GT angle is 0 (no scale to measure).
    """
    pred, gt = np.asarray(pred_deg, dtype=np.float64), np.asarray(gt_deg, dtype=np.float64)
    denom = float((gt * gt).sum())
    return float((pred * gt).sum() / denom) if denom > 0 else float("nan")


def _diagnostics(row: dict[str, Any]) -> dict[str, Any]:
    """metrics.json 'diagnostics' of one row: relief ratio and (shape artifacts) view error, view gain
    and canonical roughness summaries."""
    relief = np.asarray(row["relief"], dtype=np.float64)
    out: dict[str, Any] = {"relief_ratio_median": float(np.median(relief)), "relief_ratio_mean": float(relief.mean())}
    if "view_err" in row:
        err = np.asarray(row["view_err"])
        out["view_abs_err_deg_mean"] = {k: float(v) for k, v in zip(("pitch", "yaw", "roll"), err.mean(0))}
        out["view_abs_err_deg_median"] = {k: float(v) for k, v in zip(("pitch", "yaw", "roll"), np.median(err, 0))}
        out["view_gain"] = {
            k: angle_gain(row["view_deg"][:, i], row["gt_view_deg"][:, i]) for i, k in enumerate(("pitch", "yaw"))
        }
    if "canon_roughness" in row:
        rough = np.asarray(row["canon_roughness"])
        out["canon_roughness_median"] = float(np.median(rough))
        out["canon_roughness_mean"] = float(rough.mean())
    return out


def run_evaluate(
    test_path: str | Path,
    pred_path: str | Path | None,
    out_dir: str | Path,
    train_path: str | Path | None = None,
    baselines: bool = True,
    config: EvaluateConfig | None = None,
    camera: Camera | None = None,
    max_images: int | None = None,
    progress: bool = False,
    prior: PriorConfig | None = None,
) -> dict[str, Any]:
    """Evaluate a prediction and/or the baselines; write metrics.json, per_image.json, table.md.

    Args:
        test_path: the test split (kind 'heads', dataset 'depth').
        pred_path: a prediction artifact (module docstring) or None (baselines only).
        out_dir: output folder (created).
        train_path: the train split, for 'average_gt_depth'; without it that row is skipped with a
            warning (recorded under 'skipped').
        baselines: add the baseline rows named in ``config.baselines``.
        config: evaluation settings (erosion, baseline names); None = defaults.
        camera: the test images' camera; None = read from the test file's attributes.
        max_images: score only the first this many test images (or prediction rows).
        progress: progress bars.
        prior: the method's prior settings (method.prior: near, far, raise_top_frac) for the
            'ellipsoid_prior' row, over each GT foreground box; None = PriorConfig's defaults (those of
            params.yaml). Recorded in metrics.json under 'ellipsoid_prior'.

    Returns:
        The content of metrics.json: {'rows': {name: summary}, 'skipped': {name: reason},
        'camera': {...}, 'test_path', 'pred_path', 'train_path', 'erode_pixels'}.
    """
    config = config or EvaluateConfig()
    prior = prior or PriorConfig()
    if pred_path is None and not baselines:
        raise InputError("nothing to evaluate: give a prediction file (--pred) or enable the baselines")
    out_dir = Path(out_dir)
    rows: dict[str, dict[str, object]] = {}
    skipped: dict[str, str] = {}
    with read_artifact(test_path, kind="heads", require=("depth",)) as test:
        _check_split(test, "test")
        camera = camera or camera_from_artifact(test)
        depth_shape = test.shape("depth")
        if depth_shape[1:] != (camera.image_size, camera.image_size):
            raise ArtifactError(
                f"{test_path} depth maps are {depth_shape[1:]}, the camera is "
                f"{camera.image_size}x{camera.image_size}: rebuild the split with `gan2shape make-heads`"
            )
        prediction = None
        if pred_path is not None:
            prediction = evaluate_prediction(test, pred_path, camera, config.erode_pixels, max_images)
    if baselines:
        if train_path is not None:
            with read_artifact(train_path, kind="heads", require=("depth",)) as train:
                _check_split(train, "train")
        names: Sequence[str] = list(config.baselines)
        if train_path is None and "average_gt_depth" in names:
            reason = "no train split given (--train)"
            log.warning("skipping the average_gt_depth baseline: %s", reason)
            skipped["average_gt_depth"] = reason
            names = [n for n in names if n != "average_gt_depth"]
        if names:
            ids: list[str] | None = list(prediction["ids"]) if prediction is not None else None
            rows.update(
                evaluate_baselines(
                    None if train_path is None else str(train_path),
                    str(test_path),
                    camera,
                    max_images=max_images,
                    names=names,
                    ids=ids,
                    erode_pixels=config.erode_pixels,
                    progress=progress,
                    prior_near=prior.near,
                    prior_far=prior.far,
                    prior_raise_top_frac=prior.raise_top_frac,
                )
            )
    if prediction is not None:
        rows["prediction"] = prediction  # last, as "ours" in the paper's tables

    summary = {name: {k: row[k] for k in SUMMARY_KEYS} for name, row in rows.items()}
    model = None  # a peer's prediction (gan2shape predict) names its model: its row is labelled so
    if pred_path is not None:
        with read_artifact(pred_path) as art:
            model = art.attrs.get("model")
    labels = {"prediction": ROW_LABELS[model]} if model in ROW_LABELS else None
    metrics = {
        "rows": summary,
        "skipped": skipped,
        "camera": {"image_size": camera.image_size, "fov_deg": camera.fov_deg},
        "erode_pixels": config.erode_pixels,
        "ellipsoid_prior": {"near": prior.near, "far": prior.far, "raise_top_frac": prior.raise_top_frac},
        "test_path": str(test_path),
        "pred_path": None if pred_path is None else str(pred_path),
        "pred_model": model,
        "train_path": None if train_path is None else str(train_path),
        "units": {"side_x1e2": "SIDE x 100 (table unit 10^-2)", "mad": "degrees"},
        "diagnostics": {name: _diagnostics(row) for name, row in rows.items()},
    }
    per_image = {
        name: {
            "ids": row["ids"],
            "side": row["side"],
            "mad_deg": row["mad"],
            "relief_ratio": row["relief"],
            **{k: row[k] for k in ("view_deg", "gt_view_deg") if k in row},
            **({"view_err_deg": row["view_err"]} if "view_err" in row else {}),
            **({"canon_roughness": row["canon_roughness"]} if "canon_roughness" in row else {}),
        }
        for name, row in rows.items()
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    write_metrics_json(out_dir / "metrics.json", metrics)
    write_metrics_json(out_dir / "per_image.json", per_image)
    write_text_atomic(out_dir / "table.md", markdown_table(summary, labels))
    if prediction is not None and "sheet" in prediction:
        d = prediction["sheet"]
        write_png(
            out_dir / "depth_sheet.png",
            depth_sheet(d["images"], d["gt"], d["pred"], d["mask"], np.asarray(prediction["side"])),
        )
    return metrics
