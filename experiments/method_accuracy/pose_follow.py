"""How far do the projected samples turn, and how far does step 3 think they turn? (issue 4 investigation)

The photometric terms of step 3 fix only the product of relief and rotation (a head twice as deep
turned half as far re-renders about the same). This probe measures both sides of that product on
one reconstruction run:
  1. a pose regressor (a small CNN, trained here on freshly rendered benchmark heads with known
     views and random lights) judges the true pitch/yaw of images; it is validated on the GAN's
     projections of the test heads (latents/test.h5 'image_recon', whose GT views are known);
  2. follow: the regressor's pose change from each target to its projected samples, regressed on
     the pose change the pseudo-samples were rendered with (pseudo.h5 'view' minus albedo.h5 'view');
     slope 1 = the GAN turns the head as asked;
  3. step 3's belief: the final view net's pose change target -> projected sample, against the
     requested change and against the regressor's measured change; and the view net's target yaw
     against the GT yaw;
  4. the run's relief ratio (from its evaluation's diagnostics, when --eval is given).

Usage (GPU machine; RUN = a `gan2shape reconstruct` output folder, INST its instances.h5):
  python3 experiments/method_accuracy/pose_follow.py --run RUN --instances INST --heads results/bench/heads \
      --latents results/bench/latents/test.h5 [--stage 1] [--eval RUN/eval] --out OUT.json --device cuda
Prints and writes one JSON object (angles in degrees; slope = least-squares slope of y on x, r = Pearson).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import h5py
import numpy as np
import torch
from torch import nn

from gan2shape.artifacts import read_artifact
from gan2shape.config import load_params
from gan2shape.data.heads import render_heads, sample_heads
from gan2shape.method.context import load_nets, make_context
from gan2shape.method.forward import predict_view_light
from gan2shape.method.instances import read_instances
from gan2shape.method.reconstruct import stage_paths

DEG = 180.0 / math.pi


class PoseNet(nn.Module):
    """(B, 3, 64, 64) in [-1, 1] -> (B, 2) [pitch, yaw] in radians."""

    def __init__(self, nf: int = 48):
        super().__init__()
        layers, c = [], 3
        for k in (nf, nf * 2, nf * 4, nf * 4):  # 64 -> 32 -> 16 -> 8 -> 4
            layers += [
                nn.Conv2d(c, k, 3, 1, 1),
                nn.GroupNorm(8, k),
                nn.ReLU(),
                nn.Conv2d(k, k, 4, 2, 1),
                nn.GroupNorm(8, k),
                nn.ReLU(),
            ]
            c = k
        self.body = nn.Sequential(*layers, nn.Flatten(), nn.Linear(c * 16, 256), nn.ReLU(), nn.Linear(256, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def render_training_set(heads_cfg, n: int, device: str, start: int = 1_000_000) -> tuple[torch.Tensor, torch.Tensor]:
    """n fresh benchmark heads (indices start.. of the train split, beyond the GAN's training set):
    images (n, 3, S, S) in [-1, 1] on device, angles (n, 2) [pitch, yaw] radians."""
    images, angles = [], []
    with torch.no_grad():
        for a in range(0, n, 1000):
            sample = sample_heads(heads_cfg, "train", start + a, min(1000, n - a)).to(device)
            images.append(render_heads(sample, heads_cfg)["image"])
            angles.append(sample.view[:, :2])
    return torch.cat(images), torch.cat(angles)


def train_pose(images: torch.Tensor, angles: torch.Tensor, steps: int, device: str) -> PoseNet:
    net = PoseNet().to(device)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    gen = torch.Generator(device="cpu").manual_seed(0)
    for _ in range(steps):
        idx = torch.randint(0, images.shape[0], (256,), generator=gen).to(device)
        x = images[idx]
        x = x * (1 + 0.2 * (torch.rand(len(x), 1, 1, 1, device=device) - 0.5))  # contrast jitter
        loss = nn.functional.smooth_l1_loss(net(x), angles[idx], beta=0.02)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    return net.eval()


@torch.no_grad()
def apply(net: nn.Module, images: torch.Tensor, chunk: int = 2048) -> torch.Tensor:
    return torch.cat([net(images[a : a + chunk]) for a in range(0, images.shape[0], chunk)])


def fit(x: np.ndarray, y: np.ndarray) -> dict:
    """Least-squares slope of y on x (through the means), Pearson r, mean |y - x|."""
    x, y = np.asarray(x, np.float64).ravel(), np.asarray(y, np.float64).ravel()
    xc, yc = x - x.mean(), y - y.mean()
    slope = float((xc * yc).sum() / max((xc * xc).sum(), 1e-12))
    r = float((xc * yc).sum() / max(math.sqrt((xc * xc).sum() * (yc * yc).sum()), 1e-12))
    return {
        "slope": round(slope, 3),
        "r": round(r, 3),
        "mean_abs_diff_deg": round(float(np.abs(y - x).mean()), 2),
        "x_std_deg": round(float(x.std()), 2),
        "y_std_deg": round(float(y.std()), 2),
        "n": int(x.size),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    ap.add_argument("--run", required=True)
    ap.add_argument("--instances", required=True)
    ap.add_argument("--heads", required=True, help="folder with test.h5")
    ap.add_argument("--latents", required=True, help="latents/test.h5 with image_recon (GT views: heads test.h5)")
    ap.add_argument("--stage", type=int, default=1)
    ap.add_argument("--eval", default=None, help="the run's evaluation folder (metrics.json: relief diagnostics)")
    ap.add_argument("--train-images", type=int, default=40000)
    ap.add_argument("--train-steps", type=int, default=4000)
    ap.add_argument("--out", required=True)
    ap.add_argument("--dump", default=None, help="also save the per-sample angles (degrees) to this .npz")
    ap.add_argument("--device", default="cuda")
    args = ap.parse_args()
    t0 = time.perf_counter()
    params, text = load_params(Path(args.params), ("method.profile=bench", *args.overrides))
    dev = args.device
    result: dict = {"run": args.run, "stage": args.stage}

    # 1. the pose regressor, and its error on GAN images of known pose
    images, angles = render_training_set(params.heads, args.train_images, dev)
    pose = train_pose(images, angles, args.train_steps, dev)
    held = render_training_set(params.heads, 2000, dev, start=2_000_000)
    pred_held = apply(pose, held[0]).cpu().numpy() * DEG
    with h5py.File(args.latents) as f:
        gan_img = torch.from_numpy(f["image_recon"][:]).float().div(127.5).sub(1).to(dev)
    with read_artifact(Path(args.heads) / "test.h5", "heads") as art:  # the GT views, read once
        test_view, test_ids = art.array("view"), art.ids
    gt_view = test_view[: gan_img.shape[0]]
    pred_gan = apply(pose, gan_img).cpu().numpy() * DEG
    result["regressor"] = {
        "train_images": args.train_images,
        "train_steps": args.train_steps,
        "renders_yaw": fit(held[1][:, 1].cpu().numpy() * DEG, pred_held[:, 1]),
        "renders_pitch": fit(held[1][:, 0].cpu().numpy() * DEG, pred_held[:, 0]),
        "gan_projections_yaw": fit(gt_view[:, 1] * DEG, pred_gan[:, 1]),
        "gan_projections_pitch": fit(gt_view[:, 0] * DEG, pred_gan[:, 0]),
    }
    del images, held

    # 2. and 3. the run's pseudo-sample requests, projected samples and final networks
    p = stage_paths(Path(args.run), args.stage)
    ctx = make_context(params, text, device=dev, progress=False, nf=params.method.nf, enc_nf=params.method.enc_nf)
    inst = read_instances(args.instances, ctx.size, dev)
    n = inst.n
    with read_artifact(p["albedo"], "albedo") as art:
        target_view = art.array("view")
    with read_artifact(p["pseudo"], "pseudo") as art:
        req = art.array("view") - target_view[:, None]  # (N, M, 6) requested change
    with read_artifact(p["projected"], "projected") as art:
        proj = art.tensor("image", device=dev).float()
    with read_artifact(p["shape"], "shape") as art:
        nets = load_nets(ctx, art, n)
    m = proj.shape[1]
    flat = proj.reshape(n * m, *proj.shape[2:])
    reg_t = apply(pose, inst.image).cpu().numpy() * DEG  # (N, 2)
    reg_p = apply(pose, flat).cpu().numpy().reshape(n, m, 2) * DEG  # (N, M, 2)
    measured = reg_p - reg_t[:, None]
    with torch.no_grad():
        vt = predict_view_light(ctx, nets, inst.image)["view"]  # (N, 6)
        vp = _grouped_views(ctx, nets, proj)  # (N, M, 6)
    belief = (vp[..., :2] - vt[:, None, :2]).cpu().numpy() * DEG  # (N, M, 2) [pitch, yaw]
    req_deg = req[..., :2] * DEG
    gt = test_view[[test_ids.index(i) for i in inst.ids]]
    result["follow"] = {"yaw": fit(req_deg[..., 1], measured[..., 1]), "pitch": fit(req_deg[..., 0], measured[..., 0])}
    result["step3_view_net"] = {
        "vs_requested_yaw": fit(req_deg[..., 1], belief[..., 1]),
        "vs_measured_yaw": fit(measured[..., 1], belief[..., 1]),
        "vs_requested_pitch": fit(req_deg[..., 0], belief[..., 0]),
        "vs_measured_pitch": fit(measured[..., 0], belief[..., 0]),
        "target_yaw_vs_gt": fit(gt[:, 1] * DEG, vt[:, 1].cpu().numpy() * DEG),
        "target_pitch_vs_gt": fit(gt[:, 0] * DEG, vt[:, 0].cpu().numpy() * DEG),
    }
    result["regressor_target_yaw_vs_gt"] = fit(gt[:, 1] * DEG, reg_t[:, 1])
    if args.dump:
        np.savez_compressed(
            args.dump,
            regressor_target=reg_t,
            regressor_projected=reg_p,
            requested=req_deg,
            view_net_target=vt[:, :3].cpu().numpy() * DEG,
            view_net_projected=vp[..., :3].cpu().numpy() * DEG,
            gt_target=gt[:, :3] * DEG,
        )
    if args.eval:
        metrics = json.loads((Path(args.eval) / "metrics.json").read_text())
        pred = metrics.get("diagnostics", {}).get("prediction", {})
        result["relief"] = {k: v for k, v in pred.items() if "relief" in k}
    result["seconds"] = round(time.perf_counter() - t0, 1)
    line = json.dumps(result)
    print(line)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(line + "\n")


def _grouped_views(ctx, nets, proj: torch.Tensor) -> torch.Tensor:
    """Views (N, M, 6) of projected samples (N, M, 3, S, S): chunks of B columns for every instance at
    once (instance-mode nets expect rows grouped by instance, the same count per instance)."""
    n, m = proj.shape[:2]
    out = []
    for a in range(0, m, 64):
        part = proj[:, a : a + 64]
        b = part.shape[1]
        out.append(predict_view_light(ctx, nets, part.reshape(n * b, *proj.shape[2:]))["view"].reshape(n, b, 6))
    return torch.cat(out, 1)


if __name__ == "__main__":
    main()
