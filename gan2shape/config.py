"""Typed, validated configuration parsed from params.yaml.

params.yaml is the one source of configuration for the CLI, Snakemake and DVC. It is parsed once
into frozen dataclasses; every key is checked (unknown keys, wrong types, out-of-range values) and
errors name the offending key with its full dotted path, e.g. ``heads.view.yaw_deg``.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping, Sequence, Union

import yaml

from gan2shape.errors import ConfigError

__all__ = [
    "ConfigError",
    "RenderConfig",
    "ViewSampling",
    "LightSampling",
    "HeadsConfig",
    "EvaluateConfig",
    "GanConfig",
    "ProjectConfig",
    "PretrainEncoderConfig",
    "SupervisedConfig",
    "Unsup3dConfig",
    "StepSchedule",
    "PriorConfig",
    "MethodConfig",
    "JobResources",
    "WorkflowConfig",
    "BenchVariant",
    "BenchSmall",
    "BenchConfig",
    "REFERENCE_PRESET",
    "Params",
    "parse_section",
    "load_params",
    "params_digest",
]


def _check(condition: bool, key: str, message: str) -> None:
    if not condition:
        raise ConfigError(key, message)


def _check_range(value: tuple[float, float], key: str, lo: float, hi: float) -> None:
    _check(
        lo <= value[0] <= value[1] <= hi,
        key,
        f"expected [low, high] with {lo} <= low <= high <= {hi}, got {list(value)}",
    )


# --------------------------------------------------------------------------------------------
# Sections
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RenderConfig:
    """The camera and depth range the method assumes (docs/METHOD.md section 1)."""

    fov_deg: float = 10.0
    min_depth: float = 0.9
    max_depth: float = 1.1
    rot_center_depth: float = 1.0

    def __post_init__(self) -> None:
        _check(0.0 < self.fov_deg < 180.0, "fov_deg", f"must be in (0, 180), got {self.fov_deg}")
        _check(self.min_depth > 0.0, "min_depth", f"must be > 0, got {self.min_depth}")
        _check(
            self.max_depth > self.min_depth,
            "max_depth",
            f"must be > min_depth ({self.min_depth}), got {self.max_depth}",
        )


@dataclass(frozen=True)
class ViewSampling:
    """Uniform ranges of the benchmark's random viewpoints (degrees; translation in camera units)."""

    yaw_deg: tuple[float, float] = (-60.0, 60.0)
    pitch_deg: tuple[float, float] = (-30.0, 30.0)
    roll_deg: tuple[float, float] = (-5.0, 5.0)
    translate_xy: float = 0.0

    def __post_init__(self) -> None:
        _check_range(self.yaw_deg, "yaw_deg", -90.0, 90.0)
        _check_range(self.pitch_deg, "pitch_deg", -90.0, 90.0)
        _check_range(self.roll_deg, "roll_deg", -180.0, 180.0)
        _check(
            0.0 <= self.translate_xy <= 0.2,
            "translate_xy",
            f"must be in [0, 0.2] camera units, got {self.translate_xy}",
        )


@dataclass(frozen=True)
class LightSampling:
    """Uniform ranges of the benchmark's random lights: s = ambient + diffuse * max(0, <n, l>),
    l = normalize([dir_x, dir_y, 1])."""

    ambient: tuple[float, float] = (0.2, 0.6)
    diffuse: tuple[float, float] = (0.3, 0.8)
    dir_x: tuple[float, float] = (-0.9, 0.9)
    dir_y: tuple[float, float] = (-0.6, 0.8)

    def __post_init__(self) -> None:
        _check_range(self.ambient, "ambient", 0.0, 2.0)
        _check_range(self.diffuse, "diffuse", 0.0, 2.0)
        _check_range(self.dir_x, "dir_x", -5.0, 5.0)
        _check_range(self.dir_y, "dir_y", -5.0, 5.0)


@dataclass(frozen=True)
class HeadsConfig:
    """The synthetic head benchmark (our ground truth). ``fov_deg`` is the benchmark's TRUE
    camera; the method's assumed camera is the ``render`` section."""

    seed: int = 0
    image_size: int = 64
    n_train: int = 20000
    n_test: int = 500
    batch_size: int = 250
    fov_deg: float = 10.0
    asymmetry: float = 0.15
    background_depth: float | None = None
    view: ViewSampling = field(default_factory=ViewSampling)
    light: LightSampling = field(default_factory=LightSampling)

    def __post_init__(self) -> None:
        _check(self.seed >= 0, "seed", f"must be >= 0, got {self.seed}")
        _check(
            self.image_size >= 16 and self.image_size & (self.image_size - 1) == 0,
            "image_size",
            f"must be a power of two >= 16 (e.g. 64 or 128), got {self.image_size}",
        )
        _check(self.n_train >= 0, "n_train", f"must be >= 0, got {self.n_train}")
        _check(self.n_test >= 0, "n_test", f"must be >= 0, got {self.n_test}")
        _check(self.n_train + self.n_test > 0, "n_train", "n_train + n_test must be > 0")
        _check(self.batch_size >= 1, "batch_size", f"must be >= 1, got {self.batch_size}")
        _check(0.0 < self.fov_deg < 90.0, "fov_deg", f"must be in (0, 90), got {self.fov_deg}")
        _check(0.0 <= self.asymmetry <= 1.0, "asymmetry", f"must be in [0, 1], got {self.asymmetry}")
        if self.background_depth is not None:
            _check(
                self.background_depth > 0.0,
                "background_depth",
                f"must be > 0 or null, got {self.background_depth}",
            )


