"""Training branch and scheduled retraining: train -> export -> evaluate -> promote.

A candidate is named `{object}-{tag}` (config `retrain_tag`, e.g. the date) and lands in
models/{object}-{tag}/. It is evaluated on the object type's fixed validation set (the images
named in config `train.<object>.val_names`), as is the registry's current model, and
`nuclick promote` makes it current only if it wins by `promote.margin` on `promote.metric`.
"""


rule train:
    output:
        f"{config['train_checkpoints']}/{{object}}-{{tag}}/best.pt",
    log:
        "logs/train/{object}-{tag}.log",
    conda:
        "../../envs/train.yaml"
    threads: config["train_threads"]
    params:
        recipe=train_recipe,
        out=checkpoint_dir,
        device=config["train_device"],
    shell:
        "nuclick train --recipe {params.recipe:q} --object {wildcards.object}"
        " --threads {threads} --device {params.device} --out {params.out:q} > {log:q} 2>&1"


rule export_candidate:
    input:
        rules.train.output,
    output:
        onnx="models/{object}-{tag}/model.onnx",
        card="models/{object}-{tag}/model.json",
    log:
        "logs/export/{object}-{tag}.log",
    conda:
        "../../envs/train.yaml"
    params:
        cfg=train_config,
        out=lambda wildcards, output: os.path.dirname(output.onnx),
        # the model runs at the grid it was trained on: the data's mpp times the downscale
        mpp=lambda wildcards: train_config(wildcards)["mpp"]
        * train_config(wildcards)["downscale"],
    shell:
        "nuclick export --checkpoint {input:q} --out {params.out:q} --mpp {params.mpp}"
        " --threshold {params.cfg[threshold]} --min-size {params.cfg[min_size]}"
        " --min-hole {params.cfg[min_hole]} --click-tolerance {params.cfg[click_tolerance]}"
        " --card-extra {params.cfg[card]:q} > {log:q} 2>&1"


rule evaluate:
    input:
        "models/{model}/model.onnx",
    output:
        figures="results/evaluation/{object}/{model}/figures.json",
        report="results/evaluation/{object}/{model}/report.html",
    log:
        "logs/evaluate/{object}/{model}.log",
    conda:
        "../../envs/cpu.yaml"
    threads: config["segment"]["threads"]
    params:
        cfg=train_config,
        names=lambda wildcards: ",".join(train_config(wildcards)["val_names"]),
        offset=image_offset,
    shell:
        "nuclick evaluate --model models/{wildcards.model} --object {wildcards.object}"
        " --data {params.cfg[data]:q} --format {params.cfg[format]} --names {params.names:q}"
        " --mpp {params.cfg[mpp]} {params.offset} --threads {threads}"
        " --out {output.figures:q} --report {output.report:q} > {log:q} 2>&1"


rule promote:
    input:
        candidate="results/evaluation/{object}/{object}-{tag}/figures.json",
        current=current_model_figures,
        model="models/{object}-{tag}/model.onnx",
    output:
        "results/evaluation/{object}/{object}-{tag}/promotion.json",
    log:
        "logs/promote/{object}-{tag}.log",
    conda:
        "../../envs/cpu.yaml"
    params:
        current=lambda wildcards, input: (
            f"--current-figures {input.current}" if input.current else ""
        ),
        metric=lambda wildcards: train_config(wildcards).get(
            "promote_metric", config["promote"]["metric"]
        ),
        margin=config["promote"]["margin"],
        max_drop=config["promote"]["max_drop"],
    shell:
        "nuclick promote --candidate models/{wildcards.object}-{wildcards.tag}"
        " --candidate-figures {input.candidate:q} {params.current}"
        " --metric {params.metric} --margin {params.margin} --max-drop {params.max_drop}"
        " --out {output:q} > {log:q} 2>&1"


rule retrain:
    input:
        expand(
            "results/evaluation/{object}/{object}-{tag}/promotion.json",
            object=config["retrain_objects"],
            tag=config["retrain_tag"],
        ),


rule evaluate_current:
    input:
        [
            f"results/evaluation/{obj}/{name}/report.html"
            for obj, name in current_models().items()
            if obj in config["train"]
        ],
