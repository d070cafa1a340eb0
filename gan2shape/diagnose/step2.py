"""The step-2 bench: do the projected samples turn as step 2 asks them to?

Step 3 learns shape from step 2's projected samples only if they show the instance turned by the
amounts the pseudo-samples were rendered with. This bench measures that with the pose regressor
(``evaluate.pose``) on three kinds of images per instance, always against the requested yaw change
(pseudo.h5 'view_delta'), each change measured from the instance's own image:

- the pseudo-samples themselves: the regressor's slope on them is the *ceiling* (a render of the
  current shape turned by 20 degrees may read as 15; nothing that copies it can do better);
- the *encoder*'s projected samples (E, then G), the images step 3 learns from;
- a *free* per-sample latent offset optimised with step 2's own loss (masked L1 + discriminator
  features + lam_regular * mean(offset^2)), which says what the GAN can do from the instance's latent
  when the encoder is not in the way.

The follow ratio is slope / ceiling. Two sources of pseudo-samples: (b) a run's own (``--run``:
stage k's pseudo.h5 and projected.h5), (a) ground-truth-turned renders of the benchmark's heads
(``--heads``: the true head of each instance rendered around its true view with the method's view
distribution, on which E is trained with ``run_invert`` as configured).

It also measures the latents the instances start from: the *edit gain* (the yaw change, in degrees
per requested degree, that a +-step move along the GAN's yaw direction produces on the instance's own
latent; the direction is the regression of w on the regressor's yaw over sampled w) and how typical
the latents are in the mapping's whitened space (``projector.latent_penalties``: about 1 for a
sampled w).
"""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path

import numpy as np
import torch

from gan2shape.artifacts import read_artifact, write_artifact
from gan2shape.config import Params
from gan2shape.data.heads import render_heads, sample_heads
from gan2shape.errors import ArtifactError
from gan2shape.evaluate.pose import DEG, PoseRegressor, line_fit, load_pose_regressor, predict_pose
from gan2shape.imaging import tile_images
from gan2shape.method.chain import PROJECTED_KIND, PSEUDO_KIND
from gan2shape.method.context import make_context
from gan2shape.method.encoder import resolve_encoder_init
from gan2shape.method.instances import Instances, read_instances, resize_images
from gan2shape.method.reconstruct import stage_paths
from gan2shape.method.steps import pseudo_count, run_invert, view_distribution
from gan2shape.model.losses import feature_matching, masked_l1, offset_regulariser
from gan2shape.stylegan2.model import Discriminator, Generator
from gan2shape.stylegan2.projector import latent_penalties, w_whitening

__all__ = [
    "yaw_direction",
    "edit_gain",
    "typicality",
    "follow",
    "free_offset_projection",
    "gt_turned_pseudo",
    "run_diagnose_step2",
]

log = logging.getLogger(__name__)


def _pose_yaw_deg(pose: PoseRegressor, images: torch.Tensor) -> torch.Tensor:
    """Yaw in degrees (M,) of images (M, 3, R, R) in [-1, 1], resized to the regressor's size."""
    return predict_pose(pose, resize_images(images.float(), pose.image_size))[:, 1] * DEG


