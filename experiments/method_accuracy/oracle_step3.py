"""Oracle probe of step 3 (issue 4 investigation; see experiments/method_accuracy/results/method_probe/README.md).

Question: is the failure to beat the baselines in step 3 (networks, renderer conventions, losses) or
in step 2 (the GAN's projected samples)? Here step 2 is replaced by ground truth: each test head's
"projected samples" are the same head (shape, albedo, skin, background) rendered by the benchmark
under other views and/or lights. The targets are the test images themselves. Then the real
prior -> step 1 -> step 3 of the bench profile run, and the result is scored like the method's.

Sample sources (--samples, repeatable):
  oracle   new view and new light per sample (uniform over the benchmark's ranges)
  relight  the target's own view, new light (what our projected samples look like today)
  views    new view, the target's own light
  copies   the target itself repeated (step 3 with no extra information)

Joint pre-training on oracle data (--joint J): the method's joint mode (profile --joint-profile)
runs over train heads 0..J-1 with `oracle` samples (--joint-p per head, all its stages), and the
instance runs of the test heads start from its networks (as the benchmark's Table 1 protocol does).

Diagnostics besides the benchmark score: `gt_view` scores the predicted canonical depth rendered
from the GT view (the target's view error removed; meaningful when the canonical frame is the
symmetric one), `target_view_abs_err_deg` the predicted target view against the GT one.

Usage (GPU machine, after `gan2shape make-heads --out W/heads`):
  python3 experiments/method_accuracy/oracle_step3.py --heads W/heads --n 20 --samples oracle --samples relight \
      --out W/oracle --device cuda [--set method.lam_smooth=0.1 ...] [--joint 100]
Prints one JSON line per source: SIDE / MAD of ours and of the baselines on the same heads.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import time
from pathlib import Path

import torch

from gan2shape.artifacts import read_artifact, write_artifact
from gan2shape.config import load_params
from gan2shape.data.heads import HeadSample, load_heads, render_heads, sample_heads
from gan2shape.evaluate.run import run_evaluate
from gan2shape.method.chain import PROJECTED_KIND, SHAPE_KIND
from gan2shape.method.context import make_context
from gan2shape.method.instances import Instances, write_instances
from gan2shape.method.steps import run_prior, run_step1, run_step3


def _uniform(n: int, bounds, gen: torch.Generator) -> torch.Tensor:
    return bounds[0] + (bounds[1] - bounds[0]) * torch.rand(n, generator=gen)


def repeated_heads(heads_cfg, split: str, n: int, p: int) -> dict[str, torch.Tensor]:
    """HeadSample fields of heads 0..n-1 of ``split``, each repeated p times (rows grouped by head)."""
    base = sample_heads(heads_cfg, split, 0, n)
    return {f.name: getattr(base, f.name).repeat_interleave(p, 0) for f in dataclasses.fields(base)}


def random_views(view: torch.Tensor, heads_cfg, gen: torch.Generator) -> torch.Tensor:
    """(M, 6) views with angles drawn uniformly over the benchmark's ranges, translations of ``view`` kept."""
    m, vs = view.shape[0], heads_cfg.view
    ang = torch.stack(
        [_uniform(m, vs.pitch_deg, gen), _uniform(m, vs.yaw_deg, gen), _uniform(m, vs.roll_deg, gen)], 1
    ) * (math.pi / 180.0)
    return torch.cat([ang, view[:, 3:]], 1)


def random_lights(m: int, heads_cfg, gen: torch.Generator) -> torch.Tensor:
    """(M, 4) lights drawn uniformly over the benchmark's ranges."""
    ls = heads_cfg.light
    return torch.stack(
        [
            _uniform(m, ls.ambient, gen),
            _uniform(m, ls.diffuse, gen),
            _uniform(m, ls.dir_x, gen),
            _uniform(m, ls.dir_y, gen),
        ],
        1,
    )