@dataclass(frozen=True)
class EvaluateConfig:
    """Depth evaluation (docs/METHOD.md section 5)."""

    erode_pixels: int = 1
    baselines: tuple[str, ...] = ("null_depth", "average_gt_depth", "ellipsoid_prior")

    def __post_init__(self) -> None:
        _check(0 <= self.erode_pixels <= 8, "erode_pixels", f"must be in [0, 8], got {self.erode_pixels}")
        known = ("null_depth", "average_gt_depth", "ellipsoid_prior")
        for name in self.baselines:
            _check(name in known, "baselines", f"unknown baseline {name!r}; known: {list(known)}")


@dataclass(frozen=True)
class GanConfig:
    """StyleGAN2 architecture and training on an HDF5 image set (``gan2shape train-gan``).

    The architecture keys follow rosinality/stylegan2-pytorch; ``channel_max`` caps the official
    channel table (512 = the official networks, whose checkpoints keep their key/shape layout).
    """

    size: int = 64
    style_dim: int = 512
    n_mlp: int = 8
    channel_multiplier: int = 1
    channel_max: int = 128
    seed: int = 0
    batch_size: int = 128
    total_kimg: float = 2000.0
    lr: float = 0.002
    r1_gamma: float = 0.05
    r1_every: int = 16
    mixing_prob: float = 0.9
    ema_half_life_kimg: float = 10.0
    amp: Literal["none", "bf16"] = "bf16"
    compile: bool = False
    compile_mode: Literal["default", "reduce-overhead", "max-autotune-no-cudagraphs"] = "default"
    channels_last: bool = False
    flip: bool = False
    checkpoint_every_kimg: float = 50.0
    sample_every_kimg: float = 100.0

    def __post_init__(self) -> None:
        _check(
            32 <= self.size <= 1024 and self.size & (self.size - 1) == 0,
            "size",
            f"must be a power of two in [32, 1024], got {self.size}",
        )
        _check(self.style_dim >= 8, "style_dim", f"must be >= 8, got {self.style_dim}")
        _check(1 <= self.n_mlp <= 16, "n_mlp", f"must be in [1, 16], got {self.n_mlp}")
        _check(
            self.channel_multiplier in (1, 2, 4),
            "channel_multiplier",
            f"must be 1, 2 or 4, got {self.channel_multiplier}",
        )
        _check(self.channel_max >= 16, "channel_max", f"must be >= 16, got {self.channel_max}")
        _check(self.batch_size >= 2, "batch_size", f"must be >= 2, got {self.batch_size}")
        _check(self.total_kimg > 0, "total_kimg", f"must be > 0, got {self.total_kimg}")
        _check(self.lr > 0, "lr", f"must be > 0, got {self.lr}")
        _check(self.r1_gamma >= 0, "r1_gamma", f"must be >= 0, got {self.r1_gamma}")
        _check(self.r1_every >= 1, "r1_every", f"must be >= 1, got {self.r1_every}")
        _check(0 <= self.mixing_prob <= 1, "mixing_prob", f"must be in [0, 1], got {self.mixing_prob}")
        _check(self.ema_half_life_kimg > 0, "ema_half_life_kimg", "must be > 0")
        _check(self.checkpoint_every_kimg > 0, "checkpoint_every_kimg", "must be > 0")
        _check(self.sample_every_kimg > 0, "sample_every_kimg", "must be > 0")


@dataclass(frozen=True)
class ProjectConfig:
    """GAN inversion of given images (``gan2shape project``): optimise w (or w+) and noise."""

    steps: int = 500
    batch_size: int = 50
    lr: float = 0.1
    w_plus: bool = False
    latent_prior: float = 0.01  # weight of a Gaussian prior on w in the mapping's whitened space
    layer_tie: float = 0.0  # w+: weight pulling every layer's w toward their mean (0 = free w+)
    noise_regularize: float = 1e5
    noise_ramp: float = 0.75
    noise_strength: float = 0.05
    l1_weight: float = 1.0
    feature_weight: float = 1.0
    feature_blocks: int = 3  # the 4th block of a 64px D holds minibatch-stddev (mixes images)
    mean_latent_samples: int = 10000
    seed: int = 0

    def __post_init__(self) -> None:
        _check(self.steps >= 1, "steps", f"must be >= 1, got {self.steps}")
        _check(self.batch_size >= 1, "batch_size", f"must be >= 1, got {self.batch_size}")
        _check(self.lr > 0, "lr", f"must be > 0, got {self.lr}")
        _check(self.noise_regularize >= 0, "noise_regularize", "must be >= 0")
        _check(self.latent_prior >= 0, "latent_prior", f"must be >= 0, got {self.latent_prior}")
        _check(self.layer_tie >= 0, "layer_tie", f"must be >= 0, got {self.layer_tie}")
        _check(
            self.w_plus or self.layer_tie == 0,
            "layer_tie",
            "ties the layers of a w+ projection: set project.w_plus=true or layer_tie=0",
        )
        _check(0 < self.noise_ramp <= 1, "noise_ramp", f"must be in (0, 1], got {self.noise_ramp}")
        _check(self.noise_strength >= 0, "noise_strength", "must be >= 0")
        _check(self.l1_weight >= 0 and self.feature_weight >= 0, "l1_weight", "loss weights must be >= 0")
        _check(self.feature_blocks >= 1, "feature_blocks", f"must be >= 1, got {self.feature_blocks}")
        _check(self.mean_latent_samples >= 100, "mean_latent_samples", "must be >= 100")


