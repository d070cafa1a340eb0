"""The steps of GAN2Shape (docs/METHOD.md section 3), each one artifact in, one artifact out.

The steps, in the order of the stage chain (chain.py: each step's artifacts in and out and the
params fields it reads): run_prior (stage 0: pre-train the depth net to the shape prior),
run_step1 (train the albedo net), run_pseudo (step 2a: re-lit, re-viewed renders), run_invert
(step 2b: train E, then collect the projected samples), run_step3 (train depth, albedo, view,
light). The context (networks, loading, keys) is method/context.py, the forward pass and the
photometric loss method/forward.py; this file is the training loop they share and the steps, in
order.

Modes. ``instance``: every instance has its own four networks (and its own encoder E), stored as
``InstanceEnsemble``s whose N copies run as one vmapped call; the per-instance losses are summed,
so each copy's gradient is its own instance's (one Adam over stacked parameters = N Adams).
``joint``: one shared set of networks sees all instances; the losses are averaged.
Either way every batch is grouped by instance: rows i*B .. i*B+B-1 belong to instance i.

Choices where docs/METHOD.md is silent (following XingangPan/GAN2Shape ``model.py``):
- step 1 and the target term of step 3 use the view and light the view/light nets predict from the
  target image (in stage 1 before any step 3 they are freshly initialised nets, whose outputs are
  small, i.e. near the canonical frontal view); no mean view/light is added (none is known here).
- E persists across stages (stage k >= 2 starts from stage k-1's encoder), as in the reference;
  the four shape networks too (each step loads the previous artifact's weights).
- step 2 trains E on a fixed pool of M = collect_batches * batch_size pseudo-samples per instance
  rendered once by step 2a (the reference draws fresh ones every iteration); collect runs that
  whole pool through E and G, so the projected samples are P = M per instance.
- the pseudo-samples' render masks travel with the projected samples and mask step 3's loss.
- flip3 (``method.flip3_stage1``): step 3 of stage 1 adds the mirrored-shape terms of the reference
  (``photo_loss(flip=True)``); its smoothness term uses the unflipped render only.
- flip1 (``method.flip1_stage1``): step 1 of stage 1 adds the same mirrored-shape term to the target
  loss; so does step 3's target term, as in the reference, whose step 3 reuses step 1's forward
  pass (flip1 on) (``stage_flips``).
- the prior's box: ``method.prior.box_source`` 'centered' (a fixed centred box) or 'mask' (each
  instance's mask bounding box, from the optional ``mask`` dataset of instances.h5).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from gan2shape.artifacts import network_links, read_artifact, write_artifact
from gan2shape.config import ConfigError, MethodConfig
from gan2shape.errors import ArtifactError
from gan2shape.method.chain import ALBEDO_KIND, PROJECTED_KIND, PSEUDO_KIND, SHAPE_KIND
from gan2shape.method.context import (
    NET_NAMES,
    STEP_SALT,
    STORE_DTYPE,
    Context,
    build_nets,
    init_seeds,
    load_nets,
    method_key,
    net_states,
    nets_from_joint,
    pretrained_encoder,
    pretrained_path,
)
from gan2shape.method.forward import photo_loss, predict, predict_view_light, with_shape
from gan2shape.method.instances import Instances, read_instance_masks, read_instances, resize_images
from gan2shape.method.latents import OffsetMap, invert_grouped, make_offset_map
from gan2shape.method.masks import canonical_mask, fill_background
from gan2shape.method.sampling import ViewDistribution, sample_lights
from gan2shape.model.decode import decode_depth, decode_light
from gan2shape.model.losses import feature_matching, masked_l1, offset_regulariser
from gan2shape.progress import track
from gan2shape.render import depth_to_normals, render_view, shade
from gan2shape.render.prior import prior_boxes, prior_variant

__all__ = [
    "stage_flips",
    "view_distribution",
    "pseudo_count",
    "run_prior",
    "run_step1",
    "run_pseudo",
    "run_invert",
    "run_step3",
]


# ----- the training loop the steps share --------------------------------------------------------


def _optimizer(ctx: Context, net: nn.Module) -> torch.optim.Optimizer:
    """Adam, lr and weight decay from the config, betas (0.9, 0.999) (docs/METHOD.md section 2)."""
    return torch.optim.Adam(
        net.parameters(), lr=ctx.config.lr, betas=(0.9, 0.999), weight_decay=ctx.config.weight_decay
    )


def _reduce(per_instance: torch.Tensor, mode: str) -> torch.Tensor:
    """(N,) per-instance losses -> scalar: sum (instance mode: independent gradients) or mean (joint)."""
    return per_instance.sum() if mode == "instance" else per_instance.mean()


def _rng(ctx: Context, step: str, stage: int) -> torch.Generator:
    """CPU generator for one step of one stage (device-independent draws)."""
    return torch.Generator().manual_seed(ctx.config.seed * 100_003 + 1009 * stage + STEP_SALT[step])


def _iters(ctx: Context, step: str, stage: int) -> int:
    sched = ctx.config.schedule
    pair = {"step1": sched.step1_iters, "step2": sched.step2_iters, "step3": sched.step3_iters}[step]
    return pair[0] if stage <= 1 else pair[1]


def _instance_rows(ctx: Context, n: int, rng: torch.Generator) -> torch.Tensor:
    """Instances of one Adam step, (K,) int64: all n in instance mode (each copy trains on its own
    instance) or in joint mode with schedule.instances_per_iter 0 (or >= n); otherwise a random
    joint minibatch of instances_per_iter (the reference's joint pre-training also visits its
    images a few at a time)."""
    k = ctx.config.schedule.instances_per_iter
    if ctx.config.mode == "instance" or k == 0 or k >= n:
        return torch.arange(n)
    return torch.randperm(n, generator=rng)[:k]


def _progress(ctx: Context, n: int, desc: str):
    return track(range(n), desc, unit="iter", bar=ctx.progress, leave=False)


def _meta(ctx: Context, step: str, stage: int, n: int, extra: dict | None = None) -> dict:
    """The attributes of ``step``'s artifact: its rerun key (``method_key``), mode, stage, sizes, seed, device."""
    return {
        "method_key": method_key(ctx, step),
        "mode": ctx.config.mode,
        "stage": stage,
        "image_size": ctx.size,
        "n": n,
        "nf": -1 if ctx.nf is None else ctx.nf,
        "enc_nf": ctx.enc_nf,
        "seed": ctx.config.seed,
        "device": str(ctx.device),
        **(extra or {}),
    }