@torch.no_grad()
def yaw_direction(generator: Generator, pose: PoseRegressor, n: int = 4000, seed: int = 0, batch: int = 500) -> dict:
    """The GAN's yaw direction in W, fitted on n sampled w (z drawn on the CPU from ``seed``; random
    noise per image).

    Returns direction (D,) float32 on the generator's device: the least-squares regression of w on
    the regressor's yaw (the mean change of w per degree), and diagnostics: r2_held_out of a ridge
    readout of yaw from w (trained on 80 %, scored on the rest), yaw_std_deg of the samples, n.
    """
    device = generator.input.input.device
    rng = torch.Generator().manual_seed(seed)
    ws, yaws = [], []
    for a in range(0, n, batch):
        w = generator.get_latent(torch.randn(min(batch, n - a), generator.style_dim, generator=rng).to(device))
        img = generator.synthesis(w[:, None].expand(-1, generator.n_latent, -1), randomize_noise=True).clamp(-1, 1)
        ws.append(w.double().cpu())
        yaws.append(_pose_yaw_deg(pose, img).double().cpu())
    w, yaw = torch.cat(ws), torch.cat(yaws)
    wc, yc = w - w.mean(0), yaw - yaw.mean()
    direction = (wc * yc[:, None]).sum(0) / (yc * yc).sum().clamp_min(1e-12)
    k = int(0.8 * n)
    a = wc[:k]
    coef = torch.linalg.solve(a.T @ a + torch.eye(a.shape[1], dtype=a.dtype), a.T @ (yaw[:k] - yaw[:k].mean()))
    pred = (w[k:] - w[:k].mean(0)) @ coef + yaw[:k].mean()
    r2 = 1.0 - float(((pred - yaw[k:]) ** 2).sum() / ((yaw[k:] - yaw[k:].mean()) ** 2).sum().clamp_min(1e-12))
    return {
        "direction": direction.float().to(device),
        "r2_held_out": round(r2, 4),
        "yaw_std_deg": round(float(yaw.std()), 3),
        "n": n,
        "step_rms_per_deg": round(float(direction.pow(2).mean().sqrt()), 6),
    }


@torch.no_grad()
def edit_gain(
    generator: Generator,
    pose: PoseRegressor,
    latent: torch.Tensor,
    noise: list[torch.Tensor],
    direction: torch.Tensor,
    step_deg: float = 20.0,
    batch: int = 256,
) -> dict:
    """How far the instances' own latents turn along the GAN's yaw direction.

    latent: (N, n_latent, D) w+; noise: num_layers maps (N, 1, r, r); direction: (D,) per degree
    (``yaw_direction``). Each latent is moved by +-step_deg * direction on every layer.
    Returns gain (mean over instances of (yaw(+) - yaw(-)) / (2 step_deg)), gain_std, per_instance
    (N,) list, step_deg. A gain of 1 turns the instance as far as the GAN's samples turn on average.
    """
    n = latent.shape[0]
    gains = []
    for a in range(0, n, batch):
        lat = latent[a : a + batch]
        nz = [x[a : a + batch] for x in noise]
        step = step_deg * direction.to(lat)
        yaw = [
            _pose_yaw_deg(pose, generator.synthesis(lat + s * step, noise=nz, randomize_noise=False).clamp(-1, 1))
            for s in (1.0, -1.0)
        ]
        gains.append((yaw[0] - yaw[1]) / (2.0 * step_deg))
    g = torch.cat(gains).cpu().numpy()
    return {
        "gain": round(float(g.mean()), 4),
        "gain_std": round(float(g.std()), 4),
        "per_instance": [round(float(x), 4) for x in g],
        "step_deg": step_deg,
    }


@torch.no_grad()
def typicality(generator: Generator, latent: torch.Tensor, n: int = 10000, seed: int = 0) -> dict:
    """How typical w+ latents (N, n_latent, D) are for the mapping network: the mean whitened squared
    w (``latent_penalties``'s prior; ~1 for a sampled w) and the layers' spread around their mean
    (tie; 0 for one w repeated)."""
    mean, white = w_whitening(generator, n, seed, latent.device)
    prior, tie = latent_penalties(latent, mean, white)
    return {"prior_mean": round(float(prior.mean()), 4), "tie_mean": round(float(tie.mean()), 4)}


