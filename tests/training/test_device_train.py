"""The GPU run, on the CPU at a tiny size: time-boxed training, fp16 chunks back, reassembly,
export; and the chunk format's own checks."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from nuclick_core.cli.main import main  # noqa: E402
from nuclick_core.data.synth import nuclei_scene, scene_to_png  # noqa: E402
from nuclick_core.errors import ModelError  # noqa: E402
from nuclick_core.training.chunks import (  # noqa: E402
    MANIFEST,
    assemble_checkpoint,
    load_chunks,
    save_chunks,
)
from nuclick_core.training.network import NuClick  # noqa: E402

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "device_train.py"


def test_chunks_round_trip_in_fp16(tmp_path) -> None:
    torch.manual_seed(0)
    state = NuClick(width=0.0625).state_dict()
    manifest = save_chunks(state, tmp_path, config={"width": 0.0625}, chunk_mib=0.1)
    assert len(manifest["chunks"]) > 1
    assert all(c["bytes"] <= 0.1 * 2**20 for c in manifest["chunks"])
    back, read = load_chunks(tmp_path)
    assert read["config"] == {"width": 0.0625} and set(back) == set(state)
    for k, v in state.items():
        if v.is_floating_point():
            assert back[k].dtype == torch.float32
            torch.testing.assert_close(back[k], v.half().float(), rtol=0, atol=0)
        else:
            assert torch.equal(back[k], v)


def test_chunks_refuse_what_cannot_come_back_and_damaged_files(tmp_path) -> None:
    state = NuClick(width=0.0625).state_dict()
    with pytest.raises(ModelError, match=r"over the 0\.1 MiB"):
        save_chunks(state, tmp_path / "big", config={}, max_total_mib=0.1)
    save_chunks(state, tmp_path / "ok", config={}, chunk_mib=0.2)
    first = tmp_path / "ok" / "weights.000"
    first.write_bytes(b"x" + first.read_bytes()[1:])
    with pytest.raises(ModelError, match="does not match its sha256"):
        load_chunks(tmp_path / "ok")
    with pytest.raises(ModelError, match=f"holds no {re.escape(MANIFEST)}"):
        load_chunks(tmp_path)


def test_device_script_trains_on_cpu_and_its_weights_export(tmp_path) -> None:
    data = tmp_path / "data"
    for sub in ("images", "labels"):
        (data / sub).mkdir(parents=True)
    for name, seed in (("a", 0), ("val", 1)):
        scene = nuclei_scene(size=(96, 96), n_nuclei=8, seed=seed)
        scene_to_png(scene, data / "images" / f"{name}.png", data / "labels" / f"{name}.png")
    run = tmp_path / "run"
    argv = ["train", "--data", str(data), "--val-names", "val", "--width", "0.0625"]
    argv += ["--patch-size", "64", "--batch-size", "4", "--max-steps", "3", "--workers", "0"]
    argv += ["--log-every", "1", "--out", str(run), "--chunk-mib", "0.25"]
    done = subprocess.run(
        [sys.executable, str(SCRIPT), *argv], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout[done.stdout.index("{") :])
    assert summary["steps"] == 3 and summary["patches"] == 12 and summary["device"]
    assert len(summary["chunks"]) >= 2 and summary["weights_mib"] < 1
    manifest = json.loads((run / MANIFEST).read_text())
    assert manifest["config"]["extra"]["train_images"] == ["a"]  # the validation image stays out
    ckpt = assemble_checkpoint(run, tmp_path / "device.pt")
    out = tmp_path / "models" / "device-tiny"
    code = main(
        ["export", "--checkpoint", str(ckpt), "--out", str(out), "--mpp", "0.5", "--min-size", "5"]
    )
    assert code == 0
    card = json.loads((out / "model.json").read_text())
    assert card["width"] == 0.0625 and card["patch_size"] == 64
    assert card["training"]["config"]["bce_norm"] == "pixels"
    assert card["parity_max_abs_diff"] < 1e-4
