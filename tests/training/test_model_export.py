"""The network, the paper's loss, ONNX export and parity."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from nuclick_core.training.export import export_onnx, parity  # noqa: E402
from nuclick_core.training.network import NuClick, count_parameters  # noqa: E402
from nuclick_core.training.train import nuclick_loss  # noqa: E402


def test_full_network_matches_the_paper_size() -> None:
    # The public implementations have 66.8M parameters.
    assert count_parameters(NuClick(width=1.0)) == pytest.approx(66.8e6, rel=0.002)


def test_light_network_size_and_shape() -> None:
    net = NuClick(width=0.25)
    assert 3.5e6 < count_parameters(net) < 5e6
    assert net(torch.zeros(1, 5, 64, 64)).shape == (1, 1, 64, 64)


def test_loss_weights_follow_equation_1() -> None:
    """W = alpha^2 G + alpha G~ + 1, alpha = max(|G~| / |G|, 1), BCE normalised by sum W."""
    target = torch.zeros(1, 1, 4, 4)
    target[0, 0, 0, :2] = 1  # |G| = 2
    others = torch.zeros(1, 1, 4, 4)
    others[0, 0, 3, :] = 1  # |G~| = 4 -> alpha = 2
    logits = torch.zeros(1, 1, 4, 4)  # p = 0.5 everywhere: BCE = ln 2 per pixel
    loss = nuclick_loss(logits, target, others)
    bce = np.log(2.0)  # weighted mean of a constant is the constant
    dice = 1 - (2 * 0.5 * 2 + 1) / (0.5 * 16 + 2 + 1)
    assert float(loss) == pytest.approx(bce + dice, rel=1e-5)
    # a wrong pixel inside G costs alpha^2 = 4 times a wrong background pixel
    logits_bad_g = logits.clone()
    logits_bad_g[0, 0, 0, 0] = -5
    logits_bad_bg = logits.clone()
    logits_bad_bg[0, 0, 1, 1] = 5
    extra_g = float(nuclick_loss(logits_bad_g, target, others)) - float(loss)
    extra_bg = float(nuclick_loss(logits_bad_bg, target, others)) - float(loss)
    assert extra_g > 2 * extra_bg


@pytest.mark.parametrize(("alpha_max", "alpha"), [(None, 3.0), (2.0, 2.0), (1.0, 1.0), (0.5, 1.0)])
def test_loss_alpha_cap(alpha_max: float | None, alpha: float) -> None:
    """alpha = |G~| / |G| = 3 here; a cap lowers it, never below 1. Checked against numpy."""
    target = torch.zeros(1, 1, 4, 4)
    target[0, 0, 0, :2] = 1  # |G| = 2
    others = torch.zeros(1, 1, 4, 4)
    others[0, 0, 2:, 1:] = 1  # |G~| = 6
    logits = torch.linspace(-3, 3, 16).reshape(1, 1, 4, 4)
    g, o, z = target.numpy()[0, 0], others.numpy()[0, 0], logits.numpy()[0, 0]
    p = 1 / (1 + np.exp(-z))
    w = alpha**2 * g + alpha * o + 1
    bce = -(g * np.log(p) + (1 - g) * np.log(1 - p))
    dice = 1 - (2 * (p * g).sum() + 1) / (p.sum() + g.sum() + 1)
    expected = (w * bce).sum() / w.sum() + dice
    got = float(nuclick_loss(logits, target, others, alpha_max=alpha_max))
    assert got == pytest.approx(expected, rel=1e-5)


def test_onnx_export_parity(tmp_path) -> None:
    torch.manual_seed(0)
    net = NuClick(width=0.125)
    # non-trivial batch-norm statistics, as after training
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
    path = tmp_path / "m.onnx"
    export_onnx(net, path, patch_size=64)
    assert parity(net, path, patch_size=64, batch=3) <= 1e-4


def test_exported_model_has_no_same_upper_autopad(tmp_path) -> None:
    onnx = pytest.importorskip("onnx")
    path = tmp_path / "m.onnx"
    export_onnx(NuClick(width=0.0625), path, patch_size=64)
    for node in onnx.load(str(path)).graph.node:
        for attr in node.attribute:
            if attr.name == "auto_pad":
                assert attr.s in (b"NOTSET", b"VALID")


def test_test_time_augmentation_over_all_views_is_equivariant(tiny_model) -> None:
    """Averaging over the whole dihedral group, each view mapped back, makes the prediction of
    a turned or flipped patch the turned or flipped prediction: a wrong inverse breaks this."""
    from nuclick_core.inference.models import load_card
    from nuclick_core.inference.runtime import OnnxPredictor

    card = load_card(tiny_model)
    tta = OnnxPredictor(card, batch_size=4, threads=1, tta=8)
    rng = np.random.default_rng(0)
    x = rng.random((2, 5, 64, 64), dtype=np.float32)
    y = tta(x)
    assert y.shape == (2, 64, 64)
    for k in range(4):
        for flip in (False, True):
            tx = np.rot90(x, k, axes=(2, 3))
            ty = np.rot90(y, k, axes=(1, 2))
            if flip:
                tx, ty = tx[..., ::-1], ty[..., ::-1]
            assert np.allclose(tta(np.ascontiguousarray(tx)), ty, atol=1e-5)
    assert not np.allclose(OnnxPredictor(card, batch_size=4, threads=1, tta=1)(x), y, atol=1e-5)