@dataclass(frozen=True)
class PretrainEncoderConfig:
    """Pre-training of the inversion encoder E on the GAN itself (``gan2shape pretrain-encoder``).

    Pairs of GAN images G(w1), G(w2) with w1 = mapping(z1) and w2 = w1 + a (mapping(z2) - w1),
    a ~ U(mix_range), share their noise; E learns to turn the pair into the offset w2 - w1 as
    step 2 uses it (method.offset, relative encoding): lam_latent * the offset's squared error in
    units of the w spread plus lam_image * step 2's image loss (L1 + discriminator features) of
    G(w1 + offset) against G(w2).
    """

    steps: int = 6000
    batch_size: int = 32
    lr: float = 3e-4
    mix_range: tuple[float, float] = (0.0, 1.0)
    lam_latent: float = 1.0
    lam_image: float = 1.0
    held_out: int = 256
    seed: int = 0

    def __post_init__(self) -> None:
        _check(self.steps >= 1, "steps", f"must be >= 1, got {self.steps}")
        _check(self.batch_size >= 2, "batch_size", f"must be >= 2, got {self.batch_size}")
        _check(self.lr > 0, "lr", f"must be > 0, got {self.lr}")
        _check(
            0 <= self.mix_range[0] <= self.mix_range[1],
            "mix_range",
            f"must be [lo, hi] with 0 <= lo <= hi, got {list(self.mix_range)}",
        )
        _check(self.lam_latent >= 0 and self.lam_image >= 0, "lam_latent", "loss weights must be >= 0")
        _check(self.lam_latent + self.lam_image > 0, "lam_latent", "lam_latent and lam_image cannot both be 0")
        _check(self.held_out >= 2, "held_out", f"must be >= 2, got {self.held_out}")


def _check_peer_common(cfg: Any) -> None:
    """Checks shared by the peer rows' training sections (supervised, unsup3d)."""
    _check(
        cfg.image_size >= 16 and cfg.image_size & (cfg.image_size - 1) == 0,
        "image_size",
        f"must be a power of two >= 16 (the heads' image size, e.g. 64), got {cfg.image_size}",
    )
    _check(
        cfg.nf is None or (cfg.nf >= 16 and cfg.nf % 16 == 0),
        "nf",
        f"must be null or a multiple of 16 (GroupNorm groups), got {cfg.nf}",
    )
    _check(cfg.zdim >= 1, "zdim", f"must be >= 1, got {cfg.zdim}")
    _check(cfg.batch_size >= 1, "batch_size", f"must be >= 1, got {cfg.batch_size}")
    _check(cfg.steps >= 1, "steps", f"must be >= 1, got {cfg.steps}")
    _check(cfg.lr > 0, "lr", f"must be > 0, got {cfg.lr}")
    _check(cfg.weight_decay >= 0, "weight_decay", f"must be >= 0, got {cfg.weight_decay}")
    _check(cfg.seed >= 0, "seed", f"must be >= 0, got {cfg.seed}")
    _check(cfg.checkpoint_every >= 1, "checkpoint_every", f"must be >= 1 step, got {cfg.checkpoint_every}")
    _check(cfg.log_every >= 1, "log_every", f"must be >= 1 step, got {cfg.log_every}")


@dataclass(frozen=True)
class SupervisedConfig:
    """The supervised row of Table 1 (``gan2shape train-supervised``): the method's depth-net
    architecture trained on the train heads with their GT depth (gan2shape.peers.supervised).

    Loss per image: the scale-invariant log-depth error (the SIDE of the prediction, over the GT
    foreground) plus ``lam_normal`` * mean(1 - cos) between predicted and GT normals (foreground eroded
    by a pixel). ``flip``: mirror half the batch left-right (image and depth; the camera is
    symmetric). ``nf``: base channels (null: max(4096 // image_size, 16), 64 at 64 px).
    """

    image_size: int = 64
    nf: int | None = None
    zdim: int = 256
    batch_size: int = 64
    steps: int = 6000
    lr: float = 1e-4
    weight_decay: float = 5e-4
    lam_normal: float = 1.0
    flip: bool = True
    seed: int = 0
    checkpoint_every: int = 1000
    log_every: int = 100

    def __post_init__(self) -> None:
        _check_peer_common(self)
        _check(self.lam_normal >= 0, "lam_normal", f"must be >= 0, got {self.lam_normal}")


