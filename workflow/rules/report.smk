"""Per-sample report files for images without ground truth: an overlay of the instances and the
masks' stability under click jitter."""


rule overlay:
    input:
        slide=slide_path,
        annotations=annotations_path,
        instances="results/{sample}/instances.parquet",
    output:
        "results/{sample}/overlay.png",
    log:
        "logs/overlay/{sample}.log",
    conda:
        "../../envs/cpu.yaml"
    params:
        mpp=lambda wildcards: (
            f"--mpp {sample_mpp(wildcards)}" if sample_mpp(wildcards) else ""
        ),
        max_side=config["report"]["overlay_max_side"],
    shell:
        "nuclick overlay --slide {input.slide:q} --instances {input.instances:q}"
        " --annotations {input.annotations:q} {params.mpp} --max-side {params.max_side}"
        " --out {output:q} > {log:q} 2>&1"


rule stability:
    input:
        slide=slide_path,
        annotations=annotations_path,
        model=model_files,
    output:
        "results/{sample}/stability.json",
    log:
        "logs/stability/{sample}.log",
    conda:
        "../../envs/cpu.yaml"
    threads: config["segment"]["threads"]
    params:
        object=sample_object,
        options=segment_options,
        sigmas=",".join(str(s) for s in config["report"]["jitter_sigmas"]),
    shell:
        "nuclick stability --slide {input.slide:q} --annotations {input.annotations:q}"
        " --object {params.object} {params.options} --sigmas {params.sigmas}"
        " --threads {threads} --out {output:q} > {log:q} 2>&1"


rule run_report:
    input:
        instances="results/{sample}/instances.parquet",
        stability="results/{sample}/stability.json",
        overlay="results/{sample}/overlay.png",
    output:
        "results/{sample}/report.html",
    log:
        "logs/run_report/{sample}.log",
    conda:
        "../../envs/cpu.yaml"
    shell:
        "nuclick run-report --instances {input.instances:q} --stability {input.stability:q}"
        " --overlay {input.overlay:q} --out {output:q} > {log:q} 2>&1"


rule report:
    input:
        expand("results/{sample}/report.html", sample=SAMPLES.index),


localrules:
    summary,


rule summary:
    """`snakemake summary`, after a run (with --keep-going, failed slides included): per slide
    its state, clicks, instances by status, time, model and, for failures, the reason.
    """
    input:
        config["samples"],
    output:
        csv="results/summary/cohort.csv",
        json="results/summary/cohort.json",
        html="results/summary/cohort.html",
    log:
        "logs/summary/summary.log",
    conda:
        "../../envs/cpu.yaml"
    params:
        state=cohort_state,
    shell:
        "nuclick cohort-summary --samples {input:q} --results results --logs logs"
        " --csv {output.csv:q} --json {output.json:q} --html {output.html:q} > {log:q} 2>&1"
