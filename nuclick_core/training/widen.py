"""Function-preserving widening of a trained NuClick (Net2WiderNet, Chen et al. 2016).

A width-0.5 network starts from a trained width-0.25 one instead of from scratch: every hidden
channel is duplicated, and each weight that reads a duplicated channel is split between the two
copies in shares ``f`` and ``1 - f`` (``f`` drawn per weight near one half), so the wider network
computes exactly what the narrow one did. The unequal shares make the two copies receive different
gradients, so they drift apart in training and the extra channels become extra capacity.

Every NuClick channel count doubles exactly from width 0.25 to 0.5 (``_ch`` rounds multiples of
four), and every concatenated input (skip connections, multi-scale branches) is ``k`` equal parts,
which is what the per-layer part counts below describe.

Example
-------
>>> import torch
>>> from nuclick_core.training.network import NuClick
>>> small = NuClick(width=0.25).eval()
>>> big = widen(small, seed=0).eval()
>>> x = torch.rand(1, 5, 64, 64)
>>> bool(torch.allclose(small(x), big(x), atol=1e-4))
True
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from nuclick_core.training.network import NuClick

#: Layers whose input is a concatenation of this many equal parts (skip connections: 2;
#: multi-scale blocks: 4 branches). Every other layer reads one tensor.
CONCAT_PARTS = {
    "enc3b.conv1.0": 4,
    "dec5.0.conv1.0": 2,
    "dec4a.conv1.0": 2,
    "dec4b.conv1.0": 4,
    "dec3.0.conv1.0": 2,
    "dec2a.conv1.0": 2,
    "dec2b.conv1.0": 4,
    "dec1.0.0": 2,
}


def _channel_map(old: int, new: int, parts: int) -> tuple[np.ndarray, np.ndarray]:
    """For each new channel: the old channel it copies and which copy it is (0 or 1)."""
    if new == old:
        return np.arange(old), np.zeros(old, dtype=int)
    if new != 2 * old or old % parts:
        raise ValueError(f"cannot widen {old} channels to {new} in {parts} part(s)")
    size = old // parts
    src, copy = [], []
    for p in range(parts):
        j = np.arange(2 * size)
        src.append(p * size + j % size)
        copy.append(j // size)
    return np.concatenate(src), np.concatenate(copy)


def _widen_weight(
    w_old: torch.Tensor,
    out_map: tuple[np.ndarray, np.ndarray],
    in_map: tuple[np.ndarray, np.ndarray],
    out_axis: int,
    rng: np.random.Generator,
) -> torch.Tensor:
    """Copy rows by ``out_map``; split columns read by two copies into shares f and 1 - f."""
    in_axis = 1 - out_axis
    w = w_old.detach().cpu().numpy()
    w = np.take(np.take(w, out_map[0], axis=out_axis), in_map[0], axis=in_axis)
    if len(in_map[0]) != w_old.shape[in_axis]:  # inputs were duplicated: split the weights
        # One share per (output, old input, kernel position), shared by the two copies.
        shape = list(w.shape)
        shape[in_axis] = w_old.shape[in_axis]
        f = 0.5 + rng.uniform(-0.2, 0.2, size=shape).astype(np.float32)
        shares = np.take(f, in_map[0], axis=in_axis)
        copy = in_map[1].reshape([-1 if a == in_axis else 1 for a in range(w.ndim)])
        w = w * np.where(copy == 0, shares, 1.0 - shares)
    return torch.from_numpy(np.ascontiguousarray(w, dtype=np.float32))


def widen(small: NuClick, *, seed: int = 0) -> NuClick:
    """Return a NuClick of twice ``small``'s width computing the same function."""
    big = NuClick(width=2 * small.width)
    rng = np.random.default_rng(seed)
    small_mods = dict(small.named_modules())
    with torch.no_grad():
        for name, m_big in big.named_modules():
            m_small = small_mods[name]
            if isinstance(m_big, nn.Conv2d | nn.ConvTranspose2d):
                # Conv2d weights are (out, in, k, k); ConvTranspose2d weights (in, out, k, k).
                out_axis = 0 if isinstance(m_big, nn.Conv2d) else 1
                old, new = m_small.weight.shape, m_big.weight.shape
                out_map = _channel_map(old[out_axis], new[out_axis], 1)
                parts = CONCAT_PARTS.get(name, 1)
                in_map = _channel_map(old[1 - out_axis], new[1 - out_axis], parts)
                m_big.weight.copy_(_widen_weight(m_small.weight, out_map, in_map, out_axis, rng))
                if m_big.bias is not None and m_small.bias is not None:
                    m_big.bias.copy_(m_small.bias[torch.from_numpy(out_map[0])])
            elif isinstance(m_big, nn.BatchNorm2d):
                idx = torch.from_numpy(_channel_map(m_small.num_features, m_big.num_features, 1)[0])
                for attr in ("weight", "bias", "running_mean", "running_var"):
                    getattr(m_big, attr).copy_(getattr(m_small, attr)[idx])
                big_count = getattr(m_big, "num_batches_tracked")  # noqa: B009 (Optional)
                big_count.copy_(getattr(m_small, "num_batches_tracked"))  # noqa: B009
    return big
