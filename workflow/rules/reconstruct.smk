# GAN2Shape reconstruction of one shard: one rule per step of DESIGN.md's data flow.
# Each rule is one `gan2shape` subcommand; artifacts are HDF5 files with a leading instance axis.


rule sample_instances:
    input:
        params="params.yaml",
    output:
        f"{RUN}/instances.h5",
    log:
        f"{RUN}/logs/sample_instances.log",
    params:
        device=DEVICE,
        n=config["workflow"]["instances"],
        seed=config["workflow"]["seed"],
    conda:
        "../envs/gan2shape.yaml"
    threads: 1
    resources:
        gpu=1,
    shell:
        "gan2shape -q --threads {threads} sample-instances --params {input.params} --n {params.n} --seed {params.seed} "
        "--out {output} --device {params.device} > {log} 2>&1"


rule prior:
    input:
        params="params.yaml",
        instances=f"{RUN}/instances.h5",
    output:
        f"{RUN}/stage0/shape.h5",
    log:
        f"{RUN}/logs/prior.log",
    benchmark:
        f"{RUN}/benchmarks/prior.tsv"
    params:
        device=DEVICE,
    conda:
        "../envs/gan2shape.yaml"
    threads: CPU_THREADS
    resources:
        gpu=1,
    shell:
        "gan2shape -q --threads {threads} prior --params {input.params} --instances {input.instances} --out {output} "
        "--device {params.device} > {log} 2>&1"


rule step1:
    input:
        params="params.yaml",
        instances=f"{RUN}/instances.h5",
        shape=previous_shape,
    output:
        f"{RUN}/stage{{stage}}/albedo.h5",
    log:
        f"{RUN}/logs/step1_stage{{stage}}.log",
    benchmark:
        f"{RUN}/benchmarks/step1_stage{{stage}}.tsv"
    params:
        device=DEVICE,
    conda:
        "../envs/gan2shape.yaml"
    threads: CPU_THREADS
    resources:
        gpu=1,
    shell:
        "gan2shape -q --threads {threads} step1 --params {input.params} --instances {input.instances} --shape {input.shape} "
        "--out {output} --device {params.device} > {log} 2>&1"


rule pseudo:
    input:
        params="params.yaml",
        albedo=f"{RUN}/stage{{stage}}/albedo.h5",
    output:
        f"{RUN}/stage{{stage}}/pseudo.h5",
    log:
        f"{RUN}/logs/pseudo_stage{{stage}}.log",
    benchmark:
        f"{RUN}/benchmarks/pseudo_stage{{stage}}.tsv"
    params:
        device=DEVICE,
    conda:
        "../envs/gan2shape.yaml"
    threads: CPU_THREADS
    resources:
        gpu=1,
    shell:
        "gan2shape -q --threads {threads} pseudo --params {input.params} --albedo {input.albedo} --out {output} "
        "--device {params.device} > {log} 2>&1"


rule invert:
    input:
        params="params.yaml",
        instances=f"{RUN}/instances.h5",
        pseudo=f"{RUN}/stage{{stage}}/pseudo.h5",
        encoder=encoder_init,
    output:
        f"{RUN}/stage{{stage}}/projected.h5",
    log:
        f"{RUN}/logs/invert_stage{{stage}}.log",
    benchmark:
        f"{RUN}/benchmarks/invert_stage{{stage}}.tsv"
    params:
        device=DEVICE,
        encoder=lambda wildcards, input: f"--encoder-init {input.encoder[0]}" if input.encoder else "",
    conda:
        "../envs/gan2shape.yaml"
    threads: CPU_THREADS
    resources:
        gpu=1,
    shell:
        "gan2shape -q --threads {threads} invert --params {input.params} --instances {input.instances} --pseudo {input.pseudo} "
        "{params.encoder} --out {output} --device {params.device} > {log} 2>&1"


rule step3:
    input:
        params="params.yaml",
        instances=f"{RUN}/instances.h5",
        albedo=f"{RUN}/stage{{stage}}/albedo.h5",
        projected=f"{RUN}/stage{{stage}}/projected.h5",
    output:
        f"{RUN}/stage{{stage}}/shape.h5",
    log:
        f"{RUN}/logs/step3_stage{{stage}}.log",
    benchmark:
        f"{RUN}/benchmarks/step3_stage{{stage}}.tsv"
    wildcard_constraints:
        stage=r"[1-9][0-9]*",
    params:
        device=DEVICE,
    conda:
        "../envs/gan2shape.yaml"
    threads: CPU_THREADS
    resources:
        gpu=1,
    shell:
        "gan2shape -q --threads {threads} step3 --params {input.params} --instances {input.instances} --albedo {input.albedo} "
        "--projected {input.projected} --out {output} --device {params.device} > {log} 2>&1"


rule export:
    input:
        params="params.yaml",
        shape=f"{RUN}/stage{STAGES}/shape.h5",
    output:
        directory(f"{RUN}/export"),
    log:
        f"{RUN}/logs/export.log",
    conda:
        "../envs/gan2shape.yaml"
    threads: 1
    shell:
        "gan2shape -q --threads {threads} export --params {input.params} --shape {input.shape} --out {output} > {log} 2>&1"
