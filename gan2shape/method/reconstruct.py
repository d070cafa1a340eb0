"""The K-stage loop of GAN2Shape over one shard, resuming from the first missing artifact.

Layout under the shard's output folder: the stage chain of chain.py (``STEPS``)::

    instances.h5                     (given; ``gan2shape sample-instances``)
    stage0/shape.h5                  (prior)
    stage{k}/albedo.h5, pseudo.h5, projected.h5, shape.h5   for k = 1..K

A step is skipped when its artifact exists and validates (complete, right kind, same instance
ids, same stage, same ``method_key``: made with the same values of the params fields that step
reads, ``chain.step_key``); otherwise it and every
later step run again (a later artifact made from an older input would be stale, so everything
after the first rerun step is recomputed).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

from gan2shape.artifacts import ArtifactError, read_artifact
from gan2shape.config import ConfigError
from gan2shape.method.chain import PROJECTED_KIND, STEPS
from gan2shape.method.context import Context, method_key
from gan2shape.method.instances import KIND as INSTANCES_KIND
from gan2shape.method.sampling import ViewDistribution
from gan2shape.method.steps import run_invert, run_prior, run_pseudo, run_step1, run_step3

__all__ = ["stage_paths", "artifact_valid", "joint_encoder_path", "run_reconstruct"]

log = logging.getLogger(__name__)


def stage_paths(out_dir: str | Path, stage: int) -> dict[str, Path]:
    """Artifact paths of one stage (the chain's outputs): {'shape'} for stage 0, else
    albedo/pseudo/projected/shape."""
    steps = [s for s in STEPS.values() if (s.name == "prior") == (stage == 0)]
    return {Path(s.output).stem: Path(out_dir) / s.path(stage) for s in steps}


def artifact_valid(path: Path, kind: str, ids: list[str], stage: int | None = None, key: str | None = None) -> bool:
    """True when ``path`` is a complete artifact of ``kind`` for these instance ids (and stage, and
    rerun key ``key``: ``method_key``, i.e. made with the same values of the params the step reads)."""
    if not path.exists():
        return False
    try:
        with read_artifact(path, kind) as art:
            ok = list(art.ids) == list(ids) and (stage is None or int(art.attrs.get("stage", -1)) == stage)
            same = key is None or art.attrs.get("method_key") == key
    except ArtifactError as exc:
        log.warning("%s is not usable (%s); rebuilding it", path, exc)
        return False
    if not ok:
        log.warning("%s belongs to other instances or another stage; rebuilding it", path)
    elif not same:
        log.warning("%s was made with other method params; rebuilding it", path)
    return ok and same


def joint_encoder_path(init_path: str | Path) -> Path:
    """The joint run's inversion encoder that goes with a joint-mode ``init_path`` (stage{k}/shape.h5):
    the projected.h5 of the same stage. Raises ConfigError (method.joint_encoder), naming the fix,
    when it is missing or is not a joint-mode 'projected' artifact with an 'encoder' network."""
    path = Path(init_path).with_name("projected.h5")
    fix = (
        "keep the joint run's projected.h5 beside the --init shape.h5, or set method.joint_encoder=false "
        "(E then starts fresh)"
    )
    try:
        with read_artifact(path, PROJECTED_KIND) as art:
            ok = art.attrs.get("mode") == "joint" and "encoder" in art.network_names
    except (ArtifactError, FileNotFoundError) as exc:
        raise ConfigError("method.joint_encoder", f"is true but {path} is not usable ({exc}): {fix}") from None
    if not ok:
        raise ConfigError("method.joint_encoder", f"is true but {path} holds no joint-mode 'encoder' network: {fix}")
    return path


def run_reconstruct(
    ctx: Context,
    instances_path: str | Path,
    out_dir: str | Path,
    views: ViewDistribution | None = None,
    init_path: str | Path | None = None,
) -> dict:
    """Run (or resume) all stages of one shard.

    ctx: the method context (``make_context``); instances_path: kind 'instances'; out_dir: the
    shard's output folder; views: the fitted view distribution when method.view_source is 'heads';
    init_path: a joint-mode shape artifact whose networks initialise every instance (``run_prior``);
    with method.joint_encoder, in instance mode, also the inversion encoder of stage 1
    (``joint_encoder_path``).
    Returns a summary: final shape path, stages, the steps that ran and the ones skipped, seconds.
    """
    t0 = time.perf_counter()
    out_dir = Path(out_dir)
    first_encoder = None
    if init_path is not None and ctx.config.joint_encoder and ctx.config.mode == "instance":
        first_encoder = joint_encoder_path(init_path)  # checked before any work
    with read_artifact(instances_path, INSTANCES_KIND) as art:
        ids = list(art.ids)
    stages = ctx.config.schedule.stages
    ran: list[str] = []
    skipped: list[str] = []
    dirty = False  # once a step reruns, every later one must too

    def step(name: str, path: Path, stage: int, fn: Callable[[], Path]) -> None:
        nonlocal dirty
        label = f"stage{stage}/{path.name}"
        if not dirty and artifact_valid(path, STEPS[name].kind, ids, stage, method_key(ctx, name)):
            skipped.append(label)
            return
        dirty = True
        log.info("running %s -> %s", name, path)
        fn()
        ran.append(label)

    p0 = stage_paths(out_dir, 0)["shape"]
    step("prior", p0, 0, lambda: run_prior(ctx, instances_path, p0, init_path=init_path))
    prev = p0
    for k in range(1, stages + 1):
        p = stage_paths(out_dir, k)
        step("step1", p["albedo"], k, lambda prev=prev, p=p: run_step1(ctx, instances_path, prev, p["albedo"]))
        step(
            "pseudo",
            p["pseudo"],
            k,
            lambda p=p: run_pseudo(ctx, p["albedo"], p["pseudo"], views, instances_path=instances_path),
        )
        enc = stage_paths(out_dir, k - 1)["projected"] if k > 1 else first_encoder
        step(
            "invert",
            p["projected"],
            k,
            lambda p=p, enc=enc: run_invert(ctx, instances_path, p["pseudo"], p["projected"], encoder_init=enc),
        )
        step(
            "step3", p["shape"], k, lambda p=p: run_step3(ctx, instances_path, p["albedo"], p["projected"], p["shape"])
        )
        prev = p["shape"]
    return {
        "shape": str(prev),
        "stages": stages,
        "ran": ran,
        "skipped": skipped,
        "seconds": round(time.perf_counter() - t0, 2),
    }
