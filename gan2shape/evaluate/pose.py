"""A pose regressor for the synthetic heads: the instrument that says how far an image is turned.

Step 2 of GAN2Shape asks the GAN to show an instance turned by a known amount; whether it does can
only be read off the images. ``PoseRegressor`` is a small CNN trained on freshly rendered benchmark
heads (exact pitch and yaw, random identity, light and background) that reads pitch and yaw from
any image of the benchmark's kind: renders, GAN samples, projected samples. Its own calibration is
part of every measurement made with it (``line_fit`` of its predictions on held-out renders), so a
follow slope is always compared with the regressor's slope on the very images that were asked for.

The trained regressor is stored as a 'pose' artifact (network 'pose'; attrs image_size, nf and the
held-out fits), so it is trained once per benchmark configuration and reused.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from gan2shape.artifacts import read_artifact, write_artifact
from gan2shape.config import HeadsConfig
from gan2shape.data.heads import render_heads, sample_heads

__all__ = [
    "POSE_KIND",
    "PoseRegressor",
    "line_fit",
    "render_pose_set",
    "train_pose_regressor",
    "predict_pose",
    "save_pose_regressor",
    "load_pose_regressor",
]

POSE_KIND = "pose"
DEG = 180.0 / math.pi
# Heads drawn for training and validation come from indices far beyond any benchmark split, so the
# regressor never saw an image the GAN was trained on or a test head.
_TRAIN_START = 1_000_000
_HELD_START = 2_000_000


class PoseRegressor(nn.Module):
    """images (N, 3, S, S) float in [-1, 1] -> (N, 2) float [pitch, yaw] in radians.

    log2(S) - 2 stages of conv3x3 + GroupNorm + ReLU and a stride-2 conv4x4 (S -> 4), channels
    nf, 2 nf, 4 nf, 4 nf, ..., then a two-layer MLP on the flattened 4x4 map.
    """

    def __init__(self, image_size: int = 64, nf: int = 32) -> None:
        super().__init__()
        if image_size < 8 or image_size & (image_size - 1):
            raise ValueError(f"PoseRegressor: image_size must be a power of two >= 8, got {image_size}")
        if nf < 8 or nf % 8:
            raise ValueError(f"PoseRegressor: nf must be a multiple of 8 (GroupNorm groups), got {nf}")
        self.image_size, self.nf = image_size, nf
        layers: list[nn.Module] = []
        c = 3
        for k in range(int(math.log2(image_size)) - 2):
            out = nf * 2 ** min(k, 2)
            layers += [
                nn.Conv2d(c, out, 3, 1, 1),
                nn.GroupNorm(8, out),
                nn.ReLU(),
                nn.Conv2d(out, out, 4, 2, 1),
                nn.GroupNorm(8, out),
                nn.ReLU(),
            ]
            c = out
        self.body = nn.Sequential(*layers, nn.Flatten(), nn.Linear(c * 16, 256), nn.ReLU(), nn.Linear(256, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1:] != (3, self.image_size, self.image_size):
            raise ValueError(
                f"PoseRegressor expects (N, 3, {self.image_size}, {self.image_size}) images, "
                f"got {tuple(x.shape)}; resize them to the regressor's size"
            )
        return self.body(x)


def line_fit(x, y) -> dict:
    """Least-squares line of y on x (through the means) and how well it holds.

    x, y: array-likes of equal size (flattened). Returns slope, Pearson r, the mean |y - x|, the
    standard deviations of x and y, and n (floats rounded to 4 digits; slope and r are NaN when x
    or y has no spread).
    """
    x = np.asarray(x, np.float64).ravel()
    y = np.asarray(y, np.float64).ravel()
    if x.shape != y.shape or x.size < 2:
        raise ValueError(f"line_fit needs two arrays of one size >= 2, got {x.size} and {y.size}")
    xc, yc = x - x.mean(), y - y.mean()
    sxx, syy, sxy = float((xc * xc).sum()), float((yc * yc).sum()), float((xc * yc).sum())
    slope = sxy / sxx if sxx > 0 else float("nan")
    r = sxy / math.sqrt(sxx * syy) if sxx > 0 and syy > 0 else float("nan")
    return {
        "slope": round(slope, 4),
        "r": round(r, 4),
        "mean_abs_diff": round(float(np.abs(y - x).mean()), 4),
        "x_std": round(float(x.std()), 4),
        "y_std": round(float(y.std()), 4),
        "n": int(x.size),
    }


def render_pose_set(
    config: HeadsConfig, start: int, count: int, device: str | torch.device = "cpu", chunk: int = 500
) -> tuple[torch.Tensor, torch.Tensor]:
    """Render heads start .. start+count-1 of the 'train' stream.

    Returns images (count, 3, S, S) float16 in [-1, 1] and angles (count, 2) float32 [pitch, yaw]
    radians, both on ``device``.
    """
    images, angles = [], []
    with torch.no_grad():
        for a in range(0, count, chunk):
            sample = sample_heads(config, "train", start + a, min(chunk, count - a)).to(device)
            images.append(render_heads(sample, config)["image"].half())
            angles.append(sample.view[:, :2].float())
    return torch.cat(images), torch.cat(angles)


@torch.no_grad()
def predict_pose(net: PoseRegressor, images: torch.Tensor, chunk: int = 1024) -> torch.Tensor:
    """Pitch and yaw of images (N, 3, S, S) in [-1, 1] (any float dtype, any device): (N, 2) float32
    radians on the images' device."""
    device = next(net.parameters()).device
    out = [net(images[a : a + chunk].to(device).float()).to(images.device) for a in range(0, images.shape[0], chunk)]
    return torch.cat(out) if out else torch.zeros(0, 2, device=images.device)