def render_grouped(
    fields: dict[str, torch.Tensor], heads_cfg, n: int, p: int, device: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """Render n*p heads (HeadSample fields, grouped by head) in chunks of 500: images (n, p, 3, S, S) in
    [-1, 1], masks (n, p, 1, S, S) float {0, 1}."""
    sample = HeadSample(**fields).to(device)
    images, masks = [], []
    with torch.no_grad():
        for a in range(0, n * p, 500):
            part = HeadSample(**{k: v[a : a + 500] for k, v in dataclasses.asdict(sample).items()})
            r = render_heads(part, heads_cfg)
            images.append(r["image"])
            masks.append(r["mask"].float()[:, None])
    s = heads_cfg.image_size
    return torch.cat(images).reshape(n, p, 3, s, s), torch.cat(masks).reshape(n, p, 1, s, s)


def oracle_samples(
    heads_cfg, n: int, p: int, source: str, seed: int, device: str, split: str = "test"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Heads 0..n-1 of ``split``, each rendered p times: images (n, p, 3, S, S) in [-1, 1], masks (n, p, 1, S, S)."""
    rep = repeated_heads(heads_cfg, split, n, p)
    gen = torch.Generator().manual_seed(seed)
    if source in ("oracle", "views"):
        rep["view"] = random_views(rep["view"], heads_cfg, gen)
    if source in ("oracle", "relight"):
        rep["light"] = random_lights(n * p, heads_cfg, gen)
    return render_grouped(rep, heads_cfg, n, p, device)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    ap.add_argument("--heads", required=True, help="folder with test.h5 and train.h5 (gan2shape make-heads)")
    ap.add_argument("--n", type=int, default=20)
    ap.add_argument("--p", type=int, default=0, help="samples per head (0: collect_batches * batch_size)")
    ap.add_argument("--samples", action="append", default=None)
    ap.add_argument("--out", required=True)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--joint", type=int, default=0, help="joint pre-training over this many train heads (0: none)")
    ap.add_argument("--joint-p", type=int, default=128, help="oracle samples per train head")
    ap.add_argument("--joint-profile", default="joint")
    ap.add_argument(
        "--joint-only",
        action="store_true",
        help="stop after the joint pre-training (its networks can --init real instance runs)",
    )
    args = ap.parse_args()
    overrides = ["method.profile=bench", *args.overrides]
    params, text = load_params(Path(args.params), tuple(overrides))
    ctx = make_context(
        params, text, device=args.device, progress=False, nf=params.method.nf, enc_nf=params.method.enc_nf
    )
    if params.heads.image_size != ctx.size:
        raise SystemExit(f"heads.image_size {params.heads.image_size} != method.image_size {ctx.size}")
    sched = params.method.schedule
    p = args.p or sched.collect_batches * sched.batch_size
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    heads = Path(args.heads)
    test = load_heads(heads, "test", limit=args.n)
    g = ctx.generator
    ids = [f"test-{i:06d}" for i in range(args.n)]
    # The latents are not read by the prior, step 1 or step 3 (only by step 2, replaced here).
    inst = Instances(
        ids,
        test["image"],
        torch.zeros(args.n, g.n_latent, g.style_dim),
        [torch.zeros(1, 1, *getattr(g.noises, f"noise_{i}").shape[-2:]) for i in range(g.num_layers)],
    )
    inst_path = write_instances(out / "instances.h5", inst, params_text=text)
    t0 = time.perf_counter()
    init = None
    if args.joint:
        init = joint_pretrain(args, out, g)
        t0j = time.perf_counter() - t0
        print(
            json.dumps(
                {
                    "joint": args.joint,
                    "joint_p": args.joint_p,
                    "profile": args.joint_profile,
                    "seconds": round(t0j, 1),
                    "shape": str(init),
                }
            ),
            flush=True,
        )
        if args.joint_only:
            return
    run_prior(ctx, inst_path, out / "prior.h5", init_path=init)
    run_step1(ctx, inst_path, out / "prior.h5", out / "albedo.h5")
    t_shared = time.perf_counter() - t0
    for source in args.samples or ["oracle"]:
        t1 = time.perf_counter()
        img, msk = oracle_samples(params.heads, args.n, p, source, seed=params.method.seed, device=args.device)
        if source == "copies":
            img = test["image"].to(args.device)[:, None].expand(-1, p, -1, -1, -1).contiguous()
            msk = torch.ones_like(img[:, :, :1])
        proj = write_artifact(
            out / f"projected_{source}.h5",
            PROJECTED_KIND,
            {"image": img.cpu(), "mask": msk.cpu()},
            ids=ids,
            params_text=text,
            attrs={"stage": 1, "source": source},
        )
        shape = run_step3(ctx, inst_path, out / "albedo.h5", proj, out / f"shape_{source}.h5")
        t_step3 = time.perf_counter() - t1
        with read_artifact(shape, SHAPE_KIND) as art:
            view = art.tensor("view")
            recon_depth, recon_mask = art.tensor("recon_depth"), art.tensor("recon_mask")
        empty = [ids[i] for i in range(args.n) if float(recon_mask[i].sum()) == 0]
        pred = shape
        if empty:  # score the depth where the render is empty too, so that one bad view does not stop the probe
            pred = write_artifact(out / f"pred_{source}.h5", "prediction", {"depth": recon_depth}, ids=ids)
        m = run_evaluate(
            heads / "test.h5", pred, out / f"eval_{source}", train_path=heads / "train.h5", config=params.evaluate
        )
        with read_artifact(shape, SHAPE_KIND) as art:
            canon = art.tensor("canon_depth")
        gt_view = gt_view_scores(test, canon, ctx.camera)
        rows = {
            k: {"side": round(v["side_x1e2_mean"], 3), "mad": round(v["mad_mean"], 2)} for k, v in m["rows"].items()
        }
        deg = 180.0 / math.pi
        view_err = ((view[:, :3] - test["view"][:, :3]) * deg).abs().mean(0)
        print(
            json.dumps(
                {
                    "source": source,
                    "n": args.n,
                    "p": p,
                    "overrides": args.overrides,
                    "seconds": {"prior+step1": round(t_shared, 1), "step3": round(t_step3, 1)},
                    "rows": rows,
                    "gt_view": gt_view,
                    "empty_render": empty,
                    "target_view_abs_err_deg": [round(float(x), 1) for x in view_err],
                    "target_view_mean_abs_deg": [round(float(x), 1) for x in (view[:, :3] * deg).abs().mean(0)],
                }
            ),
            flush=True,
        )


def direct_scores(heads: dict, depth: torch.Tensor, valid: torch.Tensor, camera) -> dict:
    """SIDE x1e2 / MAD of input-view depth (N, S, S) with its valid mask against the heads' GT."""
    from gan2shape.evaluate.metrics import evaluation_mask, mad, side

    gt = heads["depth"]
    m = evaluation_mask(gt, valid)
    keep = m.flatten(1).sum(1) > 0
    return {
        "side": round(float(side(depth[keep], gt[keep], m[keep]).mean()) * 100, 3),
        "mad": round(float(mad(depth[keep], gt[keep], m[keep], camera).mean()), 2),
        "n": int(keep.sum()),
    }


def gt_view_scores(heads: dict, canon: torch.Tensor, camera) -> dict:
    """direct_scores of the predicted canonical depth (N, S, S) rendered from the GT views."""
    from gan2shape.render import render_view

    r = render_view(torch.zeros(canon.shape[0], 3, *canon.shape[1:]), canon, heads["view"], camera)
    return direct_scores(heads, r.depth, r.mask[:, 0], camera)


def joint_pretrain(args, out: Path, g) -> Path:
    """The method's joint mode over train heads 0..J-1 with oracle samples; returns its last shape artifact."""
    params, text = load_params(
        Path(args.params), ("method.mode=joint", f"method.profile={args.joint_profile}", *args.overrides)
    )
    ctx = make_context(
        params, text, device=args.device, progress=False, nf=params.method.nf, enc_nf=params.method.enc_nf
    )
    heads = Path(args.heads)
    train = load_heads(heads, "train", limit=args.joint)
    j = train["image"].shape[0]
    if j < args.joint:
        raise SystemExit(f"{heads}/train.h5 has {j} heads, --joint asks for {args.joint}")
    ids = [f"train-{i:06d}" for i in range(j)]
    inst = Instances(
        ids,
        train["image"],
        torch.zeros(j, g.n_latent, g.style_dim),
        [torch.zeros(1, 1, *getattr(g.noises, f"noise_{i}").shape[-2:]) for i in range(g.num_layers)],
    )
    root = out / "joint"
    root.mkdir(parents=True, exist_ok=True)
    inst_path = write_instances(root / "instances.h5", inst, params_text=text)
    img, msk = oracle_samples(
        params.heads, j, args.joint_p, "oracle", seed=params.method.seed + 1, device="cpu", split="train"
    )
    proj = write_artifact(
        root / "projected.h5",
        PROJECTED_KIND,
        {"image": img, "mask": msk},
        ids=ids,
        params_text=text,
        attrs={"stage": 1, "source": "oracle"},
    )
    del img, msk
    shape = run_prior(ctx, inst_path, root / "prior.h5")
    for stage in range(1, params.method.schedule.stages + 1):
        albedo = run_step1(ctx, inst_path, shape, root / f"albedo{stage}.h5")
        shape = run_step3(ctx, inst_path, albedo, proj, root / f"shape{stage}.h5")
        with read_artifact(shape, SHAPE_KIND) as art:
            canon, recon, valid = art.tensor("canon_depth"), art.tensor("recon_depth"), art.tensor("recon_mask")
        print(
            json.dumps(
                {
                    "joint_stage": stage,
                    "train_recon": direct_scores(train, recon, valid, ctx.camera),
                    "train_gt_view": gt_view_scores(train, canon, ctx.camera),
                }
            ),
            flush=True,
        )
    return shape


if __name__ == "__main__":
    main()
