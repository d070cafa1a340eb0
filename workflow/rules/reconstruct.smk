# GAN2Shape reconstruction: one rule per step of docs/DESIGN.md's data flow, run per shard of instances
# (workflow.shard_size; {shard} = 0, 1, ...: a shard's chain of jobs is independent of the others').
# Each rule is one `gan2shape` subcommand; artifacts are HDF5 files with a leading instance axis.
# Every rule lists the params it depends on (params: deps; a method step's: its key of
# gan2shape.method.chain, from only the fields it reads), so an edit of params.yaml reruns exactly
# the steps it affects and those after them. Resources: job_resources (common.smk) from workflow.resources.


rule project:
    input:
        images=projection_images,
        checkpoint=gan_checkpoint,
    output:
        f"{RUN}/latents.h5",
    log:
        f"{RUN}/logs/project.log",
    benchmark:
        f"{RUN}/benchmarks/project.tsv"
    params:
        set=untracked(set_args("project", "method")),
        device=untracked(DEVICE),
        deps=_section("project"),
        limit=N_INSTANCES,
    conda:
        "../envs/gan2shape.yaml"
    threads: CPU_THREADS
    resources:
        **job_resources("project", gpu=GPU),
    shell:
        "gan2shape -q --log {log} --threads {threads} project --params params.yaml {params.set} --checkpoint {input.checkpoint} "
        "--images {input.images} --limit {params.limit} --out {output} --device {params.device}"


rule sample_instances:
    input:
        checkpoint=gan_checkpoint,
        latents=[] if IMAGES is None else [f"{RUN}/latents.h5"],
    output:
        f"{RUN}/instances.h5",
    log:
        f"{RUN}/logs/sample_instances.log",
    params:
        set=untracked(set_args("method", "render")),
        device=untracked(DEVICE),
        deps=_canonical({"image_size": config["method"]["image_size"], "checkpoint": CHECKPOINT}),
        source=(
            f"--n {N_INSTANCES} --seed {WF.get('seed', 0)}"
            if IMAGES is None
            else f"--latents {RUN}/latents.h5{MASKS}"
        ),
    conda:
        "../envs/gan2shape.yaml"
    threads: 1
    resources:
        **job_resources("sample_instances", gpu=GPU),
    shell:
        "gan2shape -q --log {log} --threads {threads} sample-instances --params params.yaml {params.set} {params.source} "
        "--out {output} --device {params.device}"


# A shard's rows of the run's instances (workflow.shard_size).
rule split_instances:
    input:
        f"{RUN}/instances.h5",
    output:
        f"{SHARD}/instances.h5",
    log:
        f"{SHARD}/logs/split_instances.log",
    params:
        shard_size="" if SHARD_SIZE is None else f"--shard-size {SHARD_SIZE}",
    conda:
        "../envs/gan2shape.yaml"
    threads: 1
    shell:
        "gan2shape -q --log {log} split-instances --instances {input} --shard {wildcards.shard} {params.shard_size} "
        "--out {output}"


rule prior:
    input:
        instances=f"{SHARD}/instances.h5",
        checkpoint=gan_checkpoint,
    output:
        intermediate(f"{SHARD}/stage0/shape.h5"),
    log:
        f"{SHARD}/logs/prior.log",
    benchmark:
        f"{SHARD}/benchmarks/prior.tsv"
    params:
        set=untracked(set_args("method", "render", method=True)),
        device=untracked(DEVICE),
        deps=STEP_DEPS["prior"],
    conda:
        "../envs/gan2shape.yaml"
    threads: CPU_THREADS
    resources:
        **job_resources("prior", gpu=GPU),
    shell:
        "gan2shape -q --log {log} --threads {threads} prior --params params.yaml {params.set} --instances {input.instances} "
        "--out {output} --device {params.device}"


rule step1:
    input:
        instances=f"{SHARD}/instances.h5",
        shape=previous_shape,
        checkpoint=gan_checkpoint,
    output:
        intermediate(f"{SHARD}/stage{{stage}}/albedo.h5"),
    log:
        f"{SHARD}/logs/step1_stage{{stage}}.log",
    benchmark:
        f"{SHARD}/benchmarks/step1_stage{{stage}}.tsv"
    params:
        set=untracked(set_args("method", "render", method=True)),
        device=untracked(DEVICE),
        deps=STEP_DEPS["step1"],
    conda:
        "../envs/gan2shape.yaml"
    threads: CPU_THREADS
    resources:
        **job_resources("step1", gpu=GPU),
    shell:
        "gan2shape -q --log {log} --threads {threads} step1 --params params.yaml {params.set} --instances {input.instances} "
        "--shape {input.shape} --out {output} --device {params.device}"