@dataclass(frozen=True)
class Unsup3dConfig:
    """Unsup3d (Wu et al., CVPR 2020) on the train heads' images alone (``gan2shape train-unsup3d``,
    gan2shape.peers.unsup3d): depth, albedo, view, light and confidence nets, canonical symmetry, the
    confidence-weighted L1 of the image and of its flip (weight ``lam_flip``); no perceptual term (no VGG
    weights offline). The camera is params.yaml's render section. ``nf``: base channels of the depth,
    albedo and confidence nets (null: max(4096 // image_size, 16), the reference's 64 at 64 px);
    ``enc_nf``: of the view and light nets (null: nf // 2, the reference's 32); ``conf_zdim``: the
    confidence net's bottleneck (reference 128). ``use_conf``: false = plain masked L1 (no confidence net).
    """

    image_size: int = 64
    nf: int | None = None
    enc_nf: int | None = None
    zdim: int = 256
    conf_zdim: int = 128
    use_conf: bool = True
    batch_size: int = 64
    steps: int = 4000
    lr: float = 1e-4
    weight_decay: float = 5e-4
    lam_flip: float = 0.5
    xyz_rotation_range_deg: float = 60.0
    xy_translation_range: float = 0.1
    z_translation_range: float = 0.0
    seed: int = 0
    checkpoint_every: int = 1000
    log_every: int = 100

    def __post_init__(self) -> None:
        _check_peer_common(self)
        _check(self.enc_nf is None or self.enc_nf >= 4, "enc_nf", f"must be null or >= 4, got {self.enc_nf}")
        _check(self.conf_zdim >= 1, "conf_zdim", f"must be >= 1, got {self.conf_zdim}")
        _check(self.lam_flip >= 0, "lam_flip", f"must be >= 0, got {self.lam_flip}")
        _check(
            0 < self.xyz_rotation_range_deg <= 180,
            "xyz_rotation_range_deg",
            f"must be in (0, 180], got {self.xyz_rotation_range_deg}",
        )
        _check(
            self.xy_translation_range >= 0 and self.z_translation_range >= 0,
            "xy_translation_range",
            "translation ranges must be >= 0",
        )


@dataclass(frozen=True)
class StepSchedule:
    """Iterations of one profile (docs/METHOD.md section 3): ``(stage 1, later stages)`` per step."""

    stages: int = 4
    prior_iters: int = 1000
    step1_iters: tuple[int, int] = (600, 200)
    step2_iters: tuple[int, int] = (600, 500)
    step3_iters: tuple[int, int] = (400, 300)
    collect_batches: int = 100
    batch_size: int = 16
    instances_per_iter: int = 0  # joint mode: instances drawn per Adam step (0 = all of them)

    def __post_init__(self) -> None:
        _check(self.instances_per_iter >= 0, "instances_per_iter", f"must be >= 0, got {self.instances_per_iter}")
        _check(1 <= self.stages <= 16, "stages", f"must be in [1, 16], got {self.stages}")
        _check(self.prior_iters >= 0, "prior_iters", f"must be >= 0, got {self.prior_iters}")
        for name in ("step1_iters", "step2_iters", "step3_iters"):
            value = getattr(self, name)
            _check(min(value) >= 0, name, f"iterations must be >= 0, got {list(value)}")
        _check(self.collect_batches >= 1, "collect_batches", f"must be >= 1, got {self.collect_batches}")
        _check(self.batch_size >= 1, "batch_size", f"must be >= 1, got {self.batch_size}")


def _default_profiles() -> dict[str, StepSchedule]:
    return {
        "quick": StepSchedule(
            stages=2,
            prior_iters=200,
            step1_iters=(60, 30),
            step2_iters=(60, 40),
            step3_iters=(60, 40),
            collect_batches=4,
            batch_size=8,
        ),
        "paper": StepSchedule(
            stages=4,
            prior_iters=1000,
            step1_iters=(600, 200),
            step2_iters=(600, 500),
            step3_iters=(400, 300),
            collect_batches=100,
            batch_size=16,
        ),
        "bench": StepSchedule(
            stages=1,
            prior_iters=1000,
            step1_iters=(500, 500),
            step2_iters=(500, 500),
            step3_iters=(200, 200),
            collect_batches=100,
            batch_size=16,
        ),
        "joint": StepSchedule(
            stages=2,
            prior_iters=500,
            step1_iters=(700, 300),
            step2_iters=(500, 300),
            step3_iters=(1500, 1000),
            collect_batches=4,
            batch_size=16,
            instances_per_iter=8,
        ),
        "tiny": StepSchedule(
            stages=2,
            prior_iters=1,
            step1_iters=(1, 1),
            step2_iters=(1, 1),
            step3_iters=(1, 1),
            collect_batches=1,
            batch_size=2,
        ),
    }


@dataclass(frozen=True)
class PriorConfig:
    """The weak shape prior (docs/METHOD.md section 3; Table 2 variants)."""

    variant: Literal["ellipsoid", "asymmetric", "shifted", "weaker", "flat"] = "ellipsoid"
    near: float = 0.965  # the reference's 0.91 is the `reference` preset's (docs/decisions.md)
    far: float = 1.02
    box_source: Literal["centered", "mask"] = "centered"
    width_frac: float = 0.6
    height_frac: float = 0.75
    raise_top_frac: float = 0.1666667
    params: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check(0 < self.near < self.far, "near", f"must satisfy 0 < near < far ({self.far}), got {self.near}")
        _check(0 < self.width_frac <= 1, "width_frac", f"must be in (0, 1], got {self.width_frac}")
        _check(0 < self.height_frac <= 1, "height_frac", f"must be in (0, 1], got {self.height_frac}")
        _check(0 <= self.raise_top_frac < 1, "raise_top_frac", f"must be in [0, 1), got {self.raise_top_frac}")


