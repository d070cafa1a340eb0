# The synthetic head benchmark (our ground truth).


rule make_heads:
    input:
        "params.yaml",
    output:
        train=f"{RESULTS}/heads{{size}}/train.h5",
        test=f"{RESULTS}/heads{{size}}/test.h5",
        sheet=f"{RESULTS}/heads{{size}}/contact_sheet.png",
    log:
        f"{RESULTS}/logs/make_heads_{{size}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/make_heads_{{size}}.tsv"
    conda:
        "../envs/gan2shape.yaml"
    threads: CPU_THREADS
    shell:
        "gan2shape -q --threads {threads} make-heads --params {input} --set heads.image_size={wildcards.size} "
        "--out $(dirname {output.train}) --device cpu > {log} 2>&1"
