"""StyleGAN2 generator and discriminator in the layout of rosinality/stylegan2-pytorch.

Module and parameter names, buffers and tensor shapes match the official PyTorch port, so its
checkpoints (`g_ema`, `g`, `d` state dicts) load without renaming. Every resampling op has a
fast implementation (depthwise / grouped / transposed convolutions) and a reference one (the
step-by-step `upfirdn2d_ref`); `ops="fast"` is the default, `set_ops("reference")` switches a
whole network.

Channel table (official): {4: 512, 8: 512, 16: 512, 32: 512, 64: 256 cm, 128: 128 cm,
256: 64 cm, 512: 32 cm, 1024: 16 cm} for channel multiplier cm, each entry capped at
`channel_max` (512 gives the official networks; smaller values give cheap networks with the
same key names).
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gan2shape.stylegan2.ops import (
    LRELU_GAIN,
    LRELU_SLOPE,
    check_impl,
    fused_leaky_relu,
    make_kernel,
    upfirdn2d,
)

DEFAULT_BLUR = (1, 3, 3, 1)
MIN_SIZE = 8
MAX_SIZE = 1024


def stylegan2_channels(channel_multiplier: int = 2, channel_max: int = 512) -> dict[int, int]:
    """Feature channels per resolution (4 .. 1024) of the official table, capped at channel_max."""
    table = {
        4: 512,
        8: 512,
        16: 512,
        32: 512,
        64: 256 * channel_multiplier,
        128: 128 * channel_multiplier,
        256: 64 * channel_multiplier,
        512: 32 * channel_multiplier,
        1024: 16 * channel_multiplier,
    }
    return {res: min(ch, channel_max) for res, ch in table.items()}


@dataclass(frozen=True)
class StyleGAN2Config:
    """Everything needed to rebuild a generator/discriminator pair.

    size: output side in pixels, a power of two in [8, 1024]. style_dim: z and w width.
    n_mlp: mapping layers. channel_multiplier, channel_max: the channel table (see module doc).
    lr_mlp: learning-rate multiplier of the mapping layers (it scales their forward pass too).
    blur_kernel: 1-D FIR taps of every resampling filter.
    """

    size: int
    style_dim: int = 512
    n_mlp: int = 8
    channel_multiplier: int = 2
    channel_max: int = 512
    lr_mlp: float = 0.01
    blur_kernel: tuple[int, ...] = DEFAULT_BLUR

    def __post_init__(self) -> None:
        if not (isinstance(self.size, int) and MIN_SIZE <= self.size <= MAX_SIZE):
            raise ValueError(f"size must be an int in [{MIN_SIZE}, {MAX_SIZE}], got {self.size!r}")
        if self.size & (self.size - 1):
            raise ValueError(f"size must be a power of two (e.g. 64, 128, 256), got {self.size}")
        for name in ("style_dim", "channel_multiplier", "channel_max"):
            value = getattr(self, name)
            if not (isinstance(value, int) and value >= 1):
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if not (isinstance(self.n_mlp, int) and self.n_mlp >= 0):
            raise ValueError(f"n_mlp must be an int >= 0, got {self.n_mlp!r}")
        if not self.lr_mlp > 0:
            raise ValueError(f"lr_mlp must be > 0, got {self.lr_mlp!r}")
        if len(self.blur_kernel) < 2:
            raise ValueError(f"blur_kernel needs at least 2 taps, got {self.blur_kernel!r}")
        object.__setattr__(self, "blur_kernel", tuple(self.blur_kernel))

    @property
    def log_size(self) -> int:
        return int(math.log2(self.size))

    @property
    def channels(self) -> dict[int, int]:
        return stylegan2_channels(self.channel_multiplier, self.channel_max)


class PixelNorm(nn.Module):
    """x / rms(x) over dim 1. x: (N, D) -> (N, D)."""

    def forward(self, x: Tensor) -> Tensor:
        return x * torch.rsqrt(x.pow(2).mean(dim=1, keepdim=True) + 1e-8)


class Blur(nn.Module):
    """FIR filter with pads, no resampling. Buffer `kernel`: (k, k), sum factor**2.

    forward: (N, C, H, W) -> (N, C, H + pad0 + pad1 - k + 1, same for W).
    """

    def __init__(
        self,
        kernel: Sequence[int],
        pad: tuple[int, int],
        upsample_factor: int = 1,
        ops: str = "fast",
    ) -> None:
        super().__init__()
        # A blur that follows a zero-inserting upsample restores the signal level by factor**2.
        self.register_buffer("kernel", make_kernel(kernel) * upsample_factor**2)
        self.pad = (int(pad[0]), int(pad[1]))
        self.ops = check_impl(ops)

    def forward(self, x: Tensor) -> Tensor:
        return upfirdn2d(x, self.kernel, pad=self.pad, impl=self.ops)


class Upsample(nn.Module):
    """Upsample by `factor` with a FIR filter. Buffer `kernel`: (k, k), sum factor**2.

    forward: (N, C, H, W) -> (N, C, H * factor, W * factor).
    """

    def __init__(self, kernel: Sequence[int], factor: int = 2, ops: str = "fast") -> None:
        super().__init__()
        self.factor = factor
        self.register_buffer("kernel", make_kernel(kernel) * factor**2)
        p = len(kernel) - factor
        self.pad = ((p + 1) // 2 + factor - 1, p // 2)
        self.ops = check_impl(ops)

    def forward(self, x: Tensor) -> Tensor:
        return upfirdn2d(x, self.kernel, up=self.factor, pad=self.pad, impl=self.ops)


class EqualLinear(nn.Module):
    """Linear layer with equalised learning rate (weights stored as N(0, 1/lr_mul^2)).

    forward: (N, in_dim) -> (N, out_dim); with activation "fused_lrelu" the bias goes through
    `fused_leaky_relu`.
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        bias: bool = True,
        bias_init: float = 0.0,
        lr_mul: float = 1.0,
        activation: str | None = None,
    ) -> None:
        super().__init__()
        if activation not in (None, "fused_lrelu"):
            raise ValueError(f"activation must be None or 'fused_lrelu', got {activation!r}")
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim).div_(lr_mul))
        self.bias = nn.Parameter(torch.full((out_dim,), float(bias_init))) if bias else None
        self.activation = activation
        self.scale = lr_mul / math.sqrt(in_dim)
        self.lr_mul = lr_mul

    def forward(self, x: Tensor) -> Tensor:
        bias = self.bias * self.lr_mul if self.bias is not None else None
        if self.activation:
            return fused_leaky_relu(F.linear(x, self.weight * self.scale), bias)
        return F.linear(x, self.weight * self.scale, bias)

    def extra_repr(self) -> str:
        return f"{self.weight.shape[1]}, {self.weight.shape[0]}, lr_mul={self.lr_mul}"


