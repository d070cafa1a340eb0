"""The supervised row of Table 1: the method's depth net trained with the train heads' GT depth.

The network is :class:`gan2shape.model.DepthNet` (unsup3d's encoder-decoder, the method's depth-net
architecture); its raw output is the log of the depth in the input view, depth = exp(raw). Loss per
image, over the GT foreground:

    si_log_error(raw, log gt) + lam_normal * normal_error(normals(exp raw), normals(gt))

si_log_error is the SIDE of the evaluation (the standard deviation of the log-depth difference; 0 for
any scaled copy of the GT, which SIDE and MAD both ignore), normal_error the mean of 1 - cos between the
normals of the two depth maps (the camera of the heads; foreground eroded by a pixel, as MAD's mask).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gan2shape.config import SupervisedConfig
from gan2shape.model import DepthNet
from gan2shape.peers.data import load_heads_set, to_unit
from gan2shape.peers.training import PeerTrainer, fast_cuda, run_training
from gan2shape.render import depth_to_normals

__all__ = [
    "si_log_error",
    "normal_error",
    "erode",
    "SupervisedTrainer",
    "build_supervised",
    "predict_supervised",
    "train_supervised",
]

_EPS = 1e-12


def _check_maps(name: str, x: Tensor, like: Tensor) -> None:
    if x.shape != like.shape:
        raise ValueError(f"{name} must have shape {tuple(like.shape)}, got {tuple(x.shape)}")


def si_log_error(pred_log: Tensor, gt_log: Tensor, mask: Tensor) -> Tensor:
    """Scale-invariant log-depth error per image: sqrt(mean_m((d - mean_m d)^2)), d = pred_log - gt_log.

    pred_log, gt_log: (N, H, W) float log depths; mask: (N, H, W) bool or {0, 1} (pixels to average).
    Returns (N,) >= 0 (sqrt(1e-12) = 1e-6 at the minimum); equals the evaluation's SIDE of exp(pred_log);
    0 when pred_log - gt_log is constant on the mask (a scaled copy). An empty mask gives 1e-6.
    """
    _check_maps("gt_log", gt_log, pred_log)
    _check_maps("mask", mask, pred_log)
    if pred_log.dim() != 3:
        raise ValueError(f"pred_log must be (N, H, W), got {tuple(pred_log.shape)}")
    m = mask.to(pred_log.dtype)
    n = m.flatten(1).sum(1).clamp(min=1.0)
    d = pred_log - gt_log
    mean = (d * m).flatten(1).sum(1) / n
    var = ((d - mean[:, None, None]).square() * m).flatten(1).sum(1) / n
    return (var + _EPS).sqrt()


def normal_error(pred_normals: Tensor, gt_normals: Tensor, mask: Tensor) -> Tensor:
    """Mean of 1 - <n_pred, n_gt> over the mask, per image.

    pred_normals, gt_normals: (N, H, W, 3) unit vectors; mask: (N, H, W) bool or {0, 1}.
    Returns (N,) in [0, 2]; 0 for equal normals, 1 - cos(a) for normals a radians apart everywhere.
    """
    _check_maps("gt_normals", gt_normals, pred_normals)
    if pred_normals.dim() != 4 or pred_normals.shape[-1] != 3:
        raise ValueError(f"normals must be (N, H, W, 3), got {tuple(pred_normals.shape)}")
    _check_maps("mask", mask, pred_normals[..., 0])
    m = mask.to(pred_normals.dtype)
    err = 1.0 - (pred_normals * gt_normals).sum(-1)
    return (err * m).flatten(1).sum(1) / m.flatten(1).sum(1).clamp(min=1.0)


def erode(mask: Tensor, pixels: int = 1) -> Tensor:
    """(N, H, W) bool mask eroded by ``pixels`` 3x3 rounds (a pixel stays when its 8 neighbours are in it;
    the image border counts as outside). Returns (N, H, W) bool."""
    out = mask.to(torch.float32).unsqueeze(1)
    for _ in range(pixels):
        out = -F.max_pool2d(-F.pad(out, (1, 1, 1, 1), value=0.0), 3, stride=1)
    return out[:, 0] > 0.5


def build_supervised(config: SupervisedConfig) -> nn.ModuleDict:
    """The supervised row's networks: {'depth': DepthNet(image_size, nf, zdim)} (raw output = log depth)."""
    return nn.ModuleDict({"depth": DepthNet(config.image_size, nf=config.nf, zdim=config.zdim)})


def predict_supervised(nets: nn.ModuleDict, image: Tensor) -> Tensor:
    """(N, 3, S, S) float images in [-1, 1] -> (N, S, S) depth = exp(raw), > 0, in the input view."""
    return nets["depth"](image)[:, 0].exp()


class SupervisedTrainer(PeerTrainer):
    """The supervised depth net on heads with GT depth (data loaded ``with_depth``); camera: the heads'."""

    kind = "supervised"

    @staticmethod
    def build_networks(config: SupervisedConfig) -> nn.ModuleDict:
        return build_supervised(config)

    def losses(self, rows: Tensor) -> dict[str, Tensor]:
        image = to_unit(self.data.image[rows])
        gt, mask = self.data.depth[rows], self.data.mask[rows]
        if self.config.flip:  # a mirrored head under a mirrored view: the camera is symmetric
            flip = torch.rand(rows.shape[0], generator=self.rng, device=self.device) < 0.5
            image = torch.where(flip[:, None, None, None], image.flip(3), image)
            gt = torch.where(flip[:, None, None], gt.flip(2), gt)
            mask = torch.where(flip[:, None, None], mask.flip(2), mask)
        log_depth = self.nets["depth"](image)[:, 0]
        side = si_log_error(log_depth, gt.log(), mask).mean()
        terms = {"side": side}
        loss = side
        if self.config.lam_normal > 0:
            normals = depth_to_normals(log_depth.exp(), self.camera)
            with torch.no_grad():
                gt_normals = depth_to_normals(gt, self.camera)
            terms["normal"] = normal_error(normals, gt_normals, erode(mask)).mean()
            loss = loss + self.config.lam_normal * terms["normal"]
        terms["loss"] = loss
        return terms


def train_supervised(
    config: SupervisedConfig,
    data_path: str | Path,
    out_dir: str | Path,
    *,
    device: torch.device | str,
    max_steps: int | None = None,
    max_seconds: float | None = None,
    progress: bool = True,
    params_text: str | None = None,
) -> dict[str, Any]:
    """Train (or continue) the supervised depth net on a heads split with GT depth (``data_path``: the
    train.h5 of gan2shape make-heads); writes out_dir/checkpoint.pt and log.jsonl (run_training)."""
    device = torch.device(device)
    fast_cuda(device)
    data = load_heads_set(data_path, config.image_size, device, with_depth=True)
    trainer = SupervisedTrainer(config, data, data.camera, device)
    return run_training(
        trainer, out_dir, max_steps=max_steps, max_seconds=max_seconds, progress=progress, params_text=params_text
    )
