# gan2shape workflow: thin rules, each calling one `gan2shape` subcommand (DESIGN.md).
# Main job:  snakemake --cores 4 --resources gpu=1
# (reconstructs workflow.instances samples of the shipped GAN; results/default/export/<id>/)
from snakemake.utils import min_version, validate

min_version("9.0")


configfile: "params.yaml"


validate(config, "workflow/schema/params.schema.yaml")


wildcard_constraints:
    stage=r"[0-9]+",
    size=r"[0-9]+",

include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/reconstruct.smk"


rule all:
    input:
        f"{RESULTS}/heads{config['heads']['image_size']}/contact_sheet.png",
        f"{RESULTS}/baselines/table.md",
        f"{RESULTS}/default/export",
    default_target: True


onsuccess:
    print(
        f"gan2shape: reconstructions of {config['workflow']['instances']} instance(s) in {RUN}/export/<id>/ "
        f"(summary.png, depth.png, normal.png, mesh.obj, rotate.gif, relight.gif, ...); "
        f"baseline table in {RESULTS}/baselines/table.md"
    )