@dataclass(frozen=True)
class MethodConfig:
    """GAN2Shape reconstruction (docs/METHOD.md sections 2-3). ``profile`` picks one of ``profiles``."""

    checkpoint: str = "data/stylegan2_heads64.pt"
    image_size: int = 64
    profile: str = "quick"
    profiles: dict[str, StepSchedule] = field(default_factory=_default_profiles)
    mode: Literal["instance", "joint"] = "instance"
    seed: int = 0
    f1_d: int = 8
    offset: Literal["mapping", "linear"] = "linear"  # how E's output becomes a latent offset (latents.OffsetMap)
    encoder_init: str | None = (
        "auto"  # a pre-trained E ('encoder' artifact) for runs whose E starts fresh; see encoder_path
    )
    relative_enc: bool = True
    perceptual: Literal["discriminator", "lpips", "none"] = "none"
    perceptual_blocks: int = 3
    lam_perc: float = 0.5
    lam_smooth: float = 0.01
    lam_smooth_joint: float | None = 0.1  # lam_smooth in joint pre-training (mode joint); None: lam_smooth
    lam_regular: float = 0.01
    lam_view: float = 10.0  # step-3 view anchor (not in the reference; 0 = off), see run_step3
    lam_view_joint: float = 0.0  # the same in joint pre-training (mode joint)
    lr: float = 1e-4
    weight_decay: float = 5e-4
    rand_light: tuple[float, float, float, float, float, float, float] = (-0.9, 0.9, -0.3, 0.8, -0.1, 0.7, -0.4)
    view_scale: float = 0.3
    view_source: Literal["ranges", "heads"] = "ranges"
    view_origin: Literal["canonical", "target"] = "target"
    # what the pseudo-samples show behind the object: render (the whole image painted on the shape, the
    # reference) | target (the object over its target's background with the object filled in; needs masks)
    pseudo_background: Literal["render", "target"] = "render"
    view_yaw_deg: tuple[float, float] = (-60.0, 60.0)
    view_pitch_deg: tuple[float, float] = (-30.0, 30.0)
    view_roll_deg: tuple[float, float] = (-5.0, 5.0)
    xyz_rotation_range_deg: float = 60.0
    xy_translation_range: float = 0.1
    z_translation_range: float = 0.0
    flip3_stage1: bool = True
    flip1_stage1: bool = True
    step1_view_light: bool = False  # step 1 also trains the view and light nets (not in the reference)
    joint_encoder: bool = True  # runs started from joint pre-training (--init) start E from its E too
    prior: PriorConfig = field(default_factory=PriorConfig)
    nf: int | None = None  # base channels of the four networks; None: max(4096 // image_size, 16)
    enc_nf: int = 32  # base channels of the inversion encoder E (reference 32)

    def __post_init__(self) -> None:
        _check(self.nf is None or self.nf >= 4, "nf", f"must be null or >= 4, got {self.nf}")
        _check(self.enc_nf >= 4, "enc_nf", f"must be >= 4, got {self.enc_nf}")
        _check(
            self.image_size >= 32 and self.image_size & (self.image_size - 1) == 0,
            "image_size",
            f"must be a power of two >= 32, got {self.image_size}",
        )
        _check(
            self.profile in self.profiles,
            "profile",
            f"unknown profile {self.profile!r}; defined under method.profiles: {sorted(self.profiles)}",
        )
        _check(1 <= self.f1_d <= 8, "f1_d", f"must be in [1, 8] (mapping layers the offset passes), got {self.f1_d}")
        _check(self.perceptual_blocks >= 1, "perceptual_blocks", f"must be >= 1, got {self.perceptual_blocks}")
        for name in ("lam_perc", "lam_smooth", "lam_regular", "lam_view", "lam_view_joint", "weight_decay"):
            _check(getattr(self, name) >= 0, name, f"must be >= 0, got {getattr(self, name)}")
        _check(
            self.lam_smooth_joint is None or self.lam_smooth_joint >= 0,
            "lam_smooth_joint",
            f"must be null (= lam_smooth) or >= 0, got {self.lam_smooth_joint}",
        )
        _check(self.lr > 0, "lr", f"must be > 0, got {self.lr}")
        _check(self.view_scale > 0, "view_scale", f"must be > 0, got {self.view_scale}")
        _check(0 < self.xyz_rotation_range_deg <= 180, "xyz_rotation_range_deg", "must be in (0, 180]")

    @property
    def schedule(self) -> StepSchedule:
        """The active profile's iteration schedule."""
        return self.profiles[self.profile]

    @property
    def encoder_path(self) -> str | None:
        """The pre-trained E that encoder_init names: its path; for 'auto' the file beside the checkpoint
        made for this offset map, ``<checkpoint stem>.encoder_<offset>.h5`` (used when it exists and fits
        the run's settings, see method.encoder.resolve_encoder_init); None when encoder_init is null."""
        if self.encoder_init != "auto":
            return self.encoder_init
        ckpt = Path(self.checkpoint)
        return str(ckpt.with_name(f"{ckpt.stem}.encoder_{self.offset}.h5"))

    @property
    def view_anchor(self) -> float:
        """Step 3's view-anchor weight in this mode: lam_view_joint in joint pre-training, else lam_view."""
        return self.lam_view_joint if self.mode == "joint" else self.lam_view

    @property
    def smooth_weight(self) -> float:
        """The smoothness weight in this mode: lam_smooth_joint in joint pre-training (when set), else
        lam_smooth."""
        if self.mode == "joint" and self.lam_smooth_joint is not None:
            return self.lam_smooth_joint
        return self.lam_smooth