class EqualConv2d(nn.Module):
    """Conv2d with equalised learning rate. forward: (N, Cin, H, W) -> (N, Cout, H', W')."""

    def __init__(
        self,
        in_channel: int,
        out_channel: int,
        kernel_size: int,
        stride: int = 1,
        padding: int = 0,
        bias: bool = True,
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channel, in_channel, kernel_size, kernel_size))
        self.scale = 1 / math.sqrt(in_channel * kernel_size**2)
        self.stride = stride
        self.padding = padding
        self.bias = nn.Parameter(torch.zeros(out_channel)) if bias else None

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.weight * self.scale, bias=self.bias, stride=self.stride, padding=self.padding)

    def extra_repr(self) -> str:
        o, i, k, _ = self.weight.shape
        return f"{i}, {o}, {k}, stride={self.stride}, padding={self.padding}"


class FusedLeakyReLU(nn.Module):
    """Bias + leaky ReLU(0.2) * sqrt(2). Parameter `bias`: (C,). forward keeps the shape."""

    def __init__(self, channel: int, bias: bool = True) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channel)) if bias else None

    def forward(self, x: Tensor) -> Tensor:
        return fused_leaky_relu(x, self.bias, LRELU_SLOPE, LRELU_GAIN)


class ModulatedConv2d(nn.Module):
    """Convolution whose input channels are scaled per sample by a style, then demodulated.

    Parameters: `weight` (1, Cout, Cin, k, k), `modulation` (EqualLinear style_dim -> Cin, bias
    init 1); buffer `blur.kernel` (4, 4) when resampling.
    forward(x (N, Cin, H, W), style (N, style_dim)) -> (N, Cout, H', W') with H' = 2H (upsample),
    H/2 (downsample) or H.

    `fused=True` folds the styles into per-sample weights and runs one grouped convolution (the
    official formulation); `fused=False` scales the activations instead and runs one ordinary
    convolution shared by the batch (same result up to rounding; often faster for training).
    The reference ops always use the official fused formulation.
    """

    def __init__(
        self,
        in_channel: int,
        out_channel: int,
        kernel_size: int,
        style_dim: int,
        demodulate: bool = True,
        upsample: bool = False,
        downsample: bool = False,
        blur_kernel: Sequence[int] = DEFAULT_BLUR,
        ops: str = "fast",
        fused: bool = True,
    ) -> None:
        super().__init__()
        if upsample and downsample:
            raise ValueError("ModulatedConv2d cannot both upsample and downsample")
        self.eps = 1e-8
        self.kernel_size = kernel_size
        self.in_channel = in_channel
        self.out_channel = out_channel
        self.upsample = upsample
        self.downsample = downsample
        factor = 2
        if upsample:
            # Pads of the blur after a stride-2 transposed conv (output 2H + k - 2) -> 2H.
            p = (len(blur_kernel) - factor) - (kernel_size - 1)
            self.blur = Blur(
                blur_kernel,
                pad=((p + 1) // 2 + factor - 1, p // 2 + 1),
                upsample_factor=factor,
                ops=ops,
            )
        if downsample:
            p = (len(blur_kernel) - factor) + (kernel_size - 1)
            self.blur = Blur(blur_kernel, pad=((p + 1) // 2, p // 2), ops=ops)
        self.scale = 1 / math.sqrt(in_channel * kernel_size**2)
        self.padding = kernel_size // 2
        self.weight = nn.Parameter(torch.randn(1, out_channel, in_channel, kernel_size, kernel_size))
        self.modulation = EqualLinear(style_dim, in_channel, bias_init=1)
        self.demodulate = demodulate
        self.ops = check_impl(ops)
        self.fused = fused

    def extra_repr(self) -> str:
        return (
            f"{self.in_channel}, {self.out_channel}, {self.kernel_size}, "
            f"upsample={self.upsample}, downsample={self.downsample}, ops={self.ops}, "
            f"fused={self.fused}"
        )

    def forward(self, x: Tensor, style: Tensor) -> Tensor:
        if x.ndim != 4 or x.shape[1] != self.in_channel or style.shape[0] != x.shape[0]:
            raise ValueError(
                f"expected x (N, {self.in_channel}, H, W) and style (N, style_dim), got x "
                f"{tuple(x.shape)}, style {tuple(style.shape)}"
            )
        # Styles and demodulation in float32 even under autocast: bf16 would put ~0.4% errors
        # on every layer's scale. Only the convolutions run in the autocast dtype.
        with torch.autocast(device_type=x.device.type, enabled=False):
            s = self.modulation(style.to(self.weight.dtype))
            if self.ops == "reference":
                weight = self._official_weight(s)
            else:
                base = self.scale * self.weight[0]
                demod = self._demod_coefs(s, base) if self.demodulate else None
                if self.fused:
                    weight = base[None] * s[:, None, :, None, None]
                    if demod is not None:
                        weight = weight * demod[:, :, None, None, None]
        if self.ops == "reference" or self.fused:
            return self._grouped_conv(x, weight)
        return self._shared_conv(x, s, base, demod)

    def _official_weight(self, s: Tensor) -> Tensor:
        """The official formula: (N, Cout, Cin, k, k) per-sample modulated, demodulated weights."""
        n, cin = s.shape
        weight = self.scale * self.weight * s.reshape(n, 1, cin, 1, 1)
        if self.demodulate:
            demod = torch.rsqrt(weight.pow(2).sum([2, 3, 4]) + self.eps)
            weight = weight * demod.reshape(n, self.out_channel, 1, 1, 1)
        return weight

    def _demod_coefs(self, s: Tensor, base: Tensor) -> Tensor:
        """(N, Cin) styles, (Cout, Cin, k, k) scaled weight -> (N, Cout) 1 / |modulated weight|.

        sum_{i,taps} (w[o,i] s[n,i])^2 = (s^2 @ W2^T)[n,o] with W2 = sum_taps w^2, which avoids
        materialising the per-sample weights.
        """
        return torch.rsqrt(s.pow(2) @ base.pow(2).sum([2, 3]).t() + self.eps)

    def _grouped_conv(self, x: Tensor, weight: Tensor) -> Tensor:
        """x: (N, Cin, H, W); weight: (N, Cout, Cin, k, k) -> (N, Cout, H', W')."""
        n, cin, h, w = x.shape
        k, cout = self.kernel_size, self.out_channel
        if self.downsample:
            x = self.blur(x)
            h, w = x.shape[2:]
        x = x.reshape(1, n * cin, h, w)
        if self.upsample:
            weight = weight.transpose(1, 2).reshape(n * cin, cout, k, k)
            out = F.conv_transpose2d(x, weight.to(x.dtype), stride=2, groups=n)
        else:
            weight = weight.reshape(n * cout, cin, k, k)
            stride, padding = (2, 0) if self.downsample else (1, self.padding)
            out = F.conv2d(x, weight.to(x.dtype), stride=stride, padding=padding, groups=n)
        out = out.reshape(n, cout, out.shape[2], out.shape[3])
        if self.upsample:
            out = self.blur(out)
        return out

    def _shared_conv(self, x: Tensor, s: Tensor, base: Tensor, demod: Tensor | None) -> Tensor:
        """Scale input channels by s, convolve with the shared weight, scale outputs by demod."""
        n, cin = s.shape
        weight = base.to(x.dtype)
        x = x * s.to(x.dtype).reshape(n, cin, 1, 1)
        if self.upsample:
            out = F.conv_transpose2d(x, weight.transpose(0, 1), stride=2)
            out = self.blur(out)
        elif self.downsample:
            out = F.conv2d(self.blur(x), weight, stride=2)
        else:
            out = F.conv2d(x, weight, padding=self.padding)
        if demod is not None:
            out = out * demod.to(out.dtype).reshape(n, self.out_channel, 1, 1)
        return out


class NoiseInjection(nn.Module):
    """image + weight * noise. Parameter `weight`: (1,), initialised to 0.

    forward(image (N, C, H, W), noise (N or 1, 1, H, W) or None = fresh N(0, 1)) -> like image.
    """

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))

    def forward(self, image: Tensor, noise: Tensor | None = None) -> Tensor:
        if noise is None:
            n, _, h, w = image.shape
            noise = image.new_empty(n, 1, h, w).normal_()
        return image + self.weight.to(image.dtype) * noise.to(image.dtype)


class ConstantInput(nn.Module):
    """Learned constant. Parameter `input`: (1, C, size, size); forward(latent (N, ...)) ->
    (N, C, size, size) (a broadcast view)."""

    def __init__(self, channel: int, size: int = 4) -> None:
        super().__init__()
        self.input = nn.Parameter(torch.randn(1, channel, size, size))

    def forward(self, latent: Tensor) -> Tensor:
        return self.input.expand(latent.shape[0], -1, -1, -1)


class StyledConv(nn.Module):
    """ModulatedConv2d -> NoiseInjection -> bias + leaky ReLU (keys conv.*, noise.weight,
    activate.bias). forward(x (N, Cin, H, W), style (N, D), noise) -> (N, Cout, H', W')."""

    def __init__(
        self,
        in_channel: int,
        out_channel: int,
        kernel_size: int,
        style_dim: int,
        upsample: bool = False,
        blur_kernel: Sequence[int] = DEFAULT_BLUR,
        demodulate: bool = True,
        ops: str = "fast",
        fused: bool = True,
    ) -> None:
        super().__init__()
        self.conv = ModulatedConv2d(
            in_channel,
            out_channel,
            kernel_size,
            style_dim,
            demodulate=demodulate,
            upsample=upsample,
            blur_kernel=blur_kernel,
            ops=ops,
            fused=fused,
        )
        self.noise = NoiseInjection()
        self.activate = FusedLeakyReLU(out_channel)

    def forward(self, x: Tensor, style: Tensor, noise: Tensor | None = None) -> Tensor:
        return self.activate(self.noise(self.conv(x, style), noise=noise))


class ToRGB(nn.Module):
    """1x1 modulated conv (no demodulation) to RGB plus the upsampled skip image.

    Keys: bias (1, 3, 1, 1), upsample.kernel (4, 4) when upsample, conv.*.
    forward(x (N, C, H, W), style (N, D), skip (N, 3, H/2, W/2) or None) -> (N, 3, H, W).
    """

    def __init__(
        self,
        in_channel: int,
        style_dim: int,
        upsample: bool = True,
        blur_kernel: Sequence[int] = DEFAULT_BLUR,
        ops: str = "fast",
        fused: bool = True,
    ) -> None:
        super().__init__()
        if upsample:
            self.upsample = Upsample(blur_kernel, ops=ops)
        self.conv = ModulatedConv2d(in_channel, 3, 1, style_dim, demodulate=False, ops=ops, fused=fused)
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))

    def forward(self, x: Tensor, style: Tensor, skip: Tensor | None = None) -> Tensor:
        out = self.conv(x, style) + self.bias.to(x.dtype)
        if skip is not None:
            out = out + self.upsample(skip).to(out.dtype)
        return out