def follow(pose: PoseRegressor, target: torch.Tensor, images: torch.Tensor, requested_yaw_deg: torch.Tensor) -> dict:
    """How far images turn against the yaw change they were asked for.

    target: (N, 3, S, S) the instances' images; images: (N, K, 3, R, R) samples of each instance;
    requested_yaw_deg: (N, K). The measured change is yaw(sample) - yaw(target) by the regressor.
    Returns ``line_fit`` of measured on requested (slope 1: turns exactly as asked), the fit within
    heads (within: slope and r with each head's means removed) and the per-instance slopes
    (per_instance_slope, N).
    """
    n, k = images.shape[:2]
    yaw_t = _pose_yaw_deg(pose, target).cpu()
    yaw_s = _pose_yaw_deg(pose, images.reshape(n * k, *images.shape[2:])).reshape(n, k).cpu()
    measured = (yaw_s - yaw_t[:, None]).numpy()
    req = requested_yaw_deg.cpu().numpy()
    fit = line_fit(req, measured)
    # within heads: each head's own means removed, so per-head offsets of the regressor's reading do
    # not enter the fit (the pooled r mixes them in)
    within = line_fit(req - req.mean(1, keepdims=True), measured - measured.mean(1, keepdims=True))
    fit["within"] = {"slope": within["slope"], "r": within["r"]}
    fit["per_instance_slope"] = [line_fit(req[i], measured[i])["slope"] for i in range(n)]
    return fit


def free_offset_projection(
    generator: Generator,
    discriminator: Discriminator,
    inst: Instances,
    pseudo: torch.Tensor,
    mask: torch.Tensor,
    *,
    steps: int = 200,
    lr: float = 0.02,
    lam_regular: float = 0.01,
    feature_blocks: int = 3,
    chunk: int = 512,
    progress: bool = False,
) -> torch.Tensor:
    """Project pseudo-samples with a free W offset per sample under step 2's loss (no encoder).

    inst: N instances (latent, noise, image at size S); pseudo: (N, K, 3, S, S) in [-1, 1]; mask:
    (N, K, 1, S, S) in [0, 1]. Each sample's offset (D,) starts at 0 and is optimised by Adam (cosine
    lr) on masked L1 + discriminator feature matching + lam_regular * mean(offset^2), as step 2
    trains E. Samples are independent, so chunks of ``chunk`` rows give the same result as one batch.
    Returns (N, K, 3, S, S) float32 projected samples at size S.
    """
    n, k, s = pseudo.shape[0], pseudo.shape[1], pseudo.shape[-1]
    blocks = max(1, min(feature_blocks, discriminator.n_blocks - 1))
    img_all = pseudo.reshape(n * k, 3, s, s).float()
    msk_all = mask.reshape(n * k, 1, s, s).float()
    latent = inst.latent.repeat_interleave(k, 0)
    noise = [x.expand(n, *x.shape[1:]).repeat_interleave(k, 0) for x in inst.noise]
    out = torch.empty_like(img_all)

    def feats(x: torch.Tensor) -> list[torch.Tensor]:
        return discriminator.features(resize_images(x, discriminator.size), blocks)

    from tqdm.auto import tqdm

    for a in tqdm(range(0, n * k, chunk), desc="free offsets", disable=not progress, leave=False):
        sl = slice(a, min(n * k, a + chunk))
        img, msk = img_all[sl], msk_all[sl]
        lat, nz = latent[sl], [x[sl] for x in noise]
        offset = torch.zeros(img.shape[0], generator.style_dim, device=img.device, requires_grad=True)
        opt = torch.optim.Adam([offset], lr=lr)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
        with torch.no_grad():
            target_feats = feats(img * msk)

        def render() -> torch.Tensor:
            x = generator.synthesis(lat + offset[:, None], noise=nz, randomize_noise=False).clamp(-1, 1)
            return resize_images(x, s)

        for _ in range(steps):
            proj = render()
            loss = (
                masked_l1(proj, img, msk)
                + feature_matching(feats(proj * msk), target_feats, msk)
                + lam_regular * offset_regulariser(offset)
            )
            opt.zero_grad(set_to_none=True)
            loss.sum().backward()
            opt.step()
            sched.step()
        with torch.no_grad():
            out[sl] = render()
    return out.reshape(n, k, 3, s, s)


