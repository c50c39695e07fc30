"""The network, the paper's loss, ONNX export and parity."""

from __future__ import annotations

import json

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


def _numpy_loss(z: np.ndarray, g: np.ndarray, o: np.ndarray, norm: str, cap=None) -> float:
    """Equation 1 by hand, per sample, then the batch mean."""
    total = 0.0
    for zk, gk, ok in zip(z, g, o, strict=True):
        alpha = max(ok.sum() / max(gk.sum(), 1.0), 1.0)
        alpha = min(alpha, max(cap, 1.0)) if cap is not None else alpha
        w = alpha**2 * gk + alpha * ok + 1
        p = 1 / (1 + np.exp(-zk))
        bce = -(gk * np.log(p) + (1 - gk) * np.log(1 - p))
        wbce = (w * bce).sum() / (bce.size if norm == "pixels" else w.sum())
        dice = 1 - (2 * (p * gk).sum() + 1) / (p.sum() + gk.sum() + 1)
        total += wbce + dice
    return total / len(z)


def test_loss_is_equation_1_on_a_hand_computed_patch() -> None:
    """|G| = 2, |G~| = 4 -> alpha = 2; p = 0.5 everywhere, so BCE = ln 2 per pixel and
    W is 4 + 1 on G, 2 + 1 on G~ and 1 elsewhere: sum W / n = (2 * 5 + 4 * 3 + 10) / 16 = 2, so
    the weighted BCE is 2 ln 2."""
    target = torch.zeros(1, 1, 4, 4)
    target[0, 0, 0, :2] = 1
    others = torch.zeros(1, 1, 4, 4)
    others[0, 0, 3, :] = 1
    logits = torch.zeros(1, 1, 4, 4)
    dice = 1 - (2 * 0.5 * 2 + 1) / (0.5 * 16 + 2 + 1)
    assert float(nuclick_loss(logits, target, others)) == pytest.approx(
        2 * np.log(2.0) + dice, rel=1e-6
    )
    # the former normalisation, by sum W, is a named option: a weighted mean of ln 2
    assert float(nuclick_loss(logits, target, others, bce_norm="weights")) == pytest.approx(
        np.log(2.0) + dice, rel=1e-6
    )
    # a wrong pixel inside G costs alpha^2 = 4 times a wrong background pixel
    bad_g, bad_bg = logits.clone(), logits.clone()
    bad_g[0, 0, 0, 0], bad_bg[0, 0, 1, 1] = -5, 5
    extra_g = float(nuclick_loss(bad_g, target, others)) - float(
        nuclick_loss(logits, target, others)
    )
    extra_bg = float(nuclick_loss(bad_bg, target, others)) - float(
        nuclick_loss(logits, target, others)
    )
    assert extra_g > 2 * extra_bg


@pytest.mark.parametrize("norm", ["pixels", "weights"])
@pytest.mark.parametrize(
    ("alpha_max", "alphas"), [(None, (3.0, 1.0)), (2.0, (2.0, 1.0)), (1.0, (1.0, 1.0))]
)
def test_loss_matches_numpy_on_a_batch_of_two(norm, alpha_max, alphas) -> None:
    """Sample 0 has alpha |G~| / |G| = 6 / 2 = 3, sample 1 alpha 1 (no neighbours); a cap
    lowers alpha, never below 1. Checked against a numpy transcription of equation 1."""
    target = torch.zeros(2, 1, 4, 4)
    target[0, 0, 0, :2] = 1
    target[1, 0, 1:3, 1:3] = 1
    others = torch.zeros(2, 1, 4, 4)
    others[0, 0, 2:, 1:] = 1
    logits = torch.linspace(-3, 3, 32).reshape(2, 1, 4, 4)
    g, o, z = (a.numpy()[:, 0] for a in (target, others, logits))
    got = float(nuclick_loss(logits, target, others, alpha_max=alpha_max, bce_norm=norm))
    assert got == pytest.approx(_numpy_loss(z, g, o, norm, alpha_max), rel=1e-5)
    # the two samples' weighting differs: the per-sample losses are not interchangeable
    swapped = float(
        nuclick_loss(logits.flip(0), target, others, alpha_max=alpha_max, bce_norm=norm)
    )
    assert swapped != pytest.approx(got, rel=1e-4)


def test_unknown_loss_normalisation_is_an_error() -> None:
    z = torch.zeros(1, 1, 2, 2)
    with pytest.raises(ValueError, match="bce_norm"):
        nuclick_loss(z, z, z, bce_norm="mean")


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


