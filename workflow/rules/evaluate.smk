# Depth evaluation (SIDE, MAD) against the benchmark's ground truth.


rule evaluate_baselines:
    input:
        train=f"{RESULTS}/heads{config['heads']['image_size']}/train.h5",
        test=f"{RESULTS}/heads{config['heads']['image_size']}/test.h5",
    output:
        metrics=f"{RESULTS}/baselines/metrics.json",
        table=f"{RESULTS}/baselines/table.md",
    log:
        f"{RESULTS}/logs/evaluate_baselines.log",
    benchmark:
        f"{RESULTS}/benchmarks/evaluate_baselines.tsv"
    params:
        set=untracked(set_args("evaluate")),
        deps=_section("evaluate"),
    conda:
        "../envs/gan2shape.yaml"
    threads: 1
    resources:
        **job_resources("evaluate_baselines"),
    shell:
        "gan2shape -q --log {log} --threads {threads} evaluate --params params.yaml {params.set} --test {input.test} --train {input.train} "
        "--out $(dirname {output.metrics})"
