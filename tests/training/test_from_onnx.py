"""A trainable network read back from an exported model.onnx (fine-tuning a shipped model)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")

from nuclick_core.errors import ModelError  # noqa: E402
from nuclick_core.training.export import export_onnx, parity  # noqa: E402
from nuclick_core.training.from_onnx import _module_path, net_from_onnx  # noqa: E402
from nuclick_core.training.network import NuClick  # noqa: E402
from nuclick_core.training.train import TrainConfig, train  # noqa: E402


def _trained_like(width: float, seed: int = 0) -> NuClick:
    """A network whose batch norms hold non-trivial statistics and affine terms, as after
    training, so folding them into the convolutions is really tested."""
    torch.manual_seed(seed)
    net = NuClick(width=width)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.1, 0.1)
    return net.eval()


def test_scope_names_map_to_module_paths() -> None:
    assert _module_path("/net/enc2/enc2.0/conv2/conv2.0/Conv") == "enc2.0.conv2.0"
    assert _module_path("/net/stem/stem.0/stem.0.0/Conv") == "stem.0.0"
    assert _module_path("/net/up4/ConvTranspose") == "up4"
    with pytest.raises(ValueError):
        _module_path("/other/Conv")


@pytest.mark.parametrize("width", [0.0625, 0.125])
def test_read_back_network_computes_what_the_onnx_file_computes(
    tmp_path: Path, width: float
) -> None:
    net = _trained_like(width)
    export_onnx(net, tmp_path / "model.onnx", patch_size=64)
    back = net_from_onnx(tmp_path)  # the folder works as well as the file
    assert back.width == width
    assert parity(back, tmp_path / "model.onnx", patch_size=64) < 1e-4
    # the batch norms stay in eval mode whatever train() says, so a training step starts from
    # the same function instead of a batch's statistics
    back.train()
    assert back.training
    assert all(not m.training for m in back.modules() if isinstance(m, torch.nn.BatchNorm2d))
    x = torch.rand(2, 5, 64, 64)
    with torch.no_grad():
        assert torch.allclose(back(x), net(x), atol=1e-4)


def test_a_file_that_is_not_a_nuclick_export_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "model.onnx"
    bad.write_bytes(b"not a protobuf at all")
    with pytest.raises(ModelError, match=r"model\.onnx: not a readable ONNX file"):
        net_from_onnx(bad)
    other = torch.nn.Sequential(torch.nn.Conv2d(5, 8, 3), torch.nn.ReLU())
    torch.onnx.export(other, (torch.zeros(1, 5, 32, 32),), str(bad), dynamo=False)
    with pytest.raises(ModelError, match=r"model\.onnx: .*NuClick"):
        net_from_onnx(bad)


def test_fine_tuning_starts_from_a_model_folder(tmp_path: Path) -> None:
    net = _trained_like(0.0625)
    export_onnx(net, tmp_path / "m" / "model.onnx", patch_size=64)
    rng = np.random.default_rng(0)

    def draw(r: np.random.Generator, n: int) -> tuple[np.ndarray, ...]:
        x = r.random((n, 5, 64, 64), dtype=np.float32)
        y = np.zeros((n, 1, 64, 64), np.float32)
        y[:, :, 20:40, 20:40] = 1
        return x, y, np.zeros_like(y)

    val = draw(rng, 4)
    cfg = TrainConfig(
        object_type="nucleus", width=0.0625, patch_size=64, batch_size=2, epochs=1,
        steps_per_epoch=2, threads=1, val_objects=4,
    )  # fmt: skip
    lines: list[str] = []
    best = train(cfg, draw, val, tmp_path / "ft", init=tmp_path / "m", progress=lines.append)
    assert lines[0] == f"initialised from {tmp_path / 'm' / 'model.onnx'}"
    state = torch.load(best, weights_only=False)
    assert state["frozen_batch_norm"] is True
    # the running statistics were not touched by training
    key = "stem.0.1.running_mean"
    assert torch.count_nonzero(state["model"][key]) == 0


def test_a_shipped_model_is_found_by_name() -> None:
    from nuclick_core.training.train import init_source

    assert init_source(Path("nuclei-light-2"), "nucleus").name == "model.onnx"
    with pytest.raises(ModelError, match="model 'no-such-model' not found"):
        init_source(Path("no-such-model"), "nucleus")