def _train(
    ctx: Context,
    nets: dict[str, nn.Module],
    train: tuple[str, ...],
    iters: int,
    desc: str,
    loss_fn: Callable[[int], torch.Tensor],
) -> list[float]:
    """Adam steps on the networks ``train`` (others frozen); loss_fn(it) -> (N,) per-instance loss.
    Returns the per-iteration mean loss (floats)."""
    for name, net in nets.items():
        net.requires_grad_(name in train)
    opts = [_optimizer(ctx, nets[name]) for name in train]
    history = []
    for it in _progress(ctx, iters, desc):
        per = loss_fn(it)
        for o in opts:
            o.zero_grad(set_to_none=True)
        _reduce(per, ctx.config.mode).backward()
        for o in opts:
            o.step()
        history.append(float(per.detach().mean()))
    for net in nets.values():
        net.requires_grad_(False)
    return history


def stage_flips(cfg: MethodConfig, stage: int) -> tuple[bool, bool]:
    """(flip1, flip3) of stage ``stage`` (1-based): the reference's per-stage flip1_cfg / flip3_cfg
    lists, here [flip1_stage1, False, ...] and [flip3_stage1, False, ...] (synface: flip3 only).
    flip1 mirrors the target term of step 1 and of step 3; flip3 mirrors both terms of step 3."""
    return bool(cfg.flip1_stage1 and stage == 1), bool(cfg.flip3_stage1 and stage == 1)


def _check_ids(a: list[str], b: list[str], what: str) -> None:
    if list(a) != list(b):
        raise ArtifactError(
            f"{what}: instance ids differ from instances.h5 ({a[:3]}... vs {b[:3]}...): use artifacts of the same shard"
        )


# ----- stage 0: the shape prior ----------------------------------------------------------------