def _fits(net: PoseRegressor, images: torch.Tensor, angles: torch.Tensor) -> dict:
    pred = predict_pose(net, images).cpu().numpy() * DEG
    true = angles.cpu().numpy() * DEG
    return {"pitch": line_fit(true[:, 0], pred[:, 0]), "yaw": line_fit(true[:, 1], pred[:, 1])}


def train_pose_regressor(
    config: HeadsConfig,
    *,
    n_images: int = 40000,
    n_held: int = 2000,
    steps: int = 4000,
    batch_size: int = 256,
    lr: float = 1e-3,
    nf: int = 32,
    seed: int = 0,
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> tuple[PoseRegressor, dict]:
    """Train a PoseRegressor on n_images freshly rendered heads of ``config`` (pitch and yaw known).

    Adam with a cosine-annealed lr, smooth-L1 on radians, a random contrast and brightness jitter
    per image (the method's renders and the GAN's images differ from the benchmark's in both).
    Returns the network (eval mode, on ``device``) and a report: the held-out fits (``line_fit`` of
    predicted on true pitch and yaw in degrees, n_held heads from another stream), sizes, seconds.
    """
    for name, value in (("n_images", n_images), ("n_held", n_held), ("steps", steps), ("batch_size", batch_size)):
        if value < 2:
            raise ValueError(f"train_pose_regressor: {name} must be >= 2, got {value}")
    t0 = time.perf_counter()
    device = torch.device(device)
    images, angles = render_pose_set(config, _TRAIN_START, n_images, device)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = PoseRegressor(config.image_size, nf).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    gen = torch.Generator().manual_seed(seed + 1)
    net.train()
    for _ in tqdm(range(steps), desc="pose regressor", disable=not progress, leave=False):
        idx = torch.randint(0, n_images, (batch_size,), generator=gen).to(device)
        jitter = torch.rand(batch_size, 2, generator=gen).to(device)
        contrast = (0.8 + 0.4 * jitter[:, 0]).view(-1, 1, 1, 1)
        bright = (0.2 * jitter[:, 1] - 0.1).view(-1, 1, 1, 1)
        x = (images[idx].float() * contrast + bright).clamp(-1.0, 1.0)
        loss = nn.functional.smooth_l1_loss(net(x), angles[idx], beta=0.02)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    net.eval()
    del images
    held_images, held_angles = render_pose_set(config, _HELD_START, n_held, device)
    report = {
        "held_out": _fits(net, held_images, held_angles),
        "n_images": n_images,
        "n_held": n_held,
        "steps": steps,
        "batch_size": batch_size,
        "lr": lr,
        "nf": nf,
        "seed": seed,
        "image_size": config.image_size,
        "final_loss": float(loss.detach()),
        "seconds": round(time.perf_counter() - t0, 1),
    }
    return net, report


def save_pose_regressor(path: str | Path, net: PoseRegressor, report: dict, params_text: str | None = None) -> Path:
    """Write a 'pose' artifact: network 'pose' (float32), attrs image_size, nf, report."""
    state = {k: v.detach().cpu() for k, v in net.state_dict().items()}
    return write_artifact(
        path,
        POSE_KIND,
        {},
        ids=[],
        params_text=params_text,
        networks={"pose": state},
        attrs={"image_size": net.image_size, "nf": net.nf, "report": report},
    )


def load_pose_regressor(path: str | Path, device: str | torch.device = "cpu") -> tuple[PoseRegressor, dict]:
    """Read a 'pose' artifact (``save_pose_regressor``): (the network in eval mode on ``device``, its report)."""
    with read_artifact(path, POSE_KIND) as art:
        size, nf = int(art.attrs["image_size"]), int(art.attrs["nf"])
        state = art.network("pose")
        report = art.attrs.get("report", {})
    net = PoseRegressor(size, nf)
    net.load_state_dict(state)
    return net.to(device).eval(), report
