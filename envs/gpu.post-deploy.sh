#!/usr/bin/env bash
# Run by Snakemake inside the new conda env made from gpu.yaml (see there and cpu.yaml).
set -euo pipefail
repo="${NUCLICK_WORKFLOW_DIR:?must name the nuclick-wsi repository (set by workflow/rules/common.smk)}"
python -m pip install --no-cache-dir -e "${repo}[gpu]"