def run_prior(
    ctx: Context, instances_path: str | Path, out_path: str | Path, init_path: str | Path | None = None
) -> Path:
    """Stage 0: pre-train the depth net (prior_iters Adam steps, MSE) to output the shape prior.

    init_path: a joint-mode shape artifact (joint pre-training); when given, all four networks
    start from its weights (``nets_from_joint``) and the depth pre-training is skipped.
    Writes kind 'shape' with networks depth (pre-trained), albedo/view/light (fresh: their seeds in attrs
    fresh_networks, not stored) and
    arrays prior_depth (N, S, S) and canon_depth (N, S, S) (the depth net's output after training).
    The prior sits over a centred box or, with method.prior.box_source 'mask', over each instance's
    mask bounding box (instances.h5 dataset 'mask'; ConfigError when it has none).
    """
    t0 = time.perf_counter()
    cfg, pc = ctx.config, ctx.config.prior
    inst = read_instances(instances_path, ctx.size, ctx.device)
    if pc.box_source == "mask" and inst.mask is None:
        raise ConfigError(
            "method.prior.box_source",
            f"is 'mask' but {instances_path} has no 'mask' dataset: rebuild it with `gan2shape "
            "sample-instances ... --masks FILE` (an artifact with a 'mask' dataset, or a folder of "
            "<id>.png), or set method.prior.box_source=centered",
        )
    boxes = prior_boxes(
        pc.box_source,
        ctx.size,
        inst.n,
        masks=inst.mask if pc.box_source == "mask" else None,
        width_frac=pc.width_frac,
        height_frac=pc.height_frac,
        raise_top_frac=pc.raise_top_frac,
    )
    prior = prior_variant(pc.variant, boxes, ctx.size, near=pc.near, far=pc.far, **pc.params).to(ctx.device)
    if init_path is None:
        nets = build_nets(ctx, inst.n)
    else:
        with read_artifact(init_path) as art:
            nets = nets_from_joint(ctx, art, inst.n)

    rng = _rng(ctx, "prior", 0)

    def loss_fn(_: int) -> torch.Tensor:
        rows = _instance_rows(ctx, inst.n, rng).to(ctx.device)
        depth = decode_depth(nets["depth"](inst.image[rows]), ctx.camera)
        return (depth - prior[rows]).pow(2).flatten(1).mean(1)

    iters = cfg.schedule.prior_iters if init_path is None else 0
    history = _train(ctx, nets, ("depth",), iters, "prior", loss_fn)
    with torch.no_grad():
        depth = decode_depth(nets["depth"](inst.image), ctx.camera)
    # untrained seeded networks are not stored: their seeds rebuild them (context._stored)
    fresh = {k: v for k, v in init_seeds(ctx, NET_NAMES).items() if k != "depth"} if init_path is None else {}
    return write_artifact(
        out_path,
        SHAPE_KIND,
        {"prior_depth": prior.cpu(), "canon_depth": depth.cpu()},
        ids=inst.ids,
        params_text=ctx.params_text,
        networks=net_states({k: v for k, v in nets.items() if k not in fresh}),
        attrs=_meta(
            ctx,
            "prior",
            0,
            inst.n,
            {
                "loss_history": history,
                "init": str(init_path or ""),
                "fresh_networks": fresh,
                "seconds": time.perf_counter() - t0,
            },
        ),
    )


# ----- step 1: the albedo net -------------------------------------------------------------------


