"""Sample sheet, checks and input functions shared by the rules.

Data paths (sample sheet, slides, annotations, results) are relative to the working directory
(`--directory`); schemas and conda envs are found relative to the workflow's own files.
"""

import hashlib
import json
import os
import re
import shlex
import shutil
import sys
from pathlib import Path

import pandas as pd
from snakemake.exceptions import WorkflowError
from snakemake.logging import logger
from snakemake.settings.types import DeploymentMethod
from snakemake.utils import validate

# Sample sheet columns read as text (everything but mpp, which must parse as a number).
TEXT_COLUMNS = ["sample", "slide", "annotations", "object", "model"]
# Columns every sheet must have (the schema's `required`).
REQUIRED_COLUMNS = ["sample", "slide", "annotations"]
# Inputs under this folder are made by rules (downloads), so they need not exist yet.
MADE_BY_RULES = "resources"


def read_sample_sheet(path):
    """The sample sheet at `path` as a DataFrame indexed by sample, validated and with defaults.

    Errors name the sheet, the line (the header is line 1) and the sample.
    """
    if not Path(path).is_file():
        raise WorkflowError(
            f"sample sheet {path} does not exist (config key `samples`, relative to the "
            f"working directory {os.getcwd()}); see config/README.md"
        )
    # Blank lines are read as empty rows and then dropped, so that the index stays the line
    # number minus 2 (the header is line 1).
    sheet = pd.read_csv(
        path,
        sep="\t",
        dtype={column: str for column in TEXT_COLUMNS},
        skip_blank_lines=False,
    )
    for column in sheet.columns.intersection(TEXT_COLUMNS):
        sheet[column] = sheet[column].str.strip().replace("", pd.NA)
    sheet = sheet.dropna(how="all")
    missing = [c for c in REQUIRED_COLUMNS if c not in sheet.columns]
    if missing:
        header = (
            Path(path).read_text(encoding="utf-8", errors="replace").splitlines()[:1]
        )
        hint = (
            "; the header has commas but no tabs: the sheet must be tab-separated (TSV), "
            "save it as such"
            if header and "," in header[0] and "\t" not in header[0]
            else ""
        )
        raise WorkflowError(
            f"sample sheet {path}: line 1 lacks the column(s) {', '.join(missing)} "
            f"(found: {', '.join(map(str, sheet.columns))}){hint}"
        )
    line = {index: index + 2 for index in sheet.index}
    if sheet.empty:
        raise WorkflowError(f"sample sheet {path} has no rows; add one row per slide")
    validate_sheet(sheet, path, line)
    for column in ("mpp", "model"):
        if column not in sheet.columns:
            sheet[column] = pd.NA

    repeated = sheet[sheet["sample"].duplicated(keep=False)]
    if not repeated.empty:
        where = ", ".join(
            f"line {line[i]} ({name!r})" for i, name in repeated["sample"].items()
        )
        raise WorkflowError(
            f"sample sheet {path}: sample names must be unique, but {where} repeat a name; "
            "rename them (they name the folders under results/)"
        )
    for index, row in sheet.iterrows():
        for column in ("slide", "annotations"):
            file = Path(row[column])
            made_by_rules = not file.is_absolute() and file.parts[0] == MADE_BY_RULES
            if not file.exists() and not made_by_rules:
                raise WorkflowError(
                    f"sample sheet {path} line {line[index]} (sample {row['sample']!r}): "
                    f"{column} file {file} does not exist (relative paths are relative to "
                    f"the working directory {os.getcwd()})"
                )
    return sheet.set_index("sample", drop=False)


def validate_sheet(sheet, path, line):
    """Validate the sheet against its schema (filling defaults); on failure, name the line and
    sample of the first row that fails, found by validating the rows one at a time."""
    schema = "../schemas/samples.schema.yaml"
    try:
        validate(sheet, schema)
        return
    except WorkflowError as exc:
        whole = exc
    for index in sheet.index:
        try:
            validate(sheet.loc[[index]].copy(), schema)
        except WorkflowError as exc:
            raise WorkflowError(
                f"sample sheet {path} line {line[index]} (sample "
                f"{sheet.loc[index, 'sample']!r}) does not match "
                "workflow/schemas/samples.schema.yaml",
                exc,
            ) from exc
    raise WorkflowError(
        f"sample sheet {path} does not match workflow/schemas/samples.schema.yaml",
        whole,
    ) from whole


