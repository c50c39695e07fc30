"""nuclick-wsi: NuClick instance segmentation of clicked nuclei, cells and glands on slides.

Run from the repository root (`make run`), or anywhere with `--directory DIR` and
`--configfile`; see config/README.md.
"""

from snakemake.utils import min_version, validate

min_version("9.0")


configfile: "config/config.yaml"


validate(config, "workflow/schemas/config.schema.yaml")


# Loads and validates the sample sheet (workflow/schemas/samples.schema.yaml).
include: "workflow/rules/common.smk"
include: "workflow/rules/demo.smk"
include: "workflow/rules/segment.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/convert.smk"


onstart:
    check_slurm_requests()


rule all:
    default_target: True
    input:
        final_outputs(),
