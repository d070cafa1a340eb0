# Inputs: the synthetic head benchmark (our ground truth) and user images.


rule make_heads:
    output:
        train=intermediate(f"{RESULTS}/heads{{size}}/train.h5"),  # read by evaluate_baselines only
        test=f"{RESULTS}/heads{{size}}/test.h5",
        sheet=report(
            f"{RESULTS}/heads{{size}}/contact_sheet.png",
            caption="../report/heads.rst",
            category="Benchmark",
        ),
    log:
        f"{RESULTS}/logs/make_heads_{{size}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/make_heads_{{size}}.tsv"
    params:
        set=untracked(set_args("heads")),
        deps=_section("heads", ("image_size",)),
    conda:
        "../envs/gan2shape.yaml"
    threads: CPU_THREADS
    resources:
        **job_resources("make_heads"),
    shell:
        "gan2shape -q --log {log} --threads {threads} make-heads --params params.yaml {params.set} --set heads.image_size={wildcards.size} "
        "--out $(dirname {output.train}) --device cpu"


rule import_images:
    input:
        images=image_folder,
        checkpoint=gan_checkpoint,
    output:
        f"{RUN}/images.h5",
    log:
        f"{RUN}/logs/import_images.log",
    params:
        limit=N_INSTANCES,
    conda:
        "../envs/gan2shape.yaml"
    threads: 1
    resources:
        **job_resources("import_images"),
    shell:
        "gan2shape -q --log {log} --threads {threads} import-images --images {input.images} --checkpoint {input.checkpoint} "
        "--limit {params.limit} --out {output}"