def to_channels_last(net: nn.Module) -> nn.Module:
    """Put every 4-D parameter and buffer of `net` in channels_last memory format; returns net.

    `nn.Module.to(memory_format=torch.channels_last)` refuses the 5-D modulated-conv weights of
    the official layout; this converts what can be converted. Feed channels_last images too.
    """
    for t in [*net.parameters(), *net.buffers()]:
        if t.ndim == 4:
            t.data = t.data.contiguous(memory_format=torch.channels_last)
    return net


def _set_ops(net: nn.Module, ops: str) -> None:
    check_impl(ops)
    for m in net.modules():
        if isinstance(m, (Blur, Upsample, ModulatedConv2d)):
            m.ops = ops


def _check_image(img: Tensor, size: int, who: str) -> None:
    if img.ndim != 4 or img.shape[1] != 3 or img.shape[2] != size or img.shape[3] != size:
        raise ValueError(
            f"{who} expects images (N, 3, {size}, {size}), got {tuple(img.shape)}; resize the "
            f"images to the network size"
        )


class Generator(nn.Module):
    """StyleGAN2 generator (mapping network `style` + synthesis network).

    ops: "fast" (convolutions) or "reference" (step-by-step upfirdn2d, official formulas).
    fused_modconv: with the fast ops, True runs each modulated conv as one grouped conv with
    per-sample weights (the official formulation), False (default) scales activations and
    shares one weight across the batch; False measured faster on an H200 for training and
    inference at batch 16 (see benchmarks/stylegan2_speed.py).

    Official state-dict layout: style.{1..n_mlp}.weight/bias, input.input, conv1.*, to_rgb1.*,
    convs.{0..2L-1}.*, to_rgbs.{0..L-1}.*, noises.noise_{0..num_layers-1} with
    L = log2(size) - 2 resolutions above 4x4 and num_layers = 2L + 1.
    Images are (N, 3, size, size), values roughly in [-1, 1] (not clamped).
    """

    def __init__(
        self,
        size: int,
        style_dim: int = 512,
        n_mlp: int = 8,
        channel_multiplier: int = 2,
        blur_kernel: Sequence[int] = DEFAULT_BLUR,
        lr_mlp: float = 0.01,
        channel_max: int = 512,
        ops: str = "fast",
        fused_modconv: bool = False,
    ) -> None:
        super().__init__()
        cfg = StyleGAN2Config(
            size=size,
            style_dim=style_dim,
            n_mlp=n_mlp,
            channel_multiplier=channel_multiplier,
            channel_max=channel_max,
            lr_mlp=lr_mlp,
            blur_kernel=tuple(blur_kernel),
        )
        check_impl(ops)
        self.config = cfg
        self.size = size
        self.style_dim = style_dim
        self.n_mlp = n_mlp
        self.channels = cfg.channels
        kw = dict(blur_kernel=cfg.blur_kernel, ops=ops, fused=fused_modconv)

        self.style = nn.Sequential(
            PixelNorm(),
            *[EqualLinear(style_dim, style_dim, lr_mul=lr_mlp, activation="fused_lrelu") for _ in range(n_mlp)],
        )
        ch4 = self.channels[4]
        self.input = ConstantInput(ch4)
        self.conv1 = StyledConv(ch4, ch4, 3, style_dim, **kw)
        self.to_rgb1 = ToRGB(ch4, style_dim, upsample=False, **kw)

        self.log_size = cfg.log_size
        self.num_layers = (self.log_size - 2) * 2 + 1
        self.n_latent = self.log_size * 2 - 2
        self.convs = nn.ModuleList()
        self.upsamples = nn.ModuleList()  # empty; kept for attribute parity with the official code
        self.to_rgbs = nn.ModuleList()
        self.noises = nn.Module()
        for layer_idx in range(self.num_layers):
            res = 2 ** ((layer_idx + 5) // 2)
            self.noises.register_buffer(f"noise_{layer_idx}", torch.randn(1, 1, res, res))
        in_channel = ch4
        for i in range(3, self.log_size + 1):
            out_channel = self.channels[2**i]
            self.convs.append(StyledConv(in_channel, out_channel, 3, style_dim, upsample=True, **kw))
            self.convs.append(StyledConv(out_channel, out_channel, 3, style_dim, **kw))
            self.to_rgbs.append(ToRGB(out_channel, style_dim, **kw))
            in_channel = out_channel

    # ----- switches -------------------------------------------------------------------------
    def set_ops(self, ops: str) -> Generator:
        """Use "fast" (default) or "reference" resampling ops in every layer; returns self."""
        _set_ops(self, ops)
        return self

    def set_fused_modconv(self, fused: bool) -> Generator:
        """Choose the grouped-conv (True) or shared-conv (False) modulated conv; returns self."""
        for m in self.modules():
            if isinstance(m, ModulatedConv2d):
                m.fused = fused
        return self

    # ----- mapping network ------------------------------------------------------------------
    def _check_z(self, z: Tensor, name: str) -> None:
        if z.ndim != 2 or z.shape[1] != self.style_dim:
            raise ValueError(f"{name} must be (N, {self.style_dim}), got {tuple(z.shape)}")

    def _run_mapping(self, h: Tensor, layers: Sequence[nn.Module]) -> Tensor:
        # The mapping MLP is tiny; keep it in the weights' dtype (float32) even under autocast.
        with torch.autocast(device_type=h.device.type, enabled=False):
            h = h.to(self.input.input.dtype)
            for layer in layers:
                h = layer(h)
        return h

    def mapping_head(self, z: Tensor, n_layers: int) -> Tensor:
        """PixelNorm then the first n_layers mapping layers.

        z: (N, style_dim) float. n_layers: 0 .. n_mlp. Returns (N, style_dim) hidden state h in
        the weights' dtype (float32; autocast does not apply) with
        mapping_tail(h, n_layers) == get_latent(z).
        """
        self._check_z(z, "z")
        if not 0 <= n_layers <= self.n_mlp:
            raise ValueError(f"n_layers must be in [0, {self.n_mlp}], got {n_layers}")
        return self._run_mapping(z, list(self.style[: 1 + n_layers]))

    def mapping_tail(self, h: Tensor, start_layer: int, pixel_norm: bool = False) -> Tensor:
        """Mapping layers start_layer .. n_mlp-1 (0-based) applied to a hidden state.

        h: (N, style_dim) float. start_layer: 0 .. n_mlp. pixel_norm: apply the input PixelNorm
        first (the reference GAN2Shape code does this when it splits before every layer).
        Returns w: (N, style_dim) float32.
        """
        self._check_z(h, "h")
        if not 0 <= start_layer <= self.n_mlp:
            raise ValueError(f"start_layer must be in [0, {self.n_mlp}], got {start_layer}")
        layers = list(self.style[1 + start_layer :])
        if pixel_norm:
            layers = [self.style[0], *layers]
        return self._run_mapping(h, layers)

    def get_latent(self, z: Tensor) -> Tensor:
        """z (N, style_dim) -> w (N, style_dim) float32 through the whole mapping network."""
        self._check_z(z, "z")
        return self._run_mapping(z, list(self.style))

    @torch.no_grad()
    def mean_latent(self, n_latent: int, generator: torch.Generator | None = None) -> Tensor:
        """Mean w over n_latent samples z ~ N(0, I): (1, style_dim) float32, no grad."""
        device = self.input.input.device
        z = torch.randn(n_latent, self.style_dim, device=device, generator=generator)
        return self.get_latent(z).mean(0, keepdim=True)

    def make_noise(self, generator: torch.Generator | None = None) -> list[Tensor]:
        """Fresh per-layer noise maps: num_layers tensors (1, 1, r, r), r = 4, 8, 8, 16, 16, ..."""
        device = self.input.input.device
        return [
            torch.randn(1, 1, 2 ** ((i + 5) // 2), 2 ** ((i + 5) // 2), device=device, generator=generator)
            for i in range(self.num_layers)
        ]

    # ----- synthesis ------------------------------------------------------------------------
    def synthesis(
        self,
        latent: Tensor,
        noise: Sequence[Tensor | None] | None = None,
        randomize_noise: bool = True,
    ) -> Tensor:
        """W+ latents -> image.

        latent: (N, n_latent, style_dim) float, one w per layer (n_latent = 2 log2(size) - 2).
        noise: num_layers maps (N or 1, 1, r, r), or None: fresh noise if randomize_noise, else
            the stored buffers noises.noise_i.
        Returns (N, 3, size, size), values roughly in [-1, 1].
        """
        if latent.ndim != 3 or latent.shape[1] != self.n_latent or latent.shape[2] != self.style_dim:
            raise ValueError(f"latent must be (N, {self.n_latent}, {self.style_dim}), got {tuple(latent.shape)}")
        if noise is None:
            if randomize_noise:
                noise = [None] * self.num_layers
            else:
                noise = [getattr(self.noises, f"noise_{i}") for i in range(self.num_layers)]
        if len(noise) != self.num_layers:
            raise ValueError(f"noise must hold {self.num_layers} maps, got {len(noise)}")

        out = self.input(latent)
        out = self.conv1(out, latent[:, 0], noise=noise[0])
        skip = self.to_rgb1(out, latent[:, 1])
        i = 1
        for conv_up, conv, noise1, noise2, to_rgb in zip(
            self.convs[::2], self.convs[1::2], noise[1::2], noise[2::2], self.to_rgbs
        ):
            out = conv_up(out, latent[:, i], noise=noise1)
            out = conv(out, latent[:, i + 1], noise=noise2)
            skip = to_rgb(out, latent[:, i + 2], skip)
            i += 2
        return skip

    def forward(
        self,
        styles: Sequence[Tensor],
        return_latents: bool = False,
        inject_index: int | None = None,
        truncation: float = 1.0,
        truncation_latent: Tensor | None = None,
        input_is_latent: bool = False,
        noise: Sequence[Tensor | None] | None = None,
        randomize_noise: bool = True,
    ) -> tuple[Tensor, Tensor | None]:
        """Official calling convention.

        styles: list of 1 or 2 tensors: z (N, style_dim), or w (N, style_dim) / W+
            (N, n_latent, style_dim) when input_is_latent. Two entries mix styles at
            inject_index (random in [1, n_latent-1] when None).
        truncation, truncation_latent (1, style_dim): w <- t_lat + truncation (w - t_lat) when
            truncation < 1.
        noise, randomize_noise: as in `synthesis`.
        Returns (image (N, 3, size, size), W+ latent (N, n_latent, style_dim) if return_latents
        else None).
        """
        if len(styles) not in (1, 2):
            raise ValueError(f"styles must hold 1 or 2 tensors, got {len(styles)}")
        if not input_is_latent:
            styles = [self.get_latent(s) for s in styles]
        if truncation < 1:
            if truncation_latent is None:
                raise ValueError("truncation < 1 needs truncation_latent (e.g. G.mean_latent(4096))")
            styles = [truncation_latent + truncation * (s - truncation_latent) for s in styles]

        if len(styles) == 1:
            s = styles[0]
            latent = s if s.ndim == 3 else s.unsqueeze(1).expand(-1, self.n_latent, -1)
        else:
            if inject_index is None:
                inject_index = random.randint(1, self.n_latent - 1)
            if not 0 <= inject_index <= self.n_latent:
                raise ValueError(f"inject_index must be in [0, {self.n_latent}], got {inject_index}")
            latent = torch.cat(
                [
                    styles[0].unsqueeze(1).expand(-1, inject_index, -1),
                    styles[1].unsqueeze(1).expand(-1, self.n_latent - inject_index, -1),
                ],
                dim=1,
            )
        image = self.synthesis(latent, noise=noise, randomize_noise=randomize_noise)
        return image, (latent if return_latents else None)


class ConvLayer(nn.Sequential):
    """[Blur] -> EqualConv2d -> [FusedLeakyReLU], keys 0.kernel / N.weight / N.bias by index.

    forward: (N, Cin, H, W) -> (N, Cout, H/2 if downsample else H, ...).
    """

    def __init__(
        self,
        in_channel: int,
        out_channel: int,
        kernel_size: int,
        downsample: bool = False,
        blur_kernel: Sequence[int] = DEFAULT_BLUR,
        bias: bool = True,
        activate: bool = True,
        ops: str = "fast",
    ) -> None:
        layers: list[nn.Module] = []
        if downsample:
            p = (len(blur_kernel) - 2) + (kernel_size - 1)
            layers.append(Blur(blur_kernel, pad=((p + 1) // 2, p // 2), ops=ops))
            stride, padding = 2, 0
        else:
            stride, padding = 1, kernel_size // 2
        layers.append(
            EqualConv2d(
                in_channel,
                out_channel,
                kernel_size,
                padding=padding,
                stride=stride,
                bias=bias and not activate,
            )
        )
        if activate:
            layers.append(FusedLeakyReLU(out_channel, bias=bias))
        super().__init__(*layers)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        conv = self[1] if self.downsample else self[0]
        if self.downsample and conv.weight.shape[-1] == 1 and self[0].ops == "fast":
            # A 1x1 stride-2 conv only reads every other blurred pixel: blur at stride 2 instead
            # (same result, a quarter of the blur work).
            blur = self[0]
            x = upfirdn2d(x, blur.kernel, down=2, pad=blur.pad, impl="fast")
            x = F.conv2d(x, conv.weight * conv.scale, bias=conv.bias)
            for layer in list(self)[2:]:
                x = layer(x)
            return x
        return super().forward(x)


class ResBlock(nn.Module):
    """Two 3x3 convs (second downsamples) plus a 1x1 downsampling skip, summed / sqrt(2).

    forward: (N, Cin, H, W) -> (N, Cout, H/2, W/2).
    """

    def __init__(
        self,
        in_channel: int,
        out_channel: int,
        blur_kernel: Sequence[int] = DEFAULT_BLUR,
        ops: str = "fast",
    ) -> None:
        super().__init__()
        self.conv1 = ConvLayer(in_channel, in_channel, 3, blur_kernel=blur_kernel, ops=ops)
        self.conv2 = ConvLayer(in_channel, out_channel, 3, downsample=True, blur_kernel=blur_kernel, ops=ops)
        self.skip = ConvLayer(
            in_channel,
            out_channel,
            1,
            downsample=True,
            activate=False,
            bias=False,
            blur_kernel=blur_kernel,
            ops=ops,
        )

    def forward(self, x: Tensor) -> Tensor:
        return (self.conv2(self.conv1(x)) + self.skip(x)) * (1 / math.sqrt(2))


class Discriminator(nn.Module):
    """StyleGAN2 residual discriminator.

    Official keys: convs.0 (1x1 from RGB), convs.{1..L} (ResBlocks, L = log2(size) - 2),
    final_conv (3x3 after minibatch stddev), final_linear.{0,1}.
    forward(img (N, 3, size, size)) -> logits (N, 1). N must be a multiple of min(N, 4).
    """

    def __init__(
        self,
        size: int,
        channel_multiplier: int = 2,
        blur_kernel: Sequence[int] = DEFAULT_BLUR,
        channel_max: int = 512,
        ops: str = "fast",
    ) -> None:
        super().__init__()
        cfg = StyleGAN2Config(
            size=size,
            channel_multiplier=channel_multiplier,
            channel_max=channel_max,
            blur_kernel=tuple(blur_kernel),
        )
        check_impl(ops)
        self.size = size
        channels = cfg.channels
        self.channels = channels
        convs: list[nn.Module] = [ConvLayer(3, channels[size], 1, ops=ops)]
        in_channel = channels[size]
        for i in range(cfg.log_size, 2, -1):
            out_channel = channels[2 ** (i - 1)]
            convs.append(ResBlock(in_channel, out_channel, cfg.blur_kernel, ops=ops))
            in_channel = out_channel
        self.convs = nn.Sequential(*convs)
        self.stddev_group = 4
        self.stddev_feat = 1
        self.final_conv = ConvLayer(in_channel + 1, channels[4], 3, ops=ops)
        self.final_linear = nn.Sequential(
            EqualLinear(channels[4] * 4 * 4, channels[4], activation="fused_lrelu"),
            EqualLinear(channels[4], 1),
        )

    @property
    def n_blocks(self) -> int:
        """Number of feature blocks: the ResBlocks plus the final conv."""
        return len(self.convs)

    def set_ops(self, ops: str) -> Discriminator:
        """Use "fast" (default) or "reference" resampling ops in every layer; returns self."""
        _set_ops(self, ops)
        return self

    def _minibatch_stddev(self, out: Tensor) -> Tensor:
        """(N, C, 4, 4) -> (N, C + stddev_feat, 4, 4): append the std over sample groups."""
        n, c, h, w = out.shape
        group = min(n, self.stddev_group)
        if n % group:
            raise ValueError(f"discriminator batch {n} must be a multiple of {group} (minibatch-stddev group)")
        f = self.stddev_feat
        # Statistics in float32: a bf16 variance of nearly equal samples is mostly rounding.
        y = out.float().reshape(group, -1, f, c // f, h, w)
        y = torch.sqrt(y.var(0, unbiased=False) + 1e-8)
        y = y.mean([2, 3, 4], keepdim=True).squeeze(2)
        y = y.repeat(group, 1, h, w).to(out.dtype)
        return torch.cat([out, y], 1)

    def _final_conv(self, out: Tensor) -> Tensor:
        return self.final_conv(self._minibatch_stddev(out))

    def forward(self, img: Tensor) -> Tensor:
        _check_image(img, self.size, "Discriminator")
        out = self._final_conv(self.convs(img))
        return self.final_linear(out.reshape(out.shape[0], -1))

    def features(self, img: Tensor, n_blocks: int) -> list[Tensor]:
        """Outputs of the first n_blocks blocks (the GAN2Shape feature-matching features).

        img: (N, 3, size, size). Blocks are the ResBlocks (outputs (N, C, size/2^k, size/2^k),
        k = 1, 2, ...) then the final conv after minibatch stddev ((N, 512, 4, 4)); the from-RGB
        1x1 conv is not a block. n_blocks: 1 .. self.n_blocks.
        Returns a list of n_blocks tensors.
        """
        _check_image(img, self.size, "Discriminator.features")
        if not 1 <= n_blocks <= self.n_blocks:
            raise ValueError(f"n_blocks must be in [1, {self.n_blocks}], got {n_blocks}")
        out = self.convs[0](img)
        feats: list[Tensor] = []
        for block in list(self.convs)[1 : 1 + n_blocks]:
            out = block(out)
            feats.append(out)
        if n_blocks == self.n_blocks:
            feats.append(self._final_conv(out))
        return feats