def gt_turned_pseudo(
    params: Params,
    heads_path: str | Path,
    ids: list[str],
    m: int,
    seed: int,
    image_size: int,
    device: str | torch.device = "cpu",
) -> dict[str, torch.Tensor]:
    """Pseudo-samples that turn exactly as asked: each instance's true head (``heads_path``, a 'heads'
    artifact whose ids include ``ids``) rendered m times around its true view.

    Views: the method's view distribution (``view_distribution``: ranges, view_scale), its mean
    replaced by the head's true view (as view_origin 'target' does with the predicted view); lights
    uniform over the benchmark's light ranges. Returns image (N, m, 3, S, S) in [-1, 1], mask
    (N, m, 1, S, S) {0, 1} (the head in its view), view (N, m, 6) and view_delta (N, m, 6) = view -
    true view, at the method's size S = image_size, on ``device``.
    """
    with read_artifact(heads_path, "heads", require=("view",)) as art:
        known, split = list(art.ids), art.attrs.get("split", "test")
    missing = [i for i in ids if i not in known]
    if missing:
        raise ArtifactError(
            f"{heads_path} has no head(s) {missing[:3]}: give the heads file the instances were "
            "projected from (e.g. results/bench/heads/test.h5)"
        )
    heads_cfg = params.heads
    rng = torch.Generator().manual_seed(seed)
    dist = view_distribution(params.method)
    out: dict[str, list[torch.Tensor]] = {"image": [], "mask": [], "view": [], "view_delta": []}
    ls = heads_cfg.light
    for head_id in ids:
        base = sample_heads(heads_cfg, split, known.index(head_id), 1)
        view = dist.sample(m, generator=rng) - dist.mean.float() + base.view
        u = torch.rand(m, 4, generator=rng)
        bounds = (ls.ambient, ls.diffuse, ls.dir_x, ls.dir_y)
        light = torch.stack([lo + (hi - lo) * u[:, j] for j, (lo, hi) in enumerate(bounds)], 1)
        rep = type(base)(
            **{
                f: getattr(base, f).expand(m, *getattr(base, f).shape[1:]).clone()
                for f in ("shape", "albedo", "noise", "background")
            },
            view=view,
            light=light,
        )
        with torch.no_grad():
            r = render_heads(rep.to(device), heads_cfg)
        out["image"].append(resize_images(r["image"], image_size))
        out["mask"].append(resize_images(r["mask"].float()[:, None], image_size).clamp(0, 1))
        out["view"].append(view.to(device))
        out["view_delta"].append((view - base.view).to(device))
    return {k: torch.stack(v) for k, v in out.items()}