def import_package():
    """The nuclick_core package, which reads the model registry for the workflow: installed
    (`make run`, `pip install -e .`), or else from this checkout."""
    try:
        import nuclick_core.inference.models as models
    except ImportError:
        sys.path.insert(0, str(Path(workflow.basedir).resolve()))
        try:
            import nuclick_core.inference.models as models
        except ImportError as exc:
            raise WorkflowError(
                "the workflow reads the model registry with the nuclick_core package, which "
                f"cannot be imported here ({exc}); install the project into the environment "
                "that runs snakemake (`pip install -e .`, or `make run`)"
            ) from exc
    return models


def warn_when_nuclick_is_missing():
    """Rules call the `nuclick` command: warn early when it cannot be found.

    Running `.venv/bin/snakemake` without activating the virtualenv leaves `.venv/bin` off PATH;
    with `--sdm conda` the rules' envs provide the command instead.
    """
    if shutil.which("nuclick") is None and (
        DeploymentMethod.CONDA not in workflow.deployment_settings.deployment_method
    ):
        beside = Path(sys.executable).parent / "nuclick"
        hint = (
            f"put {beside.parent} on PATH (e.g. `. {beside.parent}/activate`)"
            if beside.is_file()
            else "install the project (`pip install -e '.[cpu]'`)"
        )
        logger.warning(
            f"The command `nuclick` is not on PATH, so the rules would fail: {hint}, "
            "or run with `--sdm conda`."
        )


warn_when_nuclick_is_missing()
# envs/*.post-deploy.sh install the project from this folder into the rules' conda envs (the
# env files are copied before use, so a relative `pip: [-e ..]` would not find it).
os.environ.setdefault("NUCLICK_WORKFLOW_DIR", str(Path(workflow.basedir).resolve()))

SAMPLES = read_sample_sheet(config["samples"])
# Rows as plain dicts: the input functions run several times per job, and a pandas row lookup
# for each call made half of the DAG time of a 1,000-slide sheet.
SAMPLE_ROWS = SAMPLES.to_dict("index")


wildcard_constraints:
    sample=r"(?!\.+/)[A-Za-z0-9_.-]+",


def final_outputs():
    """The workflow's targets: the instance tables (GeoParquet, GeoJSON) of every sample."""
    return expand(
        "results/{sample}/instances.{ext}",
        sample=SAMPLES.index,
        ext=["parquet", "geojson"],
    )


def cohort_state(wildcards):
    """A fingerprint of every segment table and log that exists now. It is a param, not an
    input, of the summary: the summary is redone whenever a slide's table or log changes
    (Snakemake's params rerun trigger) but never asks for a slide to be segmented."""
    state = []
    for sample in SAMPLES.index:
        for path in (
            f"results/{sample}/instances.parquet",
            f"logs/segment/{sample}.log",
        ):
            if os.path.exists(path):
                st = os.stat(path)
                state.append(f"{path}:{st.st_mtime_ns}:{st.st_size}")
    return hashlib.sha1("\n".join(state).encode()).hexdigest()


def sample_row(wildcards):
    """The sample sheet row of `wildcards.sample`."""
    row = SAMPLE_ROWS.get(wildcards.sample)
    if row is None:
        raise WorkflowError(
            f"sample {wildcards.sample!r} is not in the sample sheet {config['samples']}; "
            f"its samples are {', '.join(SAMPLES.index)}"
        )
    return row


def slide_path(wildcards):
    return sample_row(wildcards)["slide"]


def annotations_path(wildcards):
    return sample_row(wildcards)["annotations"]


def sample_object(wildcards):
    return sample_row(wildcards)["object"]


def sample_mpp(wildcards):
    """The sample sheet's mpp, or None to use the slide's own."""
    mpp = sample_row(wildcards)["mpp"]
    return None if pd.isna(mpp) else float(mpp)


def sample_model(wildcards):
    """The sample's model (name or folder), else the config's for its object type, else None
    (the registry's current model)."""
    model = sample_row(wildcards)["model"]
    if pd.isna(model):
        return config["segment"]["models"][sample_object(wildcards)]
    return model


def model_files(wildcards):
    """The model's files when it is given as a folder, so replacing the model reruns the
    slides that use it; [] for a name under models/ or the registry's current model."""
    model = sample_model(wildcards)
    if model is None or not (Path(model) / "model.json").is_file():
        return []
    return [str(Path(model) / "model.onnx"), str(Path(model) / "model.json")]


def segment_conda_env():
    """The segment rule's conda env (relative to workflow/rules/): gpu.yaml (onnxruntime-gpu)
    when the config asks for a GPU provider, else cpu.yaml."""
    gpu = config["segment"]["provider"] in ("cuda", "tensorrt")
    return "../../envs/gpu.yaml" if gpu else "../../envs/cpu.yaml"


