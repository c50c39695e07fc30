"""Conversion branch (`snakemake convert`): a folder of point-labelled images to a training
folder, one job per shard of images (config `convert.shards`; never one job per image, so ten
thousand tiles stay cheap), then one job that flags and summarises all shards together (area
outliers are judged over the whole dataset)."""


rule convert_shard:
    output:
        f"{config['convert']['out']}/shards/{{k}}-of-{config['convert']['shards']}.json",
    log:
        "logs/convert/shard-{k}.log",
    conda:
        "../../envs/cpu.yaml"
    threads: config["convert"]["threads"]
    params:
        args=convert_args,
        out=lambda wildcards, output: os.path.dirname(os.path.dirname(output[0])),
        shards=config["convert"]["shards"],
    shell:
        "nuclick convert {params.args} --out {params.out:q}"
        " --shard {wildcards.k}/{params.shards} --threads {threads} > {log:q} 2>&1"


rule convert:
    input:
        expand(
            f"{config['convert']['out']}/shards/{{k}}-of-{config['convert']['shards']}.json",
            k=range(config["convert"]["shards"]),
        ),
    output:
        manifest=f"{config['convert']['out']}/manifest.json",
        summary=f"{config['convert']['out']}/summary.html",
    log:
        "logs/convert/finish.log",
    conda:
        "../../envs/cpu.yaml"
    params:
        out=lambda wildcards, output: os.path.dirname(output.manifest),
        shards=config["convert"]["shards"],
    shell:
        "nuclick convert --finish {params.shards} --out {params.out:q} > {log:q} 2>&1"