def _sheet(path: Path, rows: list[torch.Tensor], order: torch.Tensor) -> Path:
    """A PNG of a few instances: for each, one row per image kind (rows: (n, K, 3, S, S) each), the
    columns the samples ``order`` (n, C) picks (by increasing requested yaw)."""
    columns = order.shape[1]
    tiles = []
    for kind in rows:
        for i in range(kind.shape[0]):
            pick = kind[i, order[i].to(kind.device)]
            tiles.append(((pick.float().clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).cpu().numpy())
    n = rows[0].shape[0]
    ordered = [tiles[r * n + i] for i in range(n) for r in range(len(rows))]  # instance-major
    from PIL import Image

    sheet = tile_images(list(np.concatenate(ordered)), n_cols=columns, pad=2, fill=0, scale=2, border=2)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(sheet).save(path)
    return path


def _bench_source(
    pose,
    gen,
    disc,
    inst: Instances,
    pseudo,
    mask,
    requested,
    projected,
    free_k,
    free_steps,
    lam_regular,
    blocks,
    progress,
) -> tuple[dict, torch.Tensor]:
    """ceiling / encoder / free follow fits for one source of pseudo-samples; returns (fits, free images)."""
    result = {
        "ceiling": follow(pose, inst.image, pseudo, requested),
        "encoder": follow(pose, inst.image, projected, requested),
    }
    free = None
    if free_k > 0:
        k = min(free_k, pseudo.shape[1])
        free = free_offset_projection(
            gen,
            disc,
            inst,
            pseudo[:, :k],
            mask[:, :k],
            steps=free_steps,
            lam_regular=lam_regular,
            feature_blocks=blocks,
            progress=progress,
        )
        result["free"] = follow(pose, inst.image, free, requested[:, :k])
        result["free_ceiling"] = follow(pose, inst.image, pseudo[:, :k], requested[:, :k])
    ceiling = result["ceiling"]["slope"]
    result["ratio_encoder"] = round(result["encoder"]["slope"] / ceiling, 4) if ceiling else float("nan")
    ceiling_within = result["ceiling"]["within"]["slope"]
    result["ratio_encoder_within"] = (
        round(result["encoder"]["within"]["slope"] / ceiling_within, 4) if ceiling_within else float("nan")
    )
    if free is not None:
        fc = result["free_ceiling"]["slope"]
        result["ratio_free"] = round(result["free"]["slope"] / fc, 4) if fc else float("nan")
    return result, free


def run_diagnose_step2(
    params: Params,
    params_text: str | None,
    *,
    pose_path: str | Path,
    instances_path: str | Path,
    out_dir: str | Path,
    run_dir: str | Path | None = None,
    stage: int = 1,
    heads_path: str | Path | None = None,
    gt_samples: int | None = None,
    free_samples: int = 64,
    free_steps: int = 200,
    edit_step_deg: float = 20.0,
    direction_samples: int = 4000,
    sheet_instances: int = 4,
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> dict:
    """The step-2 bench (module docstring) for one shard; writes out_dir/step2_bench.json (+ sheets).

    instances_path: the shard's instances.h5 (latents, noise, images); run_dir + stage: a
    ``reconstruct`` folder whose stage{stage}/pseudo.h5 and projected.h5 are measured (b); heads_path:
    the heads file of the instances' ids, for the ground-truth-turned renders (a), gt_samples per
    instance (None: the profile's collect_batches * batch_size), on which E is trained by
    ``run_invert`` with the params' method settings (written under out_dir/gt/). free_samples: the
    first K pseudo-samples per instance also projected with free offsets (free_steps Adam steps; 0 =
    skip). Returns the JSON-able result.
    """
    t0 = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ctx = make_context(
        params, params_text, device=device, progress=progress, nf=params.method.nf, enc_nf=params.method.enc_nf
    )
    pose, pose_report = load_pose_regressor(pose_path, ctx.device)
    gen, disc, cfg = ctx.generator, ctx.discriminator, ctx.config
    inst = read_instances(instances_path, ctx.size, ctx.device)
    encoder = resolve_encoder_init(cfg, image_size=ctx.size, enc_nf=ctx.enc_nf, style_dim=gen.style_dim)
    result: dict = {
        "instances": str(instances_path),
        "n": inst.n,
        "ids": inst.ids,
        "pose_regressor": {"path": str(pose_path), "held_out": pose_report.get("held_out")},
        "method": {
            "offset": cfg.offset,
            "f1_d": cfg.f1_d,
            "encoder_init": encoder and str(encoder),
            "view_scale": cfg.view_scale,
            "view_origin": cfg.view_origin,
        },
    }
    direction = yaw_direction(gen, pose, n=direction_samples, seed=cfg.seed)
    result["direction"] = {k: v for k, v in direction.items() if k != "direction"}
    result["edit"] = edit_gain(gen, pose, inst.latent, inst.noise, direction["direction"], edit_step_deg)
    result["typicality"] = typicality(gen, inst.latent)
    log.info(
        "step-2 bench: edit gain %.3f on %d instances (latent prior %.2f, tie %.2f)",
        result["edit"]["gain"],
        inst.n,
        result["typicality"]["prior_mean"],
        result["typicality"]["tie_mean"],
    )
    blocks = ctx.feature_blocks
    pick = slice(0, min(sheet_instances, inst.n))
    sources = []
    if run_dir is not None:
        paths = stage_paths(run_dir, stage)
        with read_artifact(paths["pseudo"], PSEUDO_KIND, require=("image", "mask", "view_delta")) as art:
            pseudo = art.tensor("image", device=ctx.device).float()
            mask = art.tensor("mask", device=ctx.device).float()
            requested = art.tensor("view_delta")[..., 1].float() * DEG
            pseudo_ids = list(art.ids)
        with read_artifact(paths["projected"], PROJECTED_KIND, require=("image",)) as art:
            projected = art.tensor("image", device=ctx.device).float()
            projected_ids = list(art.ids)
        if pseudo_ids != inst.ids or projected_ids != inst.ids:
            raise ArtifactError(
                f"{run_dir} stage {stage} holds other instances than {instances_path}: give the run's own instances.h5"
            )
        sources.append(("run", pseudo, mask, requested, projected))
    if heads_path is not None:
        m = gt_samples or pseudo_count(cfg)
        gt = gt_turned_pseudo(params, heads_path, inst.ids, m, cfg.seed + 7, ctx.size, ctx.device)
        gt_dir = out_dir / "gt"
        pseudo_path = write_artifact(
            gt_dir / "pseudo.h5",
            PSEUDO_KIND,
            {
                "image": gt["image"].half().cpu(),
                "mask": gt["mask"].half().cpu(),
                "view": gt["view"].cpu(),
                "view_delta": gt["view_delta"].cpu(),
            },
            ids=inst.ids,
            params_text=params_text,
            attrs={"stage": 1, "mode": cfg.mode, "object_mask": True, "source": "gt"},
        )
        run_invert(ctx, instances_path, pseudo_path, gt_dir / "projected.h5")
        with read_artifact(gt_dir / "projected.h5", PROJECTED_KIND) as art:
            projected = art.tensor("image", device=ctx.device).float()
        sources.append(("gt_turned", gt["image"].float(), gt["mask"], gt["view_delta"][..., 1].cpu() * DEG, projected))
    for name, pseudo, mask, requested, projected in sources:
        fits, free = _bench_source(
            pose,
            gen,
            disc,
            inst,
            pseudo,
            mask,
            requested,
            projected,
            free_samples,
            free_steps,
            cfg.lam_regular,
            blocks,
            progress,
        )
        result[name] = fits
        log.info(
            "step-2 bench (%s): follow ratio E %.3f (slope %.3f / ceiling %.3f, r %.2f)%s",
            name,
            fits["ratio_encoder"],
            fits["encoder"]["slope"],
            fits["ceiling"]["slope"],
            fits["encoder"]["r"],
            f", free {fits['ratio_free']:.3f}" if "ratio_free" in fits else "",
        )
        k = pseudo.shape[1] if free is None else free.shape[1]  # the free rows cover the first K samples
        rows = [pseudo[pick, :k], projected[pick, :k]] + ([] if free is None else [free[pick]])
        order = torch.argsort(requested[pick, :k].cpu(), dim=1)
        cols = torch.linspace(0, k - 1, min(8, k)).round().long()
        _sheet(out_dir / f"{name}_sheet.png", rows, torch.gather(order, 1, cols.expand(order.shape[0], -1)))
    result["seconds"] = round(time.perf_counter() - t0, 1)
    result = _finite(result)
    (out_dir / "step2_bench.json").write_text(json.dumps(result, indent=1) + "\n")
    return result


def _finite(x):
    """NaN and inf (a fit without spread) become None, so the file is strict JSON."""
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x
