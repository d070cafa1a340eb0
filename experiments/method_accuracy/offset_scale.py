"""How large is step 2's latent offset for an encoder output of a given size? (issue 4 investigation)

offset = tail(h0 + e) - tail(h0) (gan2shape/method/latents.py). With F1_d = n_mlp (synface's 8) the tail
starts with PixelNorm and h0 = 0, so the offset does not shrink with e; with F1_d < n_mlp it does.
Usage: python3 experiments/method_accuracy/offset_scale.py [CHECKPOINT]   (CPU, seconds)
Prints the RMS of the offset for e ~ N(0, s^2 I), s = 1e-3, 0.1, 1, per F1_d, beside the RMS spread of
the GAN's own w (w of z ~ N(0, I) about their mean).
"""

import sys

import torch

from gan2shape.method.latents import center_hidden, latent_offset
from gan2shape.stylegan2.checkpoint import load_checkpoint

g = load_checkpoint(sys.argv[1] if len(sys.argv) > 1 else "data/stylegan2_heads64.pt", device="cpu").g_ema.eval()
gen = torch.Generator().manual_seed(0)
with torch.no_grad():
    w = g.get_latent(torch.randn(2000, g.style_dim, generator=gen))
    print(f"RMS of w about its mean (2000 samples): {float((w - w.mean(0)).pow(2).mean().sqrt()):.3f}")
    for f1_d in (g.n_mlp, 2):
        h0 = center_hidden(g, f1_d)
        for s in (1e-3, 0.1, 1.0):
            e = torch.randn(100, g.style_dim, generator=gen) * s
            off = latent_offset(e, torch.zeros(1, g.style_dim), h0, g, f1_d, relative=True)
            print(f"F1_d {f1_d}: |e| scale {s:g} -> offset RMS {float(off.pow(2).mean().sqrt()):.4f}")
