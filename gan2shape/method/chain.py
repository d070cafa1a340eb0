"""The stage chain of one shard, described once: each step's artifacts in and out, and the params
fields it reads, from which its rerun key is computed (``step_key``).

Data flow (docs/DESIGN.md "Data flow"; paths relative to the shard's folder, k = 1..K)::

    instances.h5                                              --prior-->  stage0/shape.h5
    instances.h5, stage{k-1}/shape.h5                         --step1-->  stage{k}/albedo.h5
    instances.h5, stage{k}/albedo.h5                          --pseudo--> stage{k}/pseudo.h5
    instances.h5, stage{k}/pseudo.h5 (, stage{k-1}/projected.h5 when k > 1)
                                                              --invert--> stage{k}/projected.h5
    instances.h5, stage{k}/albedo.h5, stage{k}/projected.h5 (, stage{k-1}/shape.h5: the networks
        albedo.h5 links to)                                   --step3-->  stage{k}/shape.h5

Every step is a ``run_<name>`` of method/steps.py, a ``gan2shape <name>`` subcommand and a Snakemake
rule of workflow/rules/reconstruct.smk. A step's key digests only the params fields it reads
(``STEPS[name].reads``), so an edit reruns the steps that read the edited field and, through their
outputs, what comes after them; both the stage loop's resume (``run_reconstruct``: an artifact
whose stored key differs is rebuilt) and Snakemake (each method rule's ``deps`` param, in
workflow/rules/common.smk) use these keys. This module imports no torch: Snakemake reads it when it
parses the workflow.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gan2shape.config import MethodConfig, RenderConfig, params_digest

__all__ = [
    "SHAPE_KIND",
    "ALBEDO_KIND",
    "PSEUDO_KIND",
    "PROJECTED_KIND",
    "Step",
    "STEPS",
    "NOT_READ",
    "step_fields",
    "step_key",
]

SHAPE_KIND = "shape"
ALBEDO_KIND = "albedo"
PSEUDO_KIND = "pseudo"
PROJECTED_KIND = "projected"


@dataclass(frozen=True)
class Step:
    """One step of the chain.

    name: run_<name>, the CLI subcommand and the Snakemake rule; inputs / output: artifact paths
    relative to the shard's folder, ``{k}`` the step's stage and ``{j}`` = k - 1 (an input in
    brackets is optional: the encoder of the previous stage, only when k > 1); kind: the output's
    artifact kind; reads: the params fields the step's result depends on, as ``method.<field>``
    (``method.prior``: the whole prior section), ``schedule.<field>`` (of the active profile) and
    ``render`` (the camera: the whole render section).
    """

    name: str
    inputs: tuple[str, ...]
    output: str
    kind: str
    reads: tuple[str, ...]

    def path(self, stage: int) -> str:
        """The output's path relative to the shard's folder at ``stage``."""
        return self.output.format(k=stage, j=stage - 1)


# Fields that several steps read. The checkpoint is in every key because the instances come from it
# (a resume with another GAN must not keep the earlier instances' results).
_COMMON = ("method.checkpoint", "method.image_size", "method.mode", "method.seed")
_ADAM = ("method.lr", "method.weight_decay", "schedule.instances_per_iter")  # steps.py _train, _instance_rows
_NETS = ("method.nf",)  # the four networks' widths (context.build_nets / load_nets)
_VIEW = ("method.xyz_rotation_range_deg", "method.xy_translation_range", "method.z_translation_range")  # predict
_PHOTO = (
    "method.lam_perc",
    "method.perceptual",
    "method.perceptual_blocks",
    "method.lam_smooth",
    "method.lam_smooth_joint",
)  # forward.photo_loss and the perceptual loss it uses

STEPS: dict[str, Step] = {
    step.name: step
    for step in (
        Step(
            "prior",
            ("instances.h5",),
            "stage0/shape.h5",
            SHAPE_KIND,
            _COMMON + _ADAM + _NETS + ("render", "method.prior", "schedule.prior_iters"),
        ),
        Step(
            "step1",
            ("instances.h5", "stage{j}/shape.h5"),
            "stage{k}/albedo.h5",
            ALBEDO_KIND,
            _COMMON
            + _ADAM
            + _NETS
            + _VIEW
            + _PHOTO
            + ("render", "method.flip1_stage1", "method.step1_view_light", "schedule.step1_iters"),
        ),
        Step(
            "pseudo",
            ("instances.h5", "stage{k}/albedo.h5"),
            "stage{k}/pseudo.h5",
            PSEUDO_KIND,
            _COMMON
            + (
                "render",
                "method.rand_light",
                "method.view_source",
                "method.view_scale",
                "method.view_origin",
                "method.pseudo_background",
                "method.view_yaw_deg",
                "method.view_pitch_deg",
                "method.view_roll_deg",
                "schedule.collect_batches",
                "schedule.batch_size",
            ),
        ),
        Step(
            "invert",
            ("instances.h5", "stage{k}/pseudo.h5", "[stage{j}/projected.h5]"),
            "stage{k}/projected.h5",
            PROJECTED_KIND,
            _COMMON
            + _ADAM
            + (
                "method.enc_nf",
                "method.encoder_init",
                "method.joint_encoder",
                "method.offset",
                "method.f1_d",
                "method.relative_enc",
                "method.lam_regular",
                "method.perceptual_blocks",
                "schedule.step2_iters",
                "schedule.batch_size",
                "schedule.collect_batches",
            ),
        ),
        Step(
            "step3",
            # stage{j}/shape.h5: the networks step 1 did not train, which albedo.h5 links to
            ("instances.h5", "stage{k}/albedo.h5", "stage{k}/projected.h5", "stage{j}/shape.h5"),
            "stage{k}/shape.h5",
            SHAPE_KIND,
            _COMMON
            + _ADAM
            + _NETS
            + _VIEW
            + _PHOTO
            + (
                "render",
                "method.lam_view",
                "method.lam_view_joint",
                "method.flip1_stage1",
                "method.flip3_stage1",
                "schedule.step3_iters",
                "schedule.batch_size",
            ),
        ),
    )
}

# Fields no step's result depends on: which profile is named (its schedule's values are read one by
# one) and the stage count (it decides how many stages run, not what a stage computes).
NOT_READ = ("method.profile", "method.profiles", "schedule.stages")


def _file_digest(path: str | Path) -> str:
    """sha256 of a file's bytes (16 hex digits), or 'missing' (the step that reads it then says so)."""
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]
    except OSError:
        return "missing"


