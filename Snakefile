# gan2shape workflow: thin rules, each calling one `gan2shape` subcommand (DESIGN.md).
# Main job:  snakemake --cores 4 --resources gpu=1
from snakemake.utils import min_version, validate

min_version("9.0")


configfile: "params.yaml"


validate(config, "workflow/schema/params.schema.yaml")

RESULTS = "results"


include: "workflow/rules/data.smk"
include: "workflow/rules/evaluate.smk"


rule all:
    input:
        f"{RESULTS}/heads{config['heads']['image_size']}/contact_sheet.png",
        f"{RESULTS}/baselines/table.md",
    default_target: True