def run_step1(ctx: Context, instances_path: str | Path, shape_path: str | Path, out_path: str | Path) -> Path:
    """Step 1 of stage k = shape.stage + 1: train the albedo net (and, with method.step1_view_light,
    the view and light nets too; the reference trains the albedo net only), re-rendering each target
    with the current depth and the view/light its nets predict (``photo_loss``).

    Writes kind 'albedo': the four networks and canon_depth (N, S, S), canon_albedo (N, 3, S, S),
    view (N, 6) physical, light (N, 4) raw, recon_image (N, 3, S, S); attrs loss_history.
    """
    t0 = time.perf_counter()
    inst = read_instances(instances_path, ctx.size, ctx.device)
    with read_artifact(shape_path, SHAPE_KIND) as art:
        _check_ids(art.ids, inst.ids, str(shape_path))
        stage = int(art.attrs["stage"]) + 1
        nets = load_nets(ctx, art, inst.n)
        fresh = art.attrs.get("fresh_networks") or {}
    flip1, _ = stage_flips(ctx.config, stage)

    rng = _rng(ctx, "step1", stage)

    def loss_fn(_: int) -> torch.Tensor:
        image = inst.image[_instance_rows(ctx, inst.n, rng).to(ctx.device)]
        return photo_loss(ctx, predict(ctx, nets, image), image, flip=flip1)[0]

    train = ("albedo", "view", "light") if ctx.config.step1_view_light else ("albedo",)
    history = _train(ctx, nets, train, _iters(ctx, "step1", stage), f"stage {stage} step 1", loss_fn)
    with torch.no_grad():
        f = predict(ctx, nets, inst.image)
        _, rec = photo_loss(ctx, f, inst.image)
    arrays = {
        "canon_depth": f["depth"],
        "canon_albedo": f["albedo"],
        "view": f["view"],
        "light": f["light"],
        "recon_image": rec["image"],
    }
    # the networks step 1 left untouched stay in shape_path, linked (artifacts.network_links), not copied
    fresh = {k: v for k, v in fresh.items() if k not in train}
    links = network_links(shape_path, [k for k in NET_NAMES if k not in train and k not in fresh], out_path)
    return write_artifact(
        out_path,
        ALBEDO_KIND,
        {k: v.cpu() for k, v in arrays.items()},
        ids=inst.ids,
        params_text=ctx.params_text,
        networks=net_states({k: nets[k] for k in train}),
        attrs=_meta(
            ctx,
            "step1",
            stage,
            inst.n,
            {
                "loss_history": history,
                "network_links": links,
                "fresh_networks": fresh,
                "seconds": time.perf_counter() - t0,
            },
        ),
    )


# ----- step 2a: pseudo-samples ------------------------------------------------------------------


def view_distribution(cfg: MethodConfig, fitted: ViewDistribution | None = None) -> ViewDistribution:
    """The pseudo-samples' view normal: ``fitted`` (view_source 'heads') or moment-matched to the
    view_*_deg ranges, yaw spread scaled by view_scale."""
    if cfg.view_source == "heads":
        if fitted is None:
            raise ConfigError(
                "method.view_source",
                "is 'heads': pass the fitted view distribution (--view-dist, a JSON file made by "
                "`gan2shape fit-views`), or set method.view_source=ranges",
            )
        base = fitted
    else:
        base = ViewDistribution.from_ranges(cfg.view_yaw_deg, cfg.view_pitch_deg, cfg.view_roll_deg)
    return base.scale_yaw(cfg.view_scale)


def pseudo_count(cfg: MethodConfig) -> int:
    """M, pseudo-samples per instance: collect_batches * batch_size."""
    return cfg.schedule.collect_batches * cfg.schedule.batch_size


