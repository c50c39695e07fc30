"""The network input is built in one place, the same way for inference and training."""

from __future__ import annotations

import numpy as np
import pytest

from nuclick_core.inference.signals import network_input, point_map


@pytest.mark.parametrize("dtype", [np.uint8, np.float32, np.float64])
def test_network_input_channels(dtype) -> None:
    rng = np.random.default_rng(0)
    rgb8 = rng.integers(0, 256, (6, 5, 3), dtype=np.uint8)
    rgb = rgb8 if dtype == np.uint8 else (rgb8 / 255.0).astype(dtype)
    inclusion = point_map((6, 5), np.array([[2.0, 3.0]]))
    exclusion = point_map((6, 5), np.array([[2.0, 3.0], [4.0, 0.0]]))
    x = network_input(rgb, inclusion, exclusion)
    assert x.dtype == np.float32 and x.shape == (5, 6, 5)
    np.testing.assert_allclose(x[:3], rgb8.transpose(2, 0, 1) / 255.0, rtol=0, atol=1e-7)
    assert x[3, 3, 2] == 1 and x[3].sum() == 1
    assert x[4, 3, 2] == 0  # the clicked pixel is never its own neighbour
    assert x[4, 0, 4] == 1 and x[4].sum() == 1
    assert exclusion[3, 2] == 1  # the caller's map is left alone


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_a_batch_of_inputs_equals_its_patches_built_one_by_one(dtype) -> None:
    """Leading axes are a batch: one call gives each patch's input bit for bit, with one
    inclusion map broadcast over the batch or one per patch."""
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, (4, 6, 5, 3), dtype=np.uint8)
    rgb = rgb if dtype == np.uint8 else (rgb / 255.0).astype(dtype)
    exclusion = (rng.random((4, 6, 5)) < 0.2).astype(np.float32)
    shared = point_map((6, 5), np.array([[2.0, 3.0]]))
    each = (rng.random((4, 6, 5)) < 0.1).astype(np.float32)
    for inclusion in (shared, each):
        batch = network_input(rgb, inclusion, exclusion)
        assert batch.shape == (4, 5, 6, 5)
        for k in range(4):
            one = network_input(
                rgb[k], inclusion if inclusion.ndim == 2 else inclusion[k], exclusion[k]
            )
            assert np.array_equal(batch[k], one)