@dataclass(frozen=True)
class JobResources:
    """What one job of a workflow rule asks a cluster for: ``runtime`` in minutes and ``mem_mb`` of host
    memory in MB (Snakemake's standard resources; the SLURM executor passes them as sbatch -t and
    --mem). None: the ``default`` entry's value. Local runs are not limited by them."""

    runtime: int | None = None
    mem_mb: int | None = None

    def __post_init__(self) -> None:
        for name in ("runtime", "mem_mb"):
            value = getattr(self, name)
            _check(value is None or value >= 1, name, f"must be null or >= 1, got {value}")


def _default_resources() -> dict[str, JobResources]:
    return {
        "default": JobResources(runtime=60, mem_mb=16000),
        "make_heads": JobResources(runtime=30, mem_mb=8000),
        "evaluate_baselines": JobResources(runtime=30, mem_mb=8000),
        "project": JobResources(runtime=240),
    }


@dataclass(frozen=True)
class WorkflowConfig:
    """What the Snakemake main job reconstructs: ``instances`` samples of ``method.checkpoint`` or,
    when ``images`` names an HDF5 image artifact or a folder of PNG/JPG files, its first
    ``instances`` images projected into the GAN. ``profile``: the method profile of the main job
    (``auto``: paper with CUDA, quick without; checked against method.profiles in :class:`Params`).
    ``shard_size``: instances per method shard (None: one shard of all); each shard is its own chain
    of jobs, so shards run side by side. ``keep_intermediate``: keep the files that only later jobs read
    (the method's artifacts, the heads' train split); False lets Snakemake delete them (temp) once those
    jobs are done. ``resources``: per rule name (or ``default``), what a job asks a cluster for (the
    rule names are checked by the Snakefile)."""

    instances: int = 2
    seed: int = 0
    device: str = "auto"
    profile: str = "auto"
    images: str | None = None
    shard_size: int | None = None
    keep_intermediate: bool = False
    resources: dict[str, JobResources] = field(default_factory=_default_resources)

    def __post_init__(self) -> None:
        _check(
            self.shard_size is None or self.shard_size >= 1,
            "shard_size",
            f"must be null (one shard of all instances) or >= 1, got {self.shard_size}",
        )
        _check(self.instances >= 1, "instances", f"must be >= 1, got {self.instances}")
        _check(
            bool(self.images is None or self.images.strip()),
            "images",
            "must be null or the path of an HDF5 image artifact or of a folder of PNG/JPG images",
        )
        _check(self.seed >= 0, "seed", f"must be >= 0, got {self.seed}")
        _check(
            self.device == "auto" or self.device == "cpu" or self.device.startswith("cuda"),
            "device",
            f"must be auto, cpu or cuda[:N], got {self.device!r}",
        )


def _allowed(cls: type, name: str) -> tuple[str, ...]:
    """The values a Literal-typed config field accepts (one source of truth for the names)."""
    return typing.get_args(typing.get_type_hints(cls)[name])


@dataclass(frozen=True)
class BenchVariant:
    """One variant of the benchmark pipeline (dvc.yaml): how many heads each run takes and which
    rows Table 2 (``priors``) and the perceptual-loss ablation (``perceptual``) have."""

    device: str = "auto"
    n_test: int = 50
    n_joint: int = 200
    n_prior: int = 20
    priors: tuple[str, ...] = ("ellipsoid", "asymmetric", "shifted", "weaker", "flat")
    perceptual: tuple[str, ...] = ("discriminator",)
    profile: str = "bench"
    joint_profile: str = "joint"

    def __post_init__(self) -> None:
        _check(
            self.device in ("auto", "cpu") or self.device.startswith("cuda"),
            "device",
            f"must be auto, cpu or cuda[:N], got {self.device!r}",
        )
        for name in ("n_test", "n_joint", "n_prior"):
            _check(getattr(self, name) >= 1, name, f"must be >= 1, got {getattr(self, name)}")
        _check(
            self.n_prior <= self.n_test,
            "n_prior",
            f"must be <= n_test ({self.n_test}): the prior runs take the first n_prior projected test heads",
        )
        for name, known in (
            ("priors", _allowed(PriorConfig, "variant")),
            ("perceptual", _allowed(MethodConfig, "perceptual")),
        ):
            values = getattr(self, name)
            _check(len(values) >= 1, name, "must list at least one value")
            _check(len(set(values)) == len(values), name, f"lists a value twice: {list(values)}")
            for value in values:
                _check(value in known, name, f"unknown value {value!r}; known: {list(known)}")


