#!/usr/bin/env bash
# Run by Snakemake inside the new conda env made from cpu.yaml (see there).
# NUCLICK_WORKFLOW_DIR, the repository root, is set by workflow/rules/common.smk.
set -euo pipefail
repo="${NUCLICK_WORKFLOW_DIR:?must name the nuclick-wsi repository (set by workflow/rules/common.smk)}"
python -m pip install --no-cache-dir -e "${repo}[cpu]"