def step_fields(step: str, method: MethodConfig, render: RenderConfig) -> dict[str, Any]:
    """The values of the fields ``step`` reads (``STEPS[step].reads``), by dotted name; a pre-trained
    encoder (method.encoder_init) by its file's content (``MethodConfig.encoder_path``; 'missing' when
    there is none), not only the setting."""
    if step not in STEPS:
        raise KeyError(f"unknown step {step!r}; the chain's steps are {list(STEPS)}")
    sections = {"method": dataclasses.asdict(method), "schedule": dataclasses.asdict(method.schedule)}
    values: dict[str, Any] = {}
    for name in STEPS[step].reads:
        if name == "render":
            values[name] = dataclasses.asdict(render)
            continue
        section, field = name.split(".", 1)
        values[name] = sections[section][field]
    if "method.encoder_init" in values:  # the file it names (auto: the one beside the checkpoint), by content
        path = method.encoder_path
        values["method.encoder_init"] = None if path is None else _file_digest(path)
    return values


def step_key(step: str, method: MethodConfig, render: RenderConfig) -> str:
    """The rerun key of ``step``'s result (16 hex digits): a digest of the step's name and of the
    fields it reads (``step_fields``). Stored in every artifact (attribute 'method_key')."""
    blob = json.dumps({"step": step, **step_fields(step, method, render)}, sort_keys=True, default=str)
    return params_digest(blob)