def run_pseudo(
    ctx: Context,
    albedo_path: str | Path,
    out_path: str | Path,
    views: ViewDistribution | None = None,
    instances_path: str | Path | None = None,
) -> Path:
    """Step 2a: render M pseudo-samples per instance from the current depth and albedo under random
    lights (``sample_lights`` with rand_light around each instance's light) and random views
    (``view_distribution``). With method.view_origin 'target' each sampled view's deviation from the
    distribution's mean is added to the instance's own predicted view (angles and translations
    added), so that the pseudo-samples turn the object around the pose it was seen in rather than
    around the canonical frame (the reference's choice, 'canonical'), whose far side the albedo of a
    turned target never saw.

    instances_path: the shard's instances.h5; when it holds foreground masks ('mask', from
    ``sample-instances --masks``), each pseudo-sample's mask is the object's mask in its view
    (``canonical_mask`` rendered with the sample; the reference's use_mask), else only the render's
    valid mask.
    method.pseudo_background 'render' (the reference) keeps the whole render: the image painted on
    the shape, background included, turned with it. 'target' shows the object (the rendered object
    mask) in front of its target image's background, the target's object filled in from around it
    (``fill_background``), so that E sees a turned object on a still background; it needs the
    instances' masks (ConfigError otherwise, before any work). The stored masks are the same either way.
    Writes kind 'pseudo': image (N, M, 3, S, S) in [-1, 1], mask (N, M, 1, S, S) in [0, 1] (both float16),
    view (N, M, 6) physical, view_delta (N, M, 6) = view minus the instance's predicted view (what
    step 3's view anchor compares with), light (N, M, 4) raw; attrs object_mask (bool).
    """
    t0 = time.perf_counter()
    cfg = ctx.config
    with read_artifact(albedo_path, ALBEDO_KIND, require=("canon_depth", "canon_albedo", "light", "view")) as art:
        ids, stage = list(art.ids), int(art.attrs["stage"])
        depth = art.tensor("canon_depth", device=ctx.device)
        albedo = art.tensor("canon_albedo", device=ctx.device)
        base_light = art.tensor("light", device=ctx.device)
        target_view = art.tensor("view", device=ctx.device)
    canon_mask = background = None
    if cfg.pseudo_background == "target":
        inst = None if instances_path is None else read_instances(instances_path, ctx.size, ctx.device)
        if inst is None or inst.mask is None:
            raise ConfigError(
                "method.pseudo_background",
                "is 'target', which needs the instances' foreground masks, but "
                + ("no instances.h5 was given" if inst is None else f"{instances_path} has no 'mask' dataset")
                + ": rebuild instances.h5 with `gan2shape sample-instances ... --masks FILE` (and pass it with "
                "--instances), or set method.pseudo_background=render",
            )
        _check_ids(ids, inst.ids, str(albedo_path))
        inst_mask = inst.mask
        background = fill_background(inst.image, inst_mask)
        del inst
    elif instances_path is not None:
        inst_ids, inst_mask = read_instance_masks(instances_path, ctx.size, ctx.device)
        _check_ids(ids, inst_ids, str(albedo_path))
    else:
        inst_mask = None
    if inst_mask is not None:
        canon_mask = canonical_mask(inst_mask, depth, target_view, ctx.camera)
    n, s, m = len(ids), ctx.size, pseudo_count(cfg)
    rng = _rng(ctx, "pseudo", stage)
    lights = sample_lights(m, cfg.rand_light, base_light.cpu(), generator=rng).to(ctx.device).reshape(n, m, 4)
    dist = view_distribution(cfg, views)
    view = dist.sample(n * m, generator=rng, device=ctx.device).reshape(n, m, 6)
    if cfg.view_origin == "target":
        view = view - dist.mean.to(device=ctx.device, dtype=view.dtype) + target_view[:, None]
    normals = depth_to_normals(depth, ctx.camera)
    images = torch.empty(n, m, 3, s, s, device=ctx.device)
    masks = torch.empty(n, m, 1, s, s, device=ctx.device)
    chunk = max(1, cfg.schedule.batch_size)
    with torch.no_grad():
        for c in range(0, m, chunk):
            sl = slice(c, min(m, c + chunk))
            b = sl.stop - sl.start
            lt = lights[:, sl].reshape(n * b, 4)
            ka, kd, ld = decode_light(lt)
            tex, _ = shade(albedo.repeat_interleave(b, 0), normals.repeat_interleave(b, 0), ka, kd, ld)
            if canon_mask is not None:  # the object mask rides along as a fourth texture channel
                tex = torch.cat([tex, canon_mask.repeat_interleave(b, 0)], 1)
            out = render_view(tex, depth.repeat_interleave(b, 0), view[:, sl].reshape(n * b, 6), ctx.camera)
            rendered = out.image[:, :3].clamp(-1.0, 1.0).reshape(n, b, 3, s, s)
            valid = (out.mask if canon_mask is None else out.mask * out.image[:, 3:].clamp(0.0, 1.0)).reshape(
                n, b, 1, s, s
            )
            if background is not None:  # the object over the target's still background
                rendered = valid * rendered + (1.0 - valid) * background[:, None]
            images[:, sl] = rendered
            masks[:, sl] = valid
    arrays = {
        "image": images.to(STORE_DTYPE),
        "mask": masks.to(STORE_DTYPE),
        "view": view,
        "view_delta": view - target_view[:, None],
        "light": lights,
    }
    return write_artifact(
        out_path,
        PSEUDO_KIND,
        {k: v.cpu() for k, v in arrays.items()},
        ids=ids,
        params_text=ctx.params_text,
        attrs=_meta(
            ctx,
            "pseudo",
            stage,
            n,
            {
                "albedo": str(albedo_path),
                "object_mask": canon_mask is not None,
                "background": cfg.pseudo_background,
                "seconds": time.perf_counter() - t0,
            },
        ),
    )


