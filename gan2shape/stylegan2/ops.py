"""Resampling and activation ops of StyleGAN2, each with a reference and a fast implementation.

`upfirdn2d` is the one resampling primitive of the network: upsample by zero insertion, pad (or
crop, for negative pads), convolve with a FIR filter, downsample by keeping every `down`-th
sample. `upfirdn2d_ref` spells these four steps out with plain tensor ops and a Python loop over
the filter taps, so that it is obviously correct; `upfirdn2d_fast` expresses the same map as one
depthwise `conv2d` (no upsampling) or `conv_transpose2d` (upsampling), which autograd can
differentiate twice (R1 needs grad-of-grad through the discriminator) and which runs under
`torch.autocast(dtype=torch.bfloat16)`, channels_last and `torch.compile`.

Conventions (those of the official StyleGAN2 code): the filter is applied as a true convolution
(flipped), the same pads `(before, after)` apply to both spatial axes, and the output side is
`(H * up + before + after - kh) // down + 1`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

OpsImpl = Literal["fast", "reference"]
OPS_IMPLS: tuple[str, ...] = ("fast", "reference")

LRELU_SLOPE = 0.2
LRELU_GAIN = math.sqrt(2.0)


def check_impl(impl: str) -> str:
    """Return `impl` if it names an implementation ("fast" or "reference"), else raise."""
    if impl not in OPS_IMPLS:
        raise ValueError(f"ops implementation must be one of {OPS_IMPLS}, got {impl!r}")
    return impl


def make_kernel(taps: Sequence[float] | Tensor) -> Tensor:
    """Normalised 2-D FIR kernel from 1-D taps (outer product) or a 2-D array.

    taps: (k,) or (kh, kw) numbers, sum not zero.
    Returns (k, k) or (kh, kw) float32 tensor on the current default device, summing to 1.
    """
    k = torch.as_tensor(taps, dtype=torch.float32)
    if k.ndim == 1:
        k = k[:, None] * k[None, :]
    if k.ndim != 2 or k.numel() == 0:
        raise ValueError(f"FIR taps must be a non-empty 1-D or 2-D array, got shape {tuple(k.shape)}")
    return k / k.sum()


def _kernel_2d(kernel: Tensor) -> Tensor:
    """(k,) separable taps -> (k, k) outer product; (kh, kw) unchanged."""
    return kernel[:, None] * kernel[None, :] if kernel.ndim == 1 else kernel


def _check_upfirdn_args(x: Tensor, kernel: Tensor, up: int, down: int, pad: tuple[int, int]) -> tuple[int, int]:
    """Validate arguments; return the output (height, width)."""
    if x.ndim != 4:
        raise ValueError(f"upfirdn2d input must be (N, C, H, W), got shape {tuple(x.shape)}")
    if kernel.ndim not in (1, 2):
        raise ValueError(f"upfirdn2d kernel must be (k,) separable taps or (kh, kw), got shape {tuple(kernel.shape)}")
    if up < 1 or down < 1:
        raise ValueError(f"upfirdn2d factors must be >= 1, got up={up}, down={down}")
    if len(pad) != 2:
        raise ValueError(f"upfirdn2d pad must be (before, after), got {pad!r}")
    kh, kw = _kernel_2d(kernel).shape
    h, w = x.shape[2:]
    out_h = (h * up + pad[0] + pad[1] - kh) // down + 1
    out_w = (w * up + pad[0] + pad[1] - kw) // down + 1
    if out_h < 1 or out_w < 1:
        raise ValueError(
            f"upfirdn2d output would be empty: input {h}x{w}, kernel {kh}x{kw}, up={up}, "
            f"down={down}, pad={pad}; use larger pads or a larger input"
        )
    return out_h, out_w


def upfirdn2d_ref(x: Tensor, kernel: Tensor, up: int = 1, down: int = 1, pad: tuple[int, int] = (0, 0)) -> Tensor:
    """Upsample, pad, FIR-filter and downsample, written step by step (the reference).

    x: (N, C, H, W) any float dtype.
    kernel: (kh, kw) FIR filter, or (k,) taps meaning the separable filter outer(k, k); not
        normalised here (callers scale it, e.g. by up**2 to keep the signal level).
    up, down: integer factors >= 1. pad: (before, after) added to both axes after upsampling;
        negative values crop.
    Returns (N, C, (H*up + before + after - kh)//down + 1, same for W), dtype of x.
    """
    _check_upfirdn_args(x, kernel, up, down, pad)
    kernel = _kernel_2d(kernel).to(x.dtype)
    n, c, h, w = x.shape
    if up > 1:
        # Each sample is followed by up-1 zeros along both axes.
        x = x.reshape(n, c, h, 1, w, 1)
        x = F.pad(x, [0, up - 1, 0, 0, 0, up - 1])
        x = x.reshape(n, c, h * up, w * up)
    x = F.pad(x, [pad[0], pad[1], pad[0], pad[1]])
    kh, kw = kernel.shape
    out_h = x.shape[2] - kh + 1
    out_w = x.shape[3] - kw + 1
    # True convolution: tap (i, j) of the flipped kernel weights the window shifted by (i, j).
    out = torch.zeros(n, c, out_h, out_w, dtype=x.dtype, device=x.device)
    for i in range(kh):
        for j in range(kw):
            out = out + kernel[kh - 1 - i, kw - 1 - j] * x[:, :, i : i + out_h, j : j + out_w]
    return out[:, :, ::down, ::down]


def _upfirdn2d_conv(
    x: Tensor,
    kernel: Tensor,
    up: tuple[int, int],
    down: tuple[int, int],
    pad: tuple[int, int, int, int],
) -> Tensor:
    """One depthwise (transposed) convolution; per-axis factors and pads (y0, y1, x0, x1)."""
    c = x.shape[1]
    kh, kw = kernel.shape
    uy, ux = up
    dy, dx = down
    py0, py1, px0, px1 = pad
    kernel = kernel.to(x.dtype)
    if uy == 1 and ux == 1:
        # conv2d correlates, upfirdn2d convolves: flip the taps.
        weight = kernel.flip([0, 1])[None, None].expand(c, 1, kh, kw)
        if py0 == py1 and px0 == px1 and py0 >= 0 and px0 >= 0:
            return F.conv2d(x, weight, stride=(dy, dx), padding=(py0, px0), groups=c)
        x = F.pad(x, [px0, px1, py0, py1])
        return F.conv2d(x, weight, stride=(dy, dx), groups=c)

    # Transposed conv: out[o] = sum_i x[i] k[o + P - i*up] with P = k - 1 - pad_before, which is
    # upfirdn2d with an unflipped kernel; output_padding sets the trailing pad.
    weight = kernel[None, None].expand(c, 1, kh, kw)
    p_y, p_x = kh - 1 - py0, kw - 1 - px0
    op_y, op_x = py1 - py0 + uy - 1, px1 - px0 + ux - 1
    if p_y >= 0 and p_x >= 0 and 0 <= op_y < uy and 0 <= op_x < ux:
        out = F.conv_transpose2d(x, weight, stride=(uy, ux), padding=(p_y, p_x), output_padding=(op_y, op_x), groups=c)
    else:
        # Full transposed conv equals upfirdn2d with pads (k - 1, k - up); pad/crop the rest.
        out = F.conv_transpose2d(x, weight, stride=(uy, ux), groups=c)
        out = F.pad(out, [px0 - (kw - 1), px1 - (kw - ux), py0 - (kh - 1), py1 - (kh - uy)])
    if dy > 1 or dx > 1:
        out = out[:, :, ::dy, ::dx]
    return out


def _upfirdn2d_conv_passes(x: Tensor, kernel: Tensor, up: int, down: int, pad: tuple[int, int, int, int]) -> Tensor:
    """upfirdn2d as one 2-D pass, or two 1-D passes for a (k,) separable kernel."""
    py0, py1, px0, px1 = pad
    if kernel.ndim == 1:
        k = kernel.shape[0]
        x = _upfirdn2d_conv(x, kernel.reshape(k, 1), (up, 1), (down, 1), (py0, py1, 0, 0))
        return _upfirdn2d_conv(x, kernel.reshape(1, k), (1, up), (1, down), (0, 0, px0, px1))
    return _upfirdn2d_conv(x, kernel, (up, up), (down, down), pad)


class _UpFirDn2dFast(torch.autograd.Function):
    """upfirdn2d whose backward is again upfirdn2d (its adjoint), so that every derivative order
    runs the same convolutions. Autograd's generic double backward of a depthwise convolution
    loops over the channel groups, which makes R1 tens of times slower."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx, x: Tensor, kernel: Tensor, up: int, down: int, pad: tuple[int, int, int, int]
    ) -> Tensor:
        out = _upfirdn2d_conv_passes(x, kernel, up, down, pad)
        ctx.save_for_backward(kernel)
        ctx.up, ctx.down, ctx.pad = up, down, pad
        ctx.in_hw = (x.shape[2], x.shape[3])
        ctx.out_hw = (out.shape[2], out.shape[3])
        ctx.in_dtype = x.dtype
        return out

    @staticmethod
    def backward(ctx, grad_out: Tensor):  # type: ignore[override]
        (kernel,) = ctx.saved_tensors
        up, down = ctx.up, ctx.down
        py0, _, px0, _ = ctx.pad
        (in_h, in_w), (out_h, out_w) = ctx.in_hw, ctx.out_hw
        kh, kw = (kernel.shape[0],) * 2 if kernel.ndim == 1 else kernel.shape
        # Adjoint: zero-insert by `down`, correlate (flipped kernel), crop, keep every `up`-th.
        g_pad = (
            kh - py0 - 1,
            in_h * up - out_h * down + py0 - up + 1,
            kw - px0 - 1,
            in_w * up - out_w * down + px0 - up + 1,
        )
        grad_in = _UpFirDn2dFast.apply(grad_out, kernel.flip(list(range(kernel.ndim))), down, up, g_pad)
        return grad_in.to(ctx.in_dtype), None, None, None, None


