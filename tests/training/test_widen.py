"""Function-preserving widening (Net2WiderNet) of a trained NuClick."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from nuclick_core.training.network import NuClick  # noqa: E402
from nuclick_core.training.widen import _channel_map, widen  # noqa: E402


def _trained_like(width: float) -> NuClick:
    """A network with non-trivial batch-norm statistics, as after training."""
    torch.manual_seed(1)
    net = NuClick(width=width)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.1, 0.1)
    return net


@pytest.mark.parametrize("mode", ["eval", "train"])
def test_widened_network_computes_the_same_function(mode: str) -> None:
    small = _trained_like(0.125)
    big = widen(small, seed=3)
    assert big.width == 0.25
    assert sum(p.numel() for p in big.parameters()) > 3 * sum(p.numel() for p in small.parameters())
    getattr(small, mode)()
    getattr(big, mode)()
    x = torch.rand(2, 5, 64, 64)
    with torch.no_grad():
        a, b = small(x), big(x)
    assert torch.allclose(a, b, atol=1e-4 * float(a.abs().max())), float((a - b).abs().max())


def test_duplicated_channels_get_different_gradients() -> None:
    """Unequal weight shares break the symmetry, so the copies can learn different features."""
    big = widen(_trained_like(0.125), seed=0).train()
    loss = big(torch.rand(2, 5, 64, 64)).sigmoid().mean()
    loss.backward()
    grad = big.enc4[0].conv1[0].weight.grad  # 32 outputs: channel i and i + 16 are copies
    half = grad.shape[0] // 2
    assert not torch.allclose(grad[:half], grad[half:])


def test_channel_map_splits_concatenations_part_by_part() -> None:
    src, copy = _channel_map(4, 8, parts=2)
    assert src.tolist() == [0, 1, 0, 1, 2, 3, 2, 3]
    assert copy.tolist() == [0, 0, 1, 1, 0, 0, 1, 1]
    assert _channel_map(5, 5, parts=1)[0].tolist() == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match="cannot widen 4 channels to 12"):
        _channel_map(4, 12, parts=1)