# ----- step 2b: the inversion encoder and the projected samples -------------------------------


def _gan_project(
    ctx: Context,
    encoder: nn.Module,
    inst: Instances,
    pseudo: torch.Tensor,
    offset_map: OffsetMap,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Invert pseudo-samples through E and G.

    pseudo: (N*B, 3, S, S) grouped by instance. Returns (projected (N*B, 3, S, S) in [-1, 1] at the
    method's size, offset (N*B, D) W-space offsets).
    """
    cfg = ctx.config
    e_target = encoder(inst.image) if cfg.relative_enc else None
    img, offset = invert_grouped(encoder, pseudo, e_target, inst.latent, inst.noise, offset_map, cfg.relative_enc)
    return resize_images(img, ctx.size), offset


def _d_features(ctx: Context, img: torch.Tensor) -> list[torch.Tensor]:
    return ctx.discriminator.features(resize_images(img, ctx.discriminator.size), ctx.feature_blocks)


def run_invert(
    ctx: Context,
    instances_path: str | Path,
    pseudo_path: str | Path,
    out_path: str | Path,
    encoder_init: str | Path | None = None,
) -> Path:
    """Step 2b: train E so that G(w_target + offset(E(pseudo) - E(target))) reproduces
    the pseudo-samples (masked L1 + discriminator feature matching + lam_regular * mean(offset^2)),
    then collect: all M pseudo-samples, in collect_batches batches, through E and G.
    E starts from the 'encoder' network of ``encoder_init`` (the previous stage's projected.h5: the
    reference keeps E across stages; or, in an instance run, a joint-mode projected.h5 of joint
    pre-training, whose shared E then starts every instance, as ``nets_from_joint``) or, when None,
    from method.encoder_init (an E pre-trained on the GAN, ``pretrained_encoder``) or, when that is
    null too, fresh and seeded. The offset E's output becomes is method.offset's (``make_offset_map``).

    Writes kind 'projected': image (N, M, 3, S, S) in [-1, 1], mask (N, M, 1, S, S) (float16; the
    pseudo-samples' masks), view_delta (N, M, 6) (the pseudo-samples', when pseudo.h5 has it),
    network 'encoder'; attrs loss_history.
    """
    t0 = time.perf_counter()
    cfg = ctx.config
    inst = read_instances(instances_path, ctx.size, ctx.device)
    with read_artifact(pseudo_path, PSEUDO_KIND, require=("image", "mask")) as art:
        _check_ids(art.ids, inst.ids, str(pseudo_path))
        stage = int(art.attrs["stage"])
        pseudo = art.tensor("image", device=ctx.device).float()
        pmask = art.tensor("mask", device=ctx.device).float()
        extra = {"view_delta": art.tensor("view_delta")} if "view_delta" in art.names else {}
    n, m, s = inst.n, pseudo.shape[1], ctx.size
    bsz = min(cfg.schedule.batch_size, m)
    rng = _rng(ctx, "invert", stage)
    if encoder_init is None and pretrained_path(ctx) is not None:
        nets = {"encoder": pretrained_encoder(ctx, n)}
    elif encoder_init is None:
        nets = build_nets(ctx, n, ("encoder",), salt=STEP_SALT["encoder"] + 1009 * stage)
    else:
        with read_artifact(encoder_init, PROJECTED_KIND) as art:
            if art.attrs.get("mode") == "joint" and cfg.mode == "instance":
                nets = nets_from_joint(ctx, art, n, ("encoder",))
            else:
                _check_ids(art.ids, inst.ids, str(encoder_init))
                nets = load_nets(ctx, art, n, ("encoder",))
    offset_map = make_offset_map(ctx.generator, cfg.offset, cfg.f1_d)

    def batch_of(rows: torch.Tensor, which: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """rows (K, B) indices into the pools of instances ``which`` (K,) (None: all N, K = N) ->
        images (K*B, 3, S, S), masks (K*B, 1, S, S)."""
        idx = rows.to(ctx.device)
        pool, pool_mask = (pseudo, pmask) if which is None or len(which) == n else (pseudo[which], pmask[which])
        img = torch.gather(pool, 1, idx[:, :, None, None, None].expand(-1, -1, 3, s, s))
        msk = torch.gather(pool_mask, 1, idx[:, :, None, None, None].expand(-1, -1, 1, s, s))
        return img.reshape(-1, 3, s, s), msk.reshape(-1, 1, s, s)

    def loss_fn(_: int) -> torch.Tensor:
        which = _instance_rows(ctx, n, rng)
        rows = torch.stack([torch.randperm(m, generator=rng)[:bsz] for _ in range(len(which))])
        which = which.to(ctx.device)
        img, msk = batch_of(rows, which)
        proj, offset = _gan_project(ctx, nets["encoder"], inst.subset(which), img, offset_map)
        with torch.no_grad():
            target_feats = _d_features(ctx, img * msk)
        per = (
            masked_l1(proj, img, msk)
            + feature_matching(_d_features(ctx, proj * msk), target_feats, msk)
            + cfg.lam_regular * offset_regulariser(offset)
        )
        return per.reshape(len(which), bsz).mean(1)

    history = _train(ctx, nets, ("encoder",), _iters(ctx, "step2", stage), f"stage {stage} step 2", loss_fn)
    projected = torch.empty_like(pseudo)
    n_batches = min(cfg.schedule.collect_batches, m)
    edges = [round(i * m / n_batches) for i in range(n_batches + 1)]
    with torch.no_grad():
        for a, b in zip(edges[:-1], edges[1:]):
            img, _ = batch_of(torch.arange(a, b).expand(n, -1))
            proj, _ = _gan_project(ctx, nets["encoder"], inst, img, offset_map)
            projected[:, a:b] = proj.reshape(n, b - a, 3, s, s)
    return write_artifact(
        out_path,
        PROJECTED_KIND,
        {"image": projected.to("cpu", STORE_DTYPE), "mask": pmask.to("cpu", STORE_DTYPE), **extra},
        ids=inst.ids,
        params_text=ctx.params_text,
        networks=net_states(nets),
        attrs=_meta(
            ctx,
            "invert",
            stage,
            n,
            {"loss_history": history, "feature_blocks": ctx.feature_blocks, "seconds": time.perf_counter() - t0},
        ),
    )


# ----- step 3: depth, albedo, view, light ---------------------------------------------------------


def run_step3(
    ctx: Context, instances_path: str | Path, albedo_path: str | Path, projected_path: str | Path, out_path: str | Path
) -> Path:
    """Step 3: train the depth, albedo, view and light nets (not E) on the step-1 loss of the target
    plus, on a batch of B projected samples per instance, the masked L1 + lam_perc * perceptual
    reconstruction of each sample from the instance's shared depth/albedo (predicted from the target)
    with the view/light predicted from the sample itself.
    With a view anchor (``MethodConfig.view_anchor``: method.lam_view, or lam_view_joint in joint
    mode; not in the reference) each sample's loss also has that weight times the squared error
    (radians^2, summed over pitch, yaw, roll) between its predicted rotation minus its target's and
    the rotation offset its pseudo-sample was rendered with (projected.h5 'view_delta'):
    the photometric terms alone fix only the product of relief and rotation (a head twice as deep
    turned half as far re-renders about the same), and the anchor ties the rotation scale to the
    pseudo-samples' views. Where the projected samples do not follow those views (the shipped
    generator's barely do: experiments/method_accuracy/results/bench_h200_anchor), it mostly makes the depth shallower.

    Writes kind 'shape': the four networks and canon_depth (N, S, S), canon_albedo (N, 3, S, S),
    view (N, 6) physical, light (N, 4) raw, recon_depth (N, S, S) (depth seen in the input view),
    recon_mask (N, S, S) in {0, 1}, recon_image (N, 3, S, S); attrs loss_history.
    """
    t0 = time.perf_counter()
    cfg = ctx.config
    inst = read_instances(instances_path, ctx.size, ctx.device)
    with read_artifact(albedo_path, ALBEDO_KIND) as art:
        _check_ids(art.ids, inst.ids, str(albedo_path))
        stage = int(art.attrs["stage"])
        nets = load_nets(ctx, art, inst.n)
    with read_artifact(projected_path, PROJECTED_KIND, require=("image", "mask")) as art:
        _check_ids(art.ids, inst.ids, str(projected_path))
        proj = art.tensor("image", device=ctx.device).float()
        pmask = art.tensor("mask", device=ctx.device).float()
        key = "method.lam_view_joint" if cfg.mode == "joint" else "method.lam_view"
        if cfg.view_anchor > 0 and "view_delta" not in art.names:
            raise ConfigError(
                key,
                f"is {cfg.view_anchor} but {projected_path} has no 'view_delta' (written by an "
                f"older run_pseudo / run_invert): rerun steps 2a and 2b, or set {key}=0",
            )
        pdelta = art.tensor("view_delta", device=ctx.device).float() if cfg.view_anchor > 0 else None
    n, p, s = inst.n, proj.shape[1], ctx.size
    bsz = min(cfg.schedule.batch_size, p)
    rng = _rng(ctx, "step3", stage)
    flip1, flip = stage_flips(cfg, stage)  # the synface evaluation's flip3 = [True, False, ...]

    def loss_fn(_: int) -> torch.Tensor:
        which = _instance_rows(ctx, n, rng)
        rows = torch.stack([torch.randperm(p, generator=rng)[:bsz] for _ in range(len(which))]).to(ctx.device)
        which = which.to(ctx.device)
        image = inst.image[which]
        f_target = predict(ctx, nets, image)
        target_loss, _ = photo_loss(ctx, f_target, image, flip=flip or flip1)
        pool, pool_mask = (proj, pmask) if len(which) == n else (proj[which], pmask[which])  # no copy of all
        img = torch.gather(pool, 1, rows[:, :, None, None, None].expand(-1, -1, 3, s, s)).reshape(-1, 3, s, s)
        msk = torch.gather(pool_mask, 1, rows[:, :, None, None, None].expand(-1, -1, 1, s, s)).reshape(-1, 1, s, s)
        f = with_shape(f_target, predict_view_light(ctx, nets, img), bsz)
        sample_loss, _ = photo_loss(ctx, f, img, mask=msk, smooth=False, flip=flip)
        if pdelta is not None:
            pool_delta = pdelta if len(which) == n else pdelta[which]
            delta = torch.gather(pool_delta, 1, rows[:, :, None].expand(-1, -1, 6)).reshape(-1, 6)
            rel = f["view"][:, :3] - f_target["view"][:, :3].repeat_interleave(bsz, 0)
            sample_loss = sample_loss + cfg.view_anchor * (rel - delta[:, :3]).pow(2).sum(1)
        return target_loss + sample_loss.reshape(len(which), bsz).mean(1)

    history = _train(ctx, nets, NET_NAMES, _iters(ctx, "step3", stage), f"stage {stage} step 3", loss_fn)
    with torch.no_grad():
        f = predict(ctx, nets, inst.image)
        _, rec = photo_loss(ctx, f, inst.image)
    arrays = {
        "canon_depth": f["depth"],
        "canon_albedo": f["albedo"],
        "view": f["view"],
        "light": f["light"],
        "recon_depth": rec["recon_depth"],
        "recon_mask": rec["mask"][:, 0],
        "recon_image": rec["image"],
    }
    return write_artifact(
        out_path,
        SHAPE_KIND,
        {k: v.cpu() for k, v in arrays.items()},
        ids=inst.ids,
        params_text=ctx.params_text,
        networks=net_states(nets),
        attrs=_meta(ctx, "step3", stage, n, {"loss_history": history, "seconds": time.perf_counter() - t0}),
    )