# The CPU variant's overrides of every command: 32px heads, a tiny GAN trained in the pipeline, tiny
# networks, a few projection steps.
_SMALL_SET = (
    "heads.image_size=32",
    "heads.n_train=64",
    "heads.n_test=4",
    "gan.size=32",
    "gan.style_dim=32",
    "gan.n_mlp=2",
    "gan.channel_max=32",
    "gan.batch_size=8",
    "gan.total_kimg=0.016",
    "project.steps=5",
    "project.mean_latent_samples=100",
    "project.feature_blocks=2",
    "method.checkpoint=results/bench-small/generator.pt",
    "method.image_size=32",
    "method.f1_d=1",
    "method.nf=16",
    "method.enc_nf=16",
    "method.perceptual_blocks=2",
    "supervised.image_size=32",
    "supervised.nf=16",
    "supervised.zdim=16",
    "supervised.batch_size=4",
    "supervised.steps=2",
    "unsup3d.image_size=32",
    "unsup3d.nf=16",
    "unsup3d.zdim=16",
    "unsup3d.conf_zdim=16",
    "unsup3d.batch_size=4",
    "unsup3d.steps=2",
)


@dataclass(frozen=True)
class BenchSmall(BenchVariant):
    """The CPU variant (bench-small/dvc.yaml). ``options`` maps a gan2shape option to the values
    DVC adds to every command of the variant, e.g. {'set': ['heads.n_test=4', ...]}."""

    device: str = "cpu"
    n_test: int = 2
    n_joint: int = 2
    n_prior: int = 2
    priors: tuple[str, ...] = ("ellipsoid", "flat")
    profile: str = "tiny"
    joint_profile: str = "tiny"
    options: dict[str, tuple[str, ...]] = field(default_factory=lambda: {"set": _SMALL_SET})

    def __post_init__(self) -> None:
        super().__post_init__()
        for key, values in self.options.items():
            _check(key == "set", f"options.{key}", "only 'set' (params overrides, KEY=VALUE) is supported")
            for value in values:
                _check("=" in value, f"options.{key}", f"{value!r} is not KEY=VALUE")


@dataclass(frozen=True)
class BenchConfig(BenchVariant):
    """The benchmark of dvc.yaml (Table 1, Table 2, perceptual ablation) and its CPU variant."""

    small: BenchSmall = field(default_factory=BenchSmall)

    def variant(self, small: bool) -> BenchVariant:
        """The full benchmark's settings, or with ``small`` those of the CPU variant."""
        return self.small if small else self


# The reference code's settings (XingangPan/GAN2Shape, synface evaluation) where the defaults leave them;
# params.yaml `presets: reference:` holds the same, and docs/decisions.md the evidence for each deviation.
REFERENCE_PRESET: Mapping[str, Any] = types.MappingProxyType(
    {
        "project.w_plus": False,
        "project.latent_prior": 0.0,
        "method.perceptual": "discriminator",
        "method.lam_smooth_joint": None,
        "method.lam_view": 0.0,
        "method.view_scale": 1.2,
        "method.view_origin": "canonical",
        "method.flip1_stage1": False,
        "method.f1_d": 8,
        "method.offset": "mapping",
        "method.encoder_init": None,
        "method.prior.near": 0.91,
    }
)


@dataclass(frozen=True)
class Params:
    """The whole of params.yaml."""

    render: RenderConfig = field(default_factory=RenderConfig)
    heads: HeadsConfig = field(default_factory=HeadsConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)
    gan: GanConfig = field(default_factory=GanConfig)
    project: ProjectConfig = field(default_factory=ProjectConfig)
    pretrain_encoder: PretrainEncoderConfig = field(default_factory=PretrainEncoderConfig)
    supervised: SupervisedConfig = field(default_factory=SupervisedConfig)
    unsup3d: Unsup3dConfig = field(default_factory=Unsup3dConfig)
    method: MethodConfig = field(default_factory=MethodConfig)
    workflow: WorkflowConfig = field(default_factory=WorkflowConfig)
    bench: BenchConfig = field(default_factory=BenchConfig)
    preset: str | None = None
    presets: dict[str, dict[str, Any]] = field(default_factory=lambda: {"reference": dict(REFERENCE_PRESET)})

    def __post_init__(self) -> None:
        _check(
            self.preset is None or self.preset in self.presets,
            "preset",
            f"unknown preset {self.preset!r}; defined under presets: {sorted(self.presets)}",
        )
        profiles = sorted(self.method.profiles)
        _check(
            self.workflow.profile == "auto" or self.workflow.profile in profiles,
            "workflow.profile",
            f"unknown profile {self.workflow.profile!r}; use auto or one of method.profiles: {profiles}",
        )


