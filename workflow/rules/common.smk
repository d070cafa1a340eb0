# Config checks, paths, settings and input functions shared by the rules.
import json
import os
import shlex
import shutil
from pathlib import Path

import yaml
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

# The rules' CLI reads this file; what --config/--configfile change reaches it as --set overrides.
PARAMS = "params.yaml"

# The library's typed check names the offending key and what to do (gan2shape check-params); the
# JSON schema is the structural fallback where snakemake runs without gan2shape installed.
try:
    from gan2shape.config import ConfigError, Params, parse_section
except ImportError:
    parse_section = None
if parse_section is not None:
    try:
        parse_section(Params, config)
    except ConfigError as exc:
        raise WorkflowError(f"{exc} (fix this key in {PARAMS} or in your --config)") from None
validate(config, "../schema/params.schema.yaml")


def _yaml_value(value):
    text = yaml.safe_dump(value, default_flow_style=True, width=1 << 20).strip()
    return text[:-3].strip() if text.endswith("...") else text


def _leaves(tree, prefix=""):
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            yield from _leaves(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def _apply_preset(cfg):
    """A preset (params.yaml's `preset`, or --config preset=NAME) sets its keys in the config, except
    those --config changed, so that the rules' params and --set overrides carry them like any edit."""
    name = cfg.get("preset")
    if not name:
        return
    file = dict(_leaves(yaml.safe_load(Path(PARAMS).read_text()) or {}))
    given = {key for key, value in _leaves(cfg) if key not in file or file[key] != value}
    for key, value in ((cfg.get("presets") or {}).get(name) or {}).items():
        if key in given:
            continue
        node = cfg
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value


_apply_preset(config)
PARSED = parse_section(Params, config) if parse_section is not None else None  # the typed config, preset applied


def _canonical(value):
    """A rerun-trigger value: JSON with sorted keys, so reordering params.yaml reruns nothing."""
    return json.dumps(value, sort_keys=True, default=str)


def _section(name, drop=()):
    return _canonical({k: v for k, v in (config.get(name) or {}).items() if k not in drop})


WF = config.get("workflow") or {}
RESULTS = "results"
IMAGES = WF.get("images")
RUN = f"{RESULTS}/default" if IMAGES is None else f"{RESULTS}/images"
N_INSTANCES = WF.get("instances", 2)
DEVICE = WF.get("device", "auto")
HAS_CUDA = DEVICE.startswith("cuda") or (DEVICE == "auto" and shutil.which("nvidia-smi") is not None)
# The main job's method profile: auto = the reference counts on a GPU, the CPU demo without.
PROFILE = WF.get("profile", "auto")
if PROFILE == "auto":
    PROFILE = "paper" if HAS_CUDA else "quick"
if PROFILE not in config["method"]["profiles"]:
    raise WorkflowError(
        f"workflow.profile resolves to {PROFILE!r}, which is not under method.profiles "
        f"({sorted(config['method']['profiles'])}): define it or set workflow.profile to one of them"
    )
STAGES = config["method"]["profiles"][PROFILE]["stages"]
# The prior's box from each object's mask (method.prior.box_source: mask) needs masks by instance
# id: those of an HDF5 image artifact (e.g. the heads test.h5). Elsewhere the prior step says so.
_BOX_FROM_MASK = (config["method"].get("prior") or {}).get("box_source") == "mask"
MASKS = f" --masks {IMAGES}" if _BOX_FROM_MASK and IMAGES is not None and not Path(IMAGES).is_dir() else ""
CHECKPOINT = config["method"]["checkpoint"]
SOURCE_TEXT = f"{N_INSTANCES} sample(s) of {CHECKPOINT}" if IMAGES is None else f"the first {N_INSTANCES} image(s) of {IMAGES}"
# Torch steps on a CPU ask for all of --cores, so they run one at a time (two torch jobs on the
# same cores run many times slower than one after the other) and the CLI caps torch's threads at
# the machine's cores; on a GPU machine they need few, so that `--resources gpu=N` can run N of
# them side by side. Snakemake caps a job's threads at --cores (and needs none for --report/--lint).
try:
    _CORES = workflow.cores or 1
except WorkflowError:  # --report, --lint: no --cores given, no job runs
    _CORES = 1
CPU_THREADS = 4 if HAS_CUDA else max(os.cpu_count() or 1, _CORES)
# A job on the CPU asks for no GPU (a cluster would hold one idle for it); auto and cuda jobs ask for one,
# which `--resources gpu=N` counts locally and the SLURM executor turns into sbatch --gpus=1.
GPU = 0 if DEVICE == "cpu" else 1
# On a cluster, workflow.device auto would decide on the submit host (often without a GPU) whether the
# jobs get one and which method profile runs, and again, differently, on each GPU node. A cluster run:
# --jobs without --cores (a local run turns --jobs into --cores; a cluster executor requires --jobs),
# or a job running on a cluster node.
if DEVICE == "auto" and (workflow.resource_settings.nodes is not None or workflow.remote_exec):
    raise WorkflowError(
        "workflow.device is auto, which decides on this host whether jobs ask for a GPU and which profile runs; "
        "with a cluster executor set workflow.device to cuda (GPU nodes) or cpu in params.yaml or in a YAML file "
        "given with --configfile (docs/cluster.md)"
    )

KEEP_INTERMEDIATE = bool(WF.get("keep_intermediate", False))


def intermediate(path):
    """An output that only later jobs read (workflow.keep_intermediate false: Snakemake deletes it
    once they are done; a finished run needs it again only if an edit reruns one of them)."""
    return path if KEEP_INTERMEDIATE else temp(path)


# Shards: consecutive rows of the run's instances, each its own chain of method jobs (gan2shape.shards).
SHARD_SIZE = WF.get("shard_size")
SHARDS = [str(i) for i in range(1 if SHARD_SIZE is None else -(-N_INSTANCES // SHARD_SIZE))]
SHARD = f"{RUN}/shard{{shard}}"  # a shard's folder (stage<k>/, export/, logs/, benchmarks/)

# What one job asks a cluster for (workflow.resources): the rule's entry, else the default entry.
_RESOURCES = WF.get("resources") or {}


def job_resources(rule, gpu=0):
    """Snakemake resources of a job of ``rule``: runtime (minutes) and mem_mb from workflow.resources
    (the rule's entry, key by key, else ``default``'s), and ``gpu`` (counted by --resources gpu=N)."""
    own, default = _RESOURCES.get(rule) or {}, _RESOURCES.get("default") or {}
    res = {"gpu": gpu}
    for key in ("runtime", "mem_mb"):
        value = own.get(key, default.get(key))
        if value is not None:
            res[key] = value
    return res


def check_resource_rules(names):
    """workflow.resources may name only rules of this workflow (and default)."""
    import difflib

    for key in _RESOURCES:
        if key != "default" and key not in names:
            hint = difflib.get_close_matches(key, names, n=1)
            raise WorkflowError(
                f"workflow.resources.{key}: no rule of that name"
                + (f"; did you mean {hint[0]!r}?" if hint else "")
                + f" Rules: {sorted(names)} (or default); fix the key in {PARAMS}"
            )

# The params.yaml keys that the effective config (with --config/--configfile) changes.
_file = dict(_leaves(yaml.safe_load(Path(PARAMS).read_text()) or {}))
_CHANGED = {key: value for key, value in _leaves(config) if key not in _file or _file[key] != value}


def untracked(value):
    """A params entry that never triggers a rerun: Snakemake counts a function of the job's input as
    derived and leaves it to the input trigger. For the CLI's --set overrides (what they change is
    tracked by each rule's deps; a new profile name with the same schedule keeps finished stages)
    and the device (results do not depend on it beyond float rounding)."""
    return lambda wildcards, input: value


def set_args(*sections, method=False):
    """--set arguments of a CLI call reading ``sections``: the changed keys there, and with
    ``method`` the resolved profile."""
    args = [f"--set={k}={_yaml_value(v)}" for k, v in _CHANGED.items() if k.split(".")[0] in sections]
    if method:
        args.append(f"--set=method.profile={PROFILE}")
    return " ".join(shlex.quote(a) for a in args)


# What each rule's result depends on. Snakemake reruns a job when its params change, so these
# (not the whole params.yaml) decide what an edit of params.yaml reruns.


def _step_deps():
    """Each method step's rerun key, the library's (gan2shape.method.chain.step_key: a digest of only
    the params fields that step reads) under the main job's profile, as the stage loop's resume
    computes it. Where gan2shape cannot be imported here, the whole method and render sections
    (every edit reruns every step)."""
    if parse_section is None:
        whole = _canonical(
            {
                "method": {k: v for k, v in config["method"].items() if k not in ("profile", "profiles")},
                "schedule": {k: v for k, v in config["method"]["profiles"][PROFILE].items() if k != "stages"},
                "render": config.get("render") or {},
            }
        )
        return {name: whole for name in ("prior", "step1", "pseudo", "invert", "step3")}
    from gan2shape.method.chain import STEPS, step_key

    params = parse_section(Params, {**config, "method": {**config["method"], "profile": PROFILE}})
    return {name: step_key(name, params.method, params.render) for name in STEPS}


STEP_DEPS = _step_deps()
EXPORT_DEPS = _canonical(
    {
        "method": {k: v for k, v in config["method"].items() if k not in ("profile", "profiles")},
        "render": config.get("render") or {},
    }
)


def gan_checkpoint(wildcards):
    if not Path(CHECKPOINT).is_file():
        raise WorkflowError(
            f"method.checkpoint: {CHECKPOINT} does not exist. Point method.checkpoint in {PARAMS} at a "
            "StyleGAN2 checkpoint (.pt), e.g. the shipped data/stylegan2_heads64.pt"
        )
    return CHECKPOINT


def _images_missing():
    return WorkflowError(
        f"workflow.images: {IMAGES} does not exist. Set it to an HDF5 image artifact (dataset 'image', e.g. "
        f"results/heads64/test.h5), a folder of PNG/JPG images, or null for GAN samples"
    )


def image_folder(wildcards):
    if not Path(IMAGES).is_dir():
        raise _images_missing()
    return IMAGES


def projection_images(wildcards):
    path = Path(IMAGES)
    if path.is_dir():
        return f"{RUN}/images.h5"
    if path.is_file():
        return IMAGES
    raise _images_missing()


def previous_shape(wildcards):
    return f"{RUN}/shard{wildcards.shard}/stage{int(wildcards.stage) - 1}/shape.h5"


def encoder_init(wildcards):
    stage = int(wildcards.stage)
    return [f"{RUN}/shard{wildcards.shard}/stage{stage - 1}/projected.h5"] if stage > 1 else []


def pretrained_encoder(wildcards):
    # the pre-trained E a fresh stage-1 E starts from (method.encoder_init): an input, so a new one reruns step 2
    path = PARSED.method.encoder_path if PARSED is not None and int(wildcards.stage) == 1 else None
    return [path] if path is not None and (PARSED.method.encoder_init != "auto" or Path(path).is_file()) else []
