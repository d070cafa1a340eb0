import sys

import h5py
import numpy as np
from PIL import Image


def img(x):  # (3,S,S) [-1,1]
    return ((np.clip(x, -1, 1) + 1) * 127.5).astype(np.uint8).transpose(1, 2, 0)


def dep(d, lo=None, hi=None):
    lo = d.min() if lo is None else lo
    hi = d.max() if hi is None else hi
    g = ((d - lo) / (hi - lo + 1e-9) * 255).clip(0, 255).astype(np.uint8)
    return np.stack([g] * 3, -1)


# Usage: python experiments/method_accuracy/viz_stage.py RUN_DIR OUT.png  (RUN_DIR holds inst.h5 and stage1/)
# Columns: target, step-1 render, albedo, step-1 depth, 6 pseudo-samples, 6 projected samples,
# step-3 render, step-3 canonical depth, step-3 depth in the input view (0.9..1.1).
d = sys.argv[1]
out = sys.argv[2]
rows = []
inst = h5py.File(f"{d}/inst.h5")
A = h5py.File(f"{d}/stage1/albedo.h5")
P = h5py.File(f"{d}/stage1/pseudo.h5")
try:
    Q = h5py.File(f"{d}/stage1/projected.h5")
except Exception:
    Q = None
try:
    S = h5py.File(f"{d}/stage1/shape.h5")
except Exception:
    S = None
n = min(8, A["canon_depth"].shape[0])
for i in range(n):
    r = [img(inst["image"][i]), img(A["recon_image"][i]), img(A["canon_albedo"][i]), dep(A["canon_depth"][i])]
    r += [img(P["image"][i, j]) for j in range(6)]
    if Q is not None:
        r += [img(Q["image"][i, j]) for j in range(6)]
    if S is not None:
        r += [img(S["recon_image"][i]), dep(S["canon_depth"][i]), dep(S["recon_depth"][i], 0.9, 1.1)]
    rows.append(np.concatenate(r, 1))
Image.fromarray(np.concatenate(rows, 0)).resize((rows[0].shape[1] * 2, len(rows) * rows[0].shape[0] * 2), 0).save(out)
print(list(inst.keys()), A["view"][:], A["light"][:])