def upfirdn2d_fast(x: Tensor, kernel: Tensor, up: int = 1, down: int = 1, pad: tuple[int, int] = (0, 0)) -> Tensor:
    """Same map as `upfirdn2d_ref`, as depthwise conv2d / conv_transpose2d (the fast path).

    x: (N, C, H, W) any float dtype (bf16 under autocast is fine), any memory format.
    kernel: (kh, kw) filter as one 2-D depthwise pass, or (k,) taps applied separably as two
        1-D passes (same result as outer(k, k) up to rounding); treated as a constant (no
        gradient flows to it).
    Returns (N, C, (H*up + before + after - kh)//down + 1, same for W).
    Differentiable any number of times; each derivative is again a fast upfirdn2d.
    """
    _check_upfirdn_args(x, kernel, up, down, pad)
    p0, p1 = int(pad[0]), int(pad[1])
    return _UpFirDn2dFast.apply(x, kernel.detach(), int(up), int(down), (p0, p1, p0, p1))


def upfirdn2d(
    x: Tensor,
    kernel: Tensor,
    up: int = 1,
    down: int = 1,
    pad: tuple[int, int] = (0, 0),
    impl: str = "fast",
) -> Tensor:
    """Dispatch to `upfirdn2d_fast` or `upfirdn2d_ref` (impl "fast" or "reference")."""
    if impl == "fast":
        return upfirdn2d_fast(x, kernel, up, down, pad)
    if impl == "reference":
        return upfirdn2d_ref(x, kernel, up, down, pad)
    raise ValueError(f"ops implementation must be one of {OPS_IMPLS}, got {impl!r}")


def fused_leaky_relu(
    x: Tensor,
    bias: Tensor | None = None,
    negative_slope: float = LRELU_SLOPE,
    scale: float = LRELU_GAIN,
) -> Tensor:
    """Add a per-channel bias, apply leaky ReLU, multiply by `scale` (sqrt(2) keeps the variance).

    x: (N, C, ...) any float dtype. bias: (C,) or None; cast to x's dtype so that a bf16
        activation stays bf16 under autocast.
    Returns a tensor shaped like x. Differentiable twice.
    """
    if bias is not None:
        if bias.ndim != 1 or x.ndim < 2 or bias.shape[0] != x.shape[1]:
            raise ValueError(f"bias must be (C,) with C = x.shape[1]; got bias {tuple(bias.shape)}, x {tuple(x.shape)}")
        x = x + bias.to(x.dtype).reshape(1, -1, *([1] * (x.ndim - 2)))
    return F.leaky_relu(x, negative_slope) * scale