rule pseudo:
    input:
        instances=f"{SHARD}/instances.h5",
        albedo=f"{SHARD}/stage{{stage}}/albedo.h5",
        checkpoint=gan_checkpoint,
    output:
        intermediate(f"{SHARD}/stage{{stage}}/pseudo.h5"),
    log:
        f"{SHARD}/logs/pseudo_stage{{stage}}.log",
    benchmark:
        f"{SHARD}/benchmarks/pseudo_stage{{stage}}.tsv"
    params:
        set=untracked(set_args("method", "render", method=True)),
        device=untracked(DEVICE),
        deps=STEP_DEPS["pseudo"],
    conda:
        "../envs/gan2shape.yaml"
    threads: CPU_THREADS
    resources:
        **job_resources("pseudo", gpu=GPU),
    shell:
        "gan2shape -q --log {log} --threads {threads} pseudo --params params.yaml {params.set} --instances {input.instances} "
        "--albedo {input.albedo} --out {output} --device {params.device}"


rule invert:
    input:
        instances=f"{SHARD}/instances.h5",
        pseudo=f"{SHARD}/stage{{stage}}/pseudo.h5",
        encoder=encoder_init,
        pretrained=pretrained_encoder,
        checkpoint=gan_checkpoint,
    output:
        intermediate(f"{SHARD}/stage{{stage}}/projected.h5"),
    log:
        f"{SHARD}/logs/invert_stage{{stage}}.log",
    benchmark:
        f"{SHARD}/benchmarks/invert_stage{{stage}}.tsv"
    params:
        set=untracked(set_args("method", "render", method=True)),
        device=untracked(DEVICE),
        deps=STEP_DEPS["invert"],
        encoder=lambda wildcards, input: f"--encoder-init {input.encoder[0]}" if input.encoder else "",
    conda:
        "../envs/gan2shape.yaml"
    threads: CPU_THREADS
    resources:
        **job_resources("invert", gpu=GPU),
    shell:
        "gan2shape -q --log {log} --threads {threads} invert --params params.yaml {params.set} --instances {input.instances} "
        "--pseudo {input.pseudo} {params.encoder} --out {output} --device {params.device}"


rule step3:
    input:
        instances=f"{SHARD}/instances.h5",
        albedo=f"{SHARD}/stage{{stage}}/albedo.h5",
        projected=f"{SHARD}/stage{{stage}}/projected.h5",
        # albedo.h5 holds the networks step 1 trained and links the others to the shape.h5 it read
        networks=previous_shape,
        checkpoint=gan_checkpoint,
    output:
        intermediate(f"{SHARD}/stage{{stage}}/shape.h5"),
    log:
        f"{SHARD}/logs/step3_stage{{stage}}.log",
    benchmark:
        f"{SHARD}/benchmarks/step3_stage{{stage}}.tsv"
    wildcard_constraints:
        stage=r"[1-9][0-9]*",
    params:
        set=untracked(set_args("method", "render", method=True)),
        device=untracked(DEVICE),
        deps=STEP_DEPS["step3"],
    conda:
        "../envs/gan2shape.yaml"
    threads: CPU_THREADS
    resources:
        **job_resources("step3", gpu=GPU),
    shell:
        "gan2shape -q --log {log} --threads {threads} step3 --params params.yaml {params.set} --instances {input.instances} "
        "--albedo {input.albedo} --projected {input.projected} --out {output} --device {params.device}"


# Per instance of a shard: depth, normals, albedo, mesh (+ preview), rotation and relighting media,
# plain and GAN-refined.
rule export:
    input:
        shape=f"{SHARD}/stage{STAGES}/shape.h5",
        projected=f"{SHARD}/stage{STAGES}/projected.h5",
        instances=f"{SHARD}/instances.h5",
        checkpoint=gan_checkpoint,
    output:
        directory(f"{SHARD}/export"),
    log:
        f"{SHARD}/logs/export.log",
    params:
        set=untracked(set_args("method", "render")),
        device=untracked(DEVICE),
        deps=EXPORT_DEPS,
    conda:
        "../envs/gan2shape.yaml"
    threads: CPU_THREADS
    resources:
        **job_resources("export", gpu=GPU),
    shell:
        "gan2shape -q --log {log} --threads {threads} export --params params.yaml {params.set} --shape {input.shape} "
        "--projected {input.projected} --instances {input.instances} --out {output} --device {params.device}"


# Every shard's exports in one folder, <run>/export/<id>/ (hard links). The report shows the figures
# named in the pattern below (captions: export.rst).
rule collect_exports:
    input:
        expand(f"{SHARD}/export", shard=SHARDS),
    output:
        report(
            directory(f"{RUN}/export"),
            patterns=[
                "{instance}/{figure,summary|depth|normal|mesh_preview|rotate_grid|relight_strip}.png",
                "{instance}/{figure,rotate|relight|rotate_gan|relight_gan}.gif",
            ],
            caption="../report/export.rst",
            category="Reconstructions",
            subcategory="{instance}",
            labels={"instance": "{instance}", "figure": "{figure}"},
        ),
    log:
        f"{RUN}/logs/collect_exports.log",
    conda:
        "../envs/gan2shape.yaml"
    threads: 1
    shell:
        "gan2shape -q --log {log} collect-exports {input} --out {output}"