def segment_options(wildcards):
    """Optional `nuclick segment` flags of the sample (--mpp, --model), shell-quoted."""
    options = []
    mpp = sample_mpp(wildcards)
    if mpp is not None:
        options += ["--mpp", repr(mpp)]
    model = sample_model(wildcards)
    if model is not None:
        options += ["--model", model]
    return shlex.join(options)


wildcard_constraints:
    object="nucleus|cell|gland",
    model=r"[A-Za-z0-9_.-]+",


def current_models():
    """Object type -> current model name, from models/registry.json (empty when absent)."""
    models = import_package()
    return models.current_models(Path(workflow.basedir) / "models")


def current_model_figures(wildcards):
    """The figures of the current model for the candidate's object type ([] when there is
    none: the first candidate is promoted without comparison)."""
    name = current_models().get(wildcards.object)
    return (
        []
        if name is None
        else f"results/evaluation/{wildcards.object}/{name}/figures.json"
    )


def train_config(wildcards):
    return config["train"][wildcards.object]


def image_offset(wildcards):
    """The recipe's image offset as `--image-offset=DX,DY` (the `=` keeps a negative DX from
    reading as an option); nothing when there is none."""
    dx, dy = train_config(wildcards)["image_offset"]
    return f"--image-offset={dx},{dy}" if (dx, dy) != (0, 0) else ""


def train_recipe(wildcards):
    """The object type's training recipe as one JSON value (`nuclick train --recipe`, which
    validates it)."""
    return json.dumps(train_config(wildcards), sort_keys=True)


def checkpoint_dir(wildcards):
    return f"{config['train_checkpoints']}/{wildcards.object}-{wildcards.tag}"


def convert_args(wildcards):
    c = config["convert"]
    if not c["images"] or not c["points"]:
        raise ValueError(
            "snakemake convert needs convert.images and convert.points in the config "
            "(config/config.yaml or --configfile)"
        )
    args = [
        f"--images {shlex.quote(c['images'])}",
        f"--points {shlex.quote(c['points'])}",
    ]
    args.append(f"--object {c['object']} --batch-size {c['batch_size']}")
    if c["model"]:
        args.append(f"--model {shlex.quote(c['model'])}")
    if c["mpp"]:
        args.append(f"--mpp {c['mpp']}")
    if not c["jitter"]:
        args.append("--no-jitter")
    return " ".join(args)


def check_slurm_requests():
    """Under the SLURM executor, stop before submitting when a job asks for more CPUs, memory,
    GPUs or time than any node of its partition has (such a job would stay PENDING forever);
    NUCLICK_SLURM_CHECK=0 skips the check."""
    if (
        workflow.executor_plugin.name != "slurm"
        or os.environ.get("NUCLICK_SLURM_CHECK") == "0"
    ):
        return
    import_package()
    from nuclick_core import slurm
    from nuclick_core.errors import NuclickError
    from snakemake.common.tbdstring import TBDString

    try:
        default = None
        requests = []
        for job in workflow.dag.needrun_jobs():
            if job.is_local:
                continue
            # Evaluated afresh: under a remote executor the DAG leaves expression-valued
            # resources (`16000 * attempt`) as <TBD> until submission.
            res = {
                k: v
                for k, v in job.rule.expand_resources(
                    job.wildcards_dict, job.input, job.attempt
                ).items()
                if not isinstance(v, TBDString)
            }
            if not res.get("slurm_partition") and default is None:
                default = slurm.default_partition()
            cpus = int(res.get("cpus_per_task") or job.threads)
            gres = re.search(r"gpu(?::[^:]+)?:(\d+)", str(res.get("gres") or ""))
            mem = res.get("mem_mb") or res.get("mem_mb_per_cpu", 0) * cpus
            requests.append(
                slurm.Request(
                    job.rule.name,
                    str(res.get("slurm_partition") or default),
                    cpus,
                    float(mem or 0),
                    float(res.get("runtime") or 0),
                    int(res.get("gpu") or (gres.group(1) if gres else 0)),
                )
            )
        found = slurm.check_requests(requests)
    except NuclickError as exc:
        raise WorkflowError(f"checking the jobs' SLURM requests: {exc}") from exc
    if found:
        raise WorkflowError(
            "these jobs could never start (they would stay PENDING) and nothing was "
            "submitted:\n  " + "\n  ".join(found)
        )
    logger.info(f"SLURM requests of {len(requests)} jobs fit their partitions")
