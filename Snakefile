# gan2shape workflow: thin rules, each calling one `gan2shape` subcommand (docs/DESIGN.md).
# Main job:  snakemake --cores 4 --resources gpu=1
# (reconstructs workflow.instances samples of the shipped GAN, or the images of workflow.images;
# results in results/default/export/<id>/ or results/images/export/<id>/; report:
# snakemake --report report.html). Settings of the main job: profiles/default/config.yaml. Each rule
# runs `gan2shape -q --log {log} ...`: the log gets everything, the terminal one line per phase.
# --resources gpu=N runs N shards (workflow.shard_size) at once, one GPU each; on a SLURM cluster:
# snakemake --workflow-profile profiles/slurm (docs/cluster.md).
from snakemake.utils import min_version

min_version("9.0")


configfile: "params.yaml"


# validates the config (params.yaml and any --config), then defines paths, the profile, the device
include: "workflow/rules/common.smk"


report: "workflow/report/workflow.rst"


wildcard_constraints:
    stage=r"[0-9]+",
    size=r"[0-9]+",
    shard=r"[0-9]+",


# File moves of a few seconds: on a cluster they run on the submit host, not as jobs.
localrules:
    split_instances,
    collect_exports,


include: "workflow/rules/data.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/reconstruct.smk"


rule all:
    input:
        f"{RESULTS}/heads{config['heads']['image_size']}/contact_sheet.png",
        f"{RESULTS}/baselines/table.md",
        f"{RUN}/export",
        # checked here too: Snakemake drops an input function's error (a missing checkpoint) raised
        # for a job below an existing output, e.g. the export of a shard below <run>/export
        gan_checkpoint,
    default_target: True


check_resource_rules([r.name for r in workflow.rules])


onsuccess:
    print(
        f"gan2shape: reconstructions of {SOURCE_TEXT} ({PROFILE} profile, {STAGES} stage(s)) in {RUN}/export/<id>/ "
        f"(summary.png, depth.png, normal.png, mesh.obj, mesh_preview.png, rotate.gif, relight.gif, ...); "
        f"baseline table in {RESULTS}/baselines/table.md; report: snakemake --report report.html"
    )