# --------------------------------------------------------------------------------------------
# Generic parsing
# --------------------------------------------------------------------------------------------


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(tp: Any, value: Any, path: str) -> Any:
    if tp is Any:
        return value
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if dataclasses.is_dataclass(tp):
        return parse_section(tp, value, path)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        others = [a for a in args if a is not type(None)]
        errors = []
        for option in others:
            try:
                return _coerce(option, value, path)
            except ConfigError as exc:
                errors.append(exc.message)
        raise ConfigError(path, " or ".join(errors))
    if origin is Literal:
        if value not in args:
            raise ConfigError(path, f"must be one of {list(args)}, got {value!r}")
        return value
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(path, f"expected a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(args[0], v, f"{path}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise ConfigError(path, f"expected a list of {len(args)} values, got {list(value)}")
        return tuple(_coerce(a, v, f"{path}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(path, f"expected a mapping, got {value!r}")
        return {str(k): _coerce(args[1], v, _join(path, str(k))) for k, v in value.items()}
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(path, f"expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(path, f"expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(path, f"expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(path, f"expected a string, got {value!r}")
        return value
    raise TypeError(f"config type {_type_name(tp)} at {path} is not supported")  # programming error


def parse_section(cls: type, data: Any, path: str = "") -> Any:
    """Build the dataclass ``cls`` from a mapping, validating every key.

    Missing keys take the dataclass default. Raises :class:`ConfigError` naming the full dotted
    key for unknown keys (with a did-you-mean hint), wrong types and invalid values.
    """
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(path, f"expected a mapping of keys to values, got {data!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in data:
        if key not in fields:
            hint = difflib.get_close_matches(str(key), list(fields), n=1)
            did_you_mean = f"; did you mean {hint[0]!r}?" if hint else ""
            raise ConfigError(
                _join(path, str(key)),
                f"unknown key{did_you_mean} Allowed keys here: {sorted(fields)}",
            )
    hints = typing.get_type_hints(cls)
    kwargs = {name: _coerce(hints[name], data[name], _join(path, name)) for name in fields if name in data}
    try:
        return cls(**kwargs)
    except ConfigError as exc:
        raise ConfigError(_join(path, exc.key), exc.message) from None


def _set_dotted(tree: dict, dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    node = tree
    for key in keys[:-1]:
        child = node.setdefault(key, {})
        if not isinstance(child, dict):
            raise ConfigError(dotted, f"cannot override inside {key!r}, which is not a section")
        node = child
    node[keys[-1]] = value


def load_params(
    path: str | Path | None = "params.yaml",
    overrides: Sequence[str] = (),
) -> tuple[Params, str]:
    """Read params.yaml (or defaults when ``path`` is None) and apply ``key.sub=value`` overrides.

    Returns the typed :class:`Params` and the effective YAML text (recorded in artifacts as
    provenance). Raises FileNotFoundError / ConfigError with messages that say what to fix.
    """
    tree: dict = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(
                f"params file {path} does not exist; run from the project root or pass --params PATH"
            )
        try:
            tree = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError("", f"{path} is not valid YAML: {exc}") from None
        if not isinstance(tree, dict):
            raise ConfigError("", f"{path} must hold a mapping of sections, got {type(tree).__name__}")
    where = f" in {path}" if path is not None else ""
    if overrides:  # the file alone first, so that an error says whether the file or a --set is wrong
        try:
            parse_section(Params, tree)
        except ConfigError as exc:
            raise ConfigError(exc.key, f"{exc.message} (fix this key{where})") from None
    set_keys = []
    for item in overrides:
        key, raw = item.split("=", 1) if "=" in item else (item, None)
        key = key.strip()
        if raw is None or not key:
            raise ConfigError("", f"--set {item}: an override must look like section.key=value")
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError as exc:
            raise ConfigError(
                key, f"--set {item}: the value is not valid YAML ({str(exc).splitlines()[0]}); quote it or fix it"
            ) from None
        try:
            _set_dotted(tree, key, value)
        except ConfigError as exc:
            raise ConfigError(exc.key, f"{exc.message} (fix --set {item})") from None
        set_keys.append((key, item))
    _apply_preset(tree, {key for key, _ in set_keys})
    try:
        params = parse_section(Params, tree)
    except ConfigError as exc:
        hits = [
            item
            for key, item in set_keys
            if exc.key == key or exc.key.startswith((key + ".", key + "[")) or key.startswith(exc.key + ".")
        ]
        if hits:
            fix = f"fix --set {hits[-1]}"
        else:  # a check across keys that the overrides broke (e.g. max_depth below an overridden min_depth)
            fix = f"fix this key{where} or the --set overrides {[item for _, item in set_keys]}"
        raise ConfigError(exc.key, f"{exc.message} ({fix})") from None
    return params, yaml.safe_dump(tree, sort_keys=True)


def _apply_preset(tree: dict, given: set[str]) -> None:
    """``preset: NAME`` sets every ``presets.NAME`` key (dotted) that no --set override gave, in place.
    Without a ``presets`` section the defaults' (``reference``) apply, as for every other key."""
    name = tree.get("preset")
    if name is None:
        return
    presets = tree["presets"] if "presets" in tree else Params().presets
    presets = presets or {}
    if not isinstance(presets, Mapping) or name not in presets:
        known = sorted(presets) if isinstance(presets, Mapping) else []
        raise ConfigError("preset", f"unknown preset {name!r}; defined under presets: {known}")
    values = presets[name] or {}
    if not isinstance(values, Mapping):
        raise ConfigError(f"presets.{name}", "must map dotted keys (e.g. method.view_scale) to values")
    for key, value in values.items():
        if str(key).split(".")[0] in ("preset", "presets"):
            raise ConfigError(f"presets.{name}.{key}", "a preset cannot set presets")
        if str(key) not in given:
            _set_dotted(tree, str(key), value)


def params_digest(params_text: str) -> str:
    """A short, stable hash of the effective params text (for provenance and cache keys)."""
    return hashlib.sha256(params_text.encode()).hexdigest()[:16]
