"""Does the shipped GAN have a latent direction that turns heads? (issue 4 investigation)

Regress the true yaw of projected test heads on their w (mean over w+ layers; ridge), report the
held-out R^2, then move a few heads' w+ along two yaw directions and save the images:
pose_direction.png (the regression's minimal-norm readout direction) and pose_direction_bins.png
(mean w of heads turned > 25 deg right minus left, per degree).
Usage: python3 experiments/method_accuracy/gpu_pose_direction.py LATENTS.h5 HEADS_TEST.h5 OUT_DIR
(LATENTS.h5: `gan2shape project --images HEADS_TEST.h5`.)
"""

import sys

import h5py
import numpy as np
import torch
from PIL import Image

from gan2shape.stylegan2.checkpoint import load_checkpoint

lat_path, heads_path, out = sys.argv[1:4]
with h5py.File(lat_path) as f:
    lat = torch.from_numpy(f["latent"][:]).float()
    noise = [torch.from_numpy(f[f"noise_{i}"][:]).float() for i in range(len([k for k in f if k.startswith("noise_")]))]
n = lat.shape[0]
with h5py.File(heads_path) as f:
    view = f["view"][:n]
yaw = np.degrees(view[:, 1]) if np.abs(view[:, 1]).max() < 3.2 else view[:, 1]
w = lat.mean(1).numpy()
tr, te = slice(0, n * 4 // 5), slice(n * 4 // 5, n)
mu = w[tr].mean(0)
x = w - mu
lam = 1.0
a = x[tr]
coef = np.linalg.solve(a.T @ a + lam * np.eye(a.shape[1]), a.T @ (yaw[tr] - yaw[tr].mean()))
pred = x[te] @ coef + yaw[tr].mean()
r2 = 1 - ((pred - yaw[te]) ** 2).sum() / ((yaw[te] - yaw[te].mean()) ** 2).sum()
print(f"yaw from w: held-out R^2 {r2:.3f} on {n - n * 4 // 5} heads (train {n * 4 // 5}); yaw std {yaw.std():.1f} deg")
readout = torch.from_numpy(coef / (coef @ coef)).float()  # minimal-norm w step per degree of predicted yaw
# class-mean difference: mean w of heads turned > 25 deg one way minus the other way, per degree
right, left = yaw > 25, yaw < -25
if right.sum() and left.sum():
    bins = torch.from_numpy((w[right].mean(0) - w[left].mean(0)) / (yaw[right].mean() - yaw[left].mean())).float()
else:
    bins = None
    print("too few heads turned > 25 deg both ways for the class-mean direction")
dev = "cuda" if torch.cuda.is_available() else "cpu"
g = load_checkpoint("data/stylegan2_heads64.pt", device=dev).g_ema.eval()
for name, direction in (("pose_direction", readout), ("pose_direction_bins", bins)):
    if direction is None:
        continue
    rows = []
    with torch.no_grad():
        for i in range(min(6, n)):
            frames = []
            for dyaw in (-60, -30, 0, 30, 60):
                wi = lat[i : i + 1].to(dev) + dyaw * direction.to(dev)[None, None]
                img = g.synthesis(wi, noise=[z[i : i + 1].to(dev) for z in noise], randomize_noise=False).clamp(-1, 1)
                frames.append(((img[0].permute(1, 2, 0).cpu().numpy() + 1) * 127.5).astype(np.uint8))
            rows.append(np.concatenate(frames, 1))
    Image.fromarray(np.concatenate(rows, 0)).save(f"{out}/{name}.png")
    print(f"{name}: |step per degree| = {float(direction.norm()):.4f}")
print(
    f"rows: 6 test heads; columns: w + d * yaw_direction for d = -60, -30, 0, 30, 60 deg of predicted yaw "
    f"(true yaw of the rows: {np.round(yaw[:6], 1).tolist()})"
)
