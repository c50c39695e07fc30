"""Segmentation: one `nuclick segment` job per slide, never per tile: thousands of tiny jobs are
what HPC schedulers and Snakemake's DAG handle worst (README, "The workflow")."""


rule segment:
    input:
        slide=slide_path,
        annotations=annotations_path,
        model=model_files,
    output:
        parquet="results/{sample}/instances.parquet",
        geojson="results/{sample}/instances.geojson",
    log:
        "logs/segment/{sample}.log",
    conda:
        segment_conda_env()
    threads: config["segment"]["threads"]
    resources:
        # The engine streams tiles through bounded queues, so memory stays flat with slide size;
        # a retry (profile `retries`) asks for more. GPUs are requested in profiles, not here.
        mem_mb=lambda wildcards, attempt: 4000 * attempt,
    params:
        object=sample_object,
        options=segment_options,
        batch_size=config["segment"]["batch_size"],
        provider=config["segment"]["provider"],
        tile=config["segment"]["tile"],
        workers=config["segment"]["workers"],
        readers=config["segment"]["readers"],
        stain=config["segment"]["stain_normalise"],
    shell:
        "nuclick segment"
        " --slide {input.slide:q}"
        " --annotations {input.annotations:q}"
        " --out {output.parquet:q}"
        " --geojson {output.geojson:q}"
        " --object {params.object}"
        " {params.options}"
        " --batch-size {params.batch_size}"
        " --provider {params.provider}"
        " --tile {params.tile}"
        " --workers {params.workers}"
        " --readers {params.readers}"
        " --stain-normalise {params.stain}"
        " --threads {threads}"
        " > {log:q} 2>&1"
