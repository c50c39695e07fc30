# Entry points of nuclick-wsi. `make run` runs the demo workflow; `make test` runs the test suite.
# Both create .venv when missing and install the project into it; a second call reinstalls only
# when pyproject.toml has changed since the last install (stamp files in .venv).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Rules call `nuclick`, so the venv's bin folder goes first on PATH for Snakemake.
SNAKEMAKE := PATH="$(CURDIR)/$(BIN):$$PATH" OMP_NUM_THREADS=1 $(BIN)/snakemake
PROFILE ?= workflow/profiles/default
SMK_FILES := Snakefile $(wildcard workflow/rules/*.smk)
# torch for `make test`: the CPU build. This machine's pip finds it on local disk; elsewhere use
# e.g. TORCH_PIP_ARGS="--index-url https://download.pytorch.org/whl/cpu" (PyPI's Linux torch is
# the multi-GB CUDA build).
TORCH ?= torch==2.13.0
TORCH_PIP_ARGS ?=

.PHONY: run dry-run test test-slurm lint clean device-data device-train

## run: the workflow on the demo slides (fetches them first), with the local profile
run: $(VENV)/.installed-run
	$(SNAKEMAKE) --profile $(PROFILE)

## dry-run: show the jobs `make run` would start
dry-run: $(VENV)/.installed-run
	$(SNAKEMAKE) --profile $(PROFILE) --dry-run

## test: the whole test suite (needs torch for the training tests and the tiny test model)
test: $(VENV)/.installed-test
	OMP_NUM_THREADS=1 $(BIN)/pytest

## test-slurm: the demo through a real one-node SLURM cluster started on loopback with the
## project's SLURM profile, checked with sacct (needs root: installs Debian's slurm packages
## when missing; tests/slurm/run.sh)
test-slurm: $(VENV)/.installed-run
	PYTHON=$(PYTHON) bash tests/slurm/run.sh

## lint: ruff (lint and format), snakemake --lint and snakefmt --check
lint: $(VENV)/.installed-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(SNAKEMAKE) --lint --nolock
	$(BIN)/snakefmt --check $(SMK_FILES)

## device-data: the MoNuSeg training images (not the validation ones) for a GPU run, into
## resources/device/ (ignored; name it in the device tool's carry)
DEVICE_DATA := resources/device/monuseg-train
NUCLEI_VAL := TCGA-21-5786-01Z-00-DX1 TCGA-A7-A13F-01Z-00-DX1 TCGA-B0-5710-01Z-00-DX1 TCGA-G9-6356-01Z-00-DX1 TCGA-DK-A2I6-01A-01-TS1
MONUSEG ?= ../shared/data/monuseg-train
device-data:
	mkdir -p $(DEVICE_DATA)/images $(DEVICE_DATA)/labels
	for f in $(MONUSEG)/images/*; do n=$$(basename $$f); case " $(NUCLEI_VAL) " in *" $${n%.*} "*) ;; *) cp $$f $(DEVICE_DATA)/images/; cp $(MONUSEG)/labels/$$n $(DEVICE_DATA)/labels/;; esac; done
	du -sh $(DEVICE_DATA)

## device-train: on a lent GPU machine (its python3 has CUDA torch): a time-boxed run whose
## fp16 weight chunks land in $(OUT)/run; assemble, export and gate them back here (README)
MINUTES ?= 9
WIDTH ?= 0.5
device-train:
	PYTHONUNBUFFERED=1 python3 bench/device_train.py train --data $(DEVICE_DATA) \
	  --width $(WIDTH) --minutes $(MINUTES) --batch-size 512 --workers 14 --out $(OUT)/run

## clean: remove workflow outputs, logs and caches (keeps .venv and the downloads in resources/)
clean:
	rm -rf results logs .snakemake .pytest_cache .ruff_cache .mypy_cache .hypothesis
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -exec rm -rf {} +

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip

# Inference needs ONNX Runtime only (extra `cpu`), never torch.
$(VENV)/.installed-run: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -e '.[cpu]'
	touch $@

# torch goes first, so that the `train` extra finds it satisfied and keeps the CPU build.
$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install $(TORCH_PIP_ARGS) '$(TORCH)'
	$(BIN)/python -m pip install -e '.[cpu,train,test]'
	touch $@ $(VENV)/.installed-run
