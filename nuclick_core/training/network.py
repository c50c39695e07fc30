"""The NuClick network (Koohbanani, Jahanifar et al., 2020) in PyTorch.

An encoder-decoder with residual blocks, five poolings, transposed-convolution upsampling with
skip connections and three multi-scale blocks (encoder level 3, decoder levels 4 and 2), as in
the paper's Fig. 3. ``width`` multiplies every channel count: ``width=1.0`` is the paper's
network (66.8M parameters); ``width=0.25`` is the light CPU variant (about 4.2M).

Padding is explicit (never ``"same"``) so the ONNX export loads in ONNX Runtime: the legacy
exporter writes ``auto_pad=SAME_UPPER`` on dilated convolutions, which ONNX Runtime rejects.

Input: float32 (N, 5, H, W) with channels R, G, B in [0, 1], inclusion map, exclusion map
(0/1). Output: float32 (N, 1, H, W) logits. H and W must be multiples of 32.
"""

from __future__ import annotations

import itertools

import torch
from torch import nn

#: Multi-scale block layouts: (kernel sizes, dilation rates), per the public implementations.
MULTISCALE_ENCODER_3 = ((3, 3, 5, 5), (1, 3, 3, 6))
MULTISCALE_DECODER_4 = ((3, 3, 5, 5), (1, 3, 2, 3))
MULTISCALE_DECODER_2 = ((3, 3, 5, 7), (1, 3, 2, 6))


def _ch(base: int, width: float) -> int:
    return max(4, int(round(base * width)))


class ConvBnAct(nn.Sequential):
    """Convolution (explicit same padding) -> batch norm -> optional ReLU."""

    def __init__(
        self, c_in: int, c_out: int, kernel: int = 3, dilation: int = 1, *, relu: bool = True
    ) -> None:
        pad = dilation * (kernel - 1) // 2
        layers: list[nn.Module] = [
            nn.Conv2d(c_in, c_out, kernel, padding=pad, dilation=dilation, bias=False),
            nn.BatchNorm2d(c_out),
        ]
        if relu:
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


class ResidualConv(nn.Module):
    """Two conv-BN layers; the output of the first is added to the second, then ReLU."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv1 = ConvBnAct(c_in, c_out, relu=False)
        self.conv2 = ConvBnAct(c_out, c_out, relu=False)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.conv1(x)
        return self.act(a + self.conv2(a))


class MultiScale(nn.Module):
    """Four parallel conv-BN-ReLU branches with different kernels and dilations, concatenated."""

    def __init__(self, c_in: int, c_branch: int, layout: tuple[tuple[int, ...], ...]) -> None:
        super().__init__()
        kernels, dilations = layout
        self.branches = nn.ModuleList(
            ConvBnAct(c_in, c_branch, k, d) for k, d in zip(kernels, dilations, strict=True)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([b(x) for b in self.branches], dim=1)


def _res_chain(channels: list[int]) -> nn.Sequential:
    return nn.Sequential(*(ResidualConv(a, b) for a, b in itertools.pairwise(channels)))


class NuClick(nn.Module):
    """NuClick with a width multiplier.

    Parameters
    ----------
    width : float
        Channel multiplier; 1.0 reproduces the paper's network.
    in_channels : int
        5 for NuClick (RGB, inclusion, exclusion).

    Example
    -------
    >>> net = NuClick(width=0.25)
    >>> net(torch.zeros(2, 5, 64, 64)).shape
    torch.Size([2, 1, 64, 64])
    """

    def __init__(self, width: float = 1.0, in_channels: int = 5) -> None:
        super().__init__()
        c = {b: _ch(b, width) for b in (16, 32, 64, 128, 256, 512, 1024)}
        self.width = width
        self.stem = nn.Sequential(
            ConvBnAct(in_channels, c[64], 7), ConvBnAct(c[64], c[32], 5), ConvBnAct(c[32], c[32], 3)
        )
        self.enc2 = _res_chain([c[32], c[64], c[64]])
        self.enc3a = ResidualConv(c[64], c[128])
        self.ms1 = MultiScale(c[128], c[32], MULTISCALE_ENCODER_3)
        self.enc3b = ResidualConv(4 * c[32], c[128])
        self.enc4 = _res_chain([c[128], c[256], c[256], c[256]])
        self.enc5 = _res_chain([c[256], c[512], c[512], c[512]])
        self.bottom = _res_chain([c[512], c[1024], c[1024]])
        self.pool = nn.MaxPool2d(2)

        self.up5 = nn.ConvTranspose2d(c[1024], c[512], 2, stride=2)
        self.dec5 = _res_chain([2 * c[512], c[512], c[256]])
        self.up4 = nn.ConvTranspose2d(c[256], c[256], 2, stride=2)
        self.dec4a = ResidualConv(2 * c[256], c[256])
        self.ms2 = MultiScale(c[256], c[64], MULTISCALE_DECODER_4)
        self.dec4b = ResidualConv(4 * c[64], c[256])
        self.up3 = nn.ConvTranspose2d(c[256], c[128], 2, stride=2)
        self.dec3 = _res_chain([2 * c[128], c[128], c[128]])
        self.up2 = nn.ConvTranspose2d(c[128], c[64], 2, stride=2)
        self.dec2a = ResidualConv(2 * c[64], c[64])
        self.ms3 = MultiScale(c[64], c[16], MULTISCALE_DECODER_2)
        self.dec2b = ResidualConv(4 * c[16], c[64])
        self.up1 = nn.ConvTranspose2d(c[64], c[32], 2, stride=2)
        self.dec1 = nn.Sequential(
            ConvBnAct(2 * c[32], c[64]), ConvBnAct(c[64], c[32]), ConvBnAct(c[32], c[32])
        )
        self.head = nn.Conv2d(c[32], 1, 1)
        self.frozen_batch_norm = False

    def freeze_batch_norm(self) -> None:
        """Keep every batch norm in eval mode (running statistics fixed, scale and shift still
        trained) from now on, whatever ``train()`` is called with: for a network read back from
        ONNX, whose statistics are folded into the convolutions."""
        self.frozen_batch_norm = True
        self.train(self.training)

    def train(self, mode: bool = True) -> NuClick:
        super().train(mode)
        if self.frozen_batch_norm:
            for m in self.modules():
                if isinstance(m, nn.BatchNorm2d):
                    m.eval()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s1 = self.stem(x)
        s2 = self.enc2(self.pool(s1))
        s3 = self.enc3b(self.ms1(self.enc3a(self.pool(s2))))
        s4 = self.enc4(self.pool(s3))
        s5 = self.enc5(self.pool(s4))
        b = self.bottom(self.pool(s5))
        d5 = self.dec5(torch.cat([self.up5(b), s5], 1))
        d4 = self.dec4b(self.ms2(self.dec4a(torch.cat([self.up4(d5), s4], 1))))
        d3 = self.dec3(torch.cat([self.up3(d4), s3], 1))
        d2 = self.dec2b(self.ms3(self.dec2a(torch.cat([self.up2(d3), s2], 1))))
        d1 = self.dec1(torch.cat([self.up1(d2), s1], 1))
        return self.head(d1)


def count_parameters(net: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in net.parameters() if p.requires_grad)