def test_a_parity_failure_leaves_the_model_folder_as_it_was(tmp_path, monkeypatch) -> None:
    import json

    import nuclick_core.training.export as export
    from nuclick_core.errors import ModelError

    net = NuClick(width=0.0625)
    ckpt = tmp_path / "best.pt"
    cfg = {"width": 0.0625, "patch_size": 64, "object_type": "nucleus"}
    torch.save(
        {"model": net.state_dict(), "config": cfg, "epoch": 0, "best": 0.5, "history": []}, ckpt
    )
    out = tmp_path / "m"
    pp = {"threshold": 0.5, "min_size": 5, "min_hole": 10}
    export.export_model(ckpt, out, name="m", mpp=0.5, postprocess=pp)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    monkeypatch.setattr(export, "parity", lambda *a, **k: 1.0)
    with pytest.raises(ModelError, match=r"parity 1\.00e\+00 exceeds .* nothing was written"):
        export.export_model(ckpt, out, name="m", mpp=0.5, postprocess=pp)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert json.loads((out / "model.json").read_text())["parity_max_abs_diff"] <= 1e-4


def _with_tiny_weights(model_dir) -> int:
    """Give a tiny exported model denormal and near-zero weights, as weight decay leaves them
    in unused channels; the number planted."""
    import onnx
    from onnx import numpy_helper

    from nuclick_core.io.files import sha256_file

    path = model_dir / "model.onnx"
    model = onnx.load(str(path))
    planted = 0
    for k, init in enumerate(model.graph.initializer):
        w = numpy_helper.to_array(init).copy()
        if w.dtype != np.float32 or w.ndim != 4:
            continue
        flat = w.reshape(-1)
        flat[:: 7 + k % 3] = np.float32(1e-39) if k % 2 else np.float32(-3e-25)
        planted += len(flat[:: 7 + k % 3])
        init.CopyFrom(numpy_helper.from_array(w, init.name))
    onnx.save(model, str(path))
    card = json.loads((model_dir / "model.json").read_text())
    card["sha256"] = sha256_file(path)
    (model_dir / "model.json").write_text(json.dumps(card))
    return planted


def test_zeroing_tiny_weights_keeps_the_output_and_records_it(tmp_path) -> None:
    """(#14) Denormal weights cost Intel CPUs tens of times the time; zeroing every weight
    below 1e-20 leaves ONNX Runtime's output as it was, and the card says what was done."""
    import onnxruntime as ort

    from nuclick_core.inference.models import load_card
    from nuclick_core.training.export import TINY_WEIGHT, zero_tiny_weights_in_model
    from tests.conftest import export_tiny_model

    model_dir = export_tiny_model(tmp_path / "m")
    planted = _with_tiny_weights(model_dir)
    before_sha = load_card(model_dir).sha256
    x = np.random.default_rng(3).random((2, 5, 64, 64), dtype=np.float32)

    def run() -> np.ndarray:
        sess = ort.InferenceSession(
            str(model_dir / "model.onnx"), providers=["CPUExecutionProvider"]
        )
        return sess.run(None, {"input": x})[0]

    want = run()
    card = zero_tiny_weights_in_model(model_dir)
    assert card["tiny_weights"]["zeroed"] >= planted
    assert card["tiny_weights"]["sha256_before"] == before_sha
    assert card["tiny_weights"]["below"] == TINY_WEIGHT
    assert load_card(model_dir).sha256 == card["sha256"] != before_sha  # card matches the file
    np.testing.assert_allclose(run(), want, atol=1e-6)
    # a second pass finds nothing and changes nothing
    again = zero_tiny_weights_in_model(model_dir)
    assert again["sha256"] == card["sha256"]


def test_zeroing_refuses_a_model_that_is_not_its_card(tmp_path) -> None:
    from nuclick_core.errors import ModelError
    from nuclick_core.training.export import zero_tiny_weights_in_model
    from tests.conftest import export_tiny_model

    model_dir = export_tiny_model(tmp_path / "m")
    with open(model_dir / "model.onnx", "ab") as f:
        f.write(b"\0")
    before = (model_dir / "model.onnx").read_bytes()
    with pytest.raises(ModelError, match="sha256"):
        zero_tiny_weights_in_model(model_dir)
    assert (model_dir / "model.onnx").read_bytes() == before
