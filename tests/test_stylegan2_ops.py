"""Fast (convolution) resampling ops against the step-by-step reference upfirdn2d."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from gan2shape.stylegan2.ops import (
    fused_leaky_relu,
    make_kernel,
    upfirdn2d,
    upfirdn2d_fast,
    upfirdn2d_ref,
)

# (up, down, pad) cases: those of the network plus negative (cropping) and large pads.
CASES = [
    (1, 1, (1, 1)),  # blur after the modulated transposed conv
    (1, 1, (2, 2)),  # blur before a 3x3 stride-2 conv
    (1, 2, (1, 1)),  # blur at stride 2 before a 1x1 conv
    (2, 1, (2, 1)),  # ToRGB skip upsampling
    (2, 2, (0, 3)),
    (3, 1, (-1, 4)),
    (1, 3, (3, -1)),
    (2, 1, (5, 0)),
    (2, 3, (-2, 2)),
]


def _kernels(dtype: torch.dtype) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return [
        torch.randn(3, 4, generator=g, dtype=dtype),  # asymmetric, non-square: catches flips
        torch.randn(4, generator=g, dtype=dtype),  # separable taps
        make_kernel([1, 3, 3, 1]).to(dtype),
    ]


@pytest.mark.parametrize("up,down,pad", CASES)
def test_fast_matches_reference_forward_and_grad(up: int, down: int, pad: tuple[int, int]) -> None:
    for kernel in _kernels(torch.float64):
        x = torch.randn(2, 3, 7, 6, dtype=torch.float64, requires_grad=True)
        ref = upfirdn2d_ref(x, kernel, up, down, pad)
        fast = upfirdn2d_fast(x, kernel, up, down, pad)
        assert fast.shape == ref.shape
        kh, kw = (kernel.shape[0],) * 2 if kernel.ndim == 1 else kernel.shape
        assert ref.shape[2] == (7 * up + sum(pad) - kh) // down + 1
        assert ref.shape[3] == (6 * up + sum(pad) - kw) // down + 1
        torch.testing.assert_close(fast, ref, rtol=1e-12, atol=1e-12)
        g = torch.randn_like(ref)
        (g_ref,) = torch.autograd.grad(ref, x, g)
        (g_fast,) = torch.autograd.grad(fast, x, g)
        torch.testing.assert_close(g_fast, g_ref, rtol=1e-12, atol=1e-12)


def test_fast_backward_is_the_adjoint_and_twice_differentiable() -> None:
    kernel = _kernels(torch.float64)[0]
    x = torch.randn(1, 2, 5, 4, dtype=torch.float64, requires_grad=True)
    for up, down, pad in [CASES[3], CASES[5], CASES[8]]:
        fn = lambda t: upfirdn2d_fast(t, kernel, up, down, pad)  # noqa: E731
        assert torch.autograd.gradcheck(fn, (x,), fast_mode=True)
        assert torch.autograd.gradgradcheck(fn, (x,), fast_mode=True)


@pytest.mark.parametrize("up,down,pad", CASES)
def test_fast_double_backward_matches_reference(up: int, down: int, pad: tuple[int, int]) -> None:
    kernel = _kernels(torch.float64)[0]
    x = torch.randn(2, 2, 6, 5, dtype=torch.float64, requires_grad=True)
    second = {}
    for impl in ("fast", "reference"):
        y = upfirdn2d(x, kernel, up, down, pad, impl=impl)
        (gx,) = torch.autograd.grad(y.pow(3).sum(), x, create_graph=True)
        (ggx,) = torch.autograd.grad(gx.pow(2).sum(), x)
        second[impl] = ggx
    torch.testing.assert_close(second["fast"], second["reference"], rtol=1e-10, atol=1e-10)


def test_fast_matches_reference_in_float32_with_double_backward() -> None:
    kernel = make_kernel([1, 3, 3, 1]) * 4
    x = torch.randn(2, 4, 8, 8, requires_grad=True)
    outs = {}
    for impl in ("fast", "reference"):
        y = upfirdn2d(x, kernel, up=2, pad=(2, 1), impl=impl)
        (gx,) = torch.autograd.grad(y.pow(2).sum(), x, create_graph=True)
        (ggx,) = torch.autograd.grad(gx.pow(2).sum(), x)
        outs[impl] = (y, gx, ggx)
    for a, b in zip(outs["fast"], outs["reference"]):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_reference_analytic_cases() -> None:
    x = torch.randn(1, 2, 5, 5, dtype=torch.float64)
    one = torch.ones(1, 1, dtype=torch.float64)
    # A 1x1 unit kernel with up=2 is pure zero insertion.
    up = upfirdn2d_ref(x, one, up=2)
    assert up.shape == (1, 2, 10, 10)
    torch.testing.assert_close(up[:, :, ::2, ::2], x)
    assert up[:, :, 1::2].abs().sum() == 0 and up[:, :, :, 1::2].abs().sum() == 0
    # down=2 keeps every other sample starting at 0; pads add zeros or crop.
    torch.testing.assert_close(upfirdn2d_ref(x, one, down=2), x[:, :, ::2, ::2])
    torch.testing.assert_close(upfirdn2d_ref(x, one, pad=(-1, -2)), x[:, :, 1:-2, 1:-2])
    # The kernel is applied as a true convolution (flipped): with taps [0, 1] and one leading
    # pad, output column j is input column j - 1 (a correlation would give column j).
    delta = torch.zeros(1, 2, dtype=torch.float64)
    delta[0, 1] = 1.0
    shifted = upfirdn2d_ref(x, delta, pad=(1, 0))
    assert shifted.shape == (1, 2, 6, 5)
    torch.testing.assert_close(shifted[:, :, 1:, 1:], x[:, :, :, :-1])
    assert shifted[:, :, 0].abs().sum() == 0 and shifted[:, :, :, 0].abs().sum() == 0
    # The upsampling filter (sum 4 after up=2) keeps a constant image constant inside.
    const = torch.full((1, 1, 6, 6), 0.7, dtype=torch.float64)
    k = make_kernel([1, 3, 3, 1]).double() * 4
    for impl in ("fast", "reference"):
        y = upfirdn2d(const, k, up=2, pad=(2, 1), impl=impl)
        assert y.shape == (1, 1, 12, 12)
        torch.testing.assert_close(y[:, :, 2:-2, 2:-2], torch.full((1, 1, 8, 8), 0.7, dtype=torch.float64))


def test_make_kernel_normalised_outer_product() -> None:
    k = make_kernel([1, 3, 3, 1])
    assert k.shape == (4, 4)
    assert math.isclose(k.sum().item(), 1.0, rel_tol=1e-6)
    torch.testing.assert_close(k, torch.outer(torch.tensor([1.0, 3, 3, 1]), torch.tensor([1.0, 3, 3, 1])) / 64)


def test_fast_runs_under_bf16_autocast_and_channels_last() -> None:
    x = torch.randn(2, 8, 16, 16).contiguous(memory_format=torch.channels_last).requires_grad_(True)
    k = make_kernel([1, 3, 3, 1])
    ref = upfirdn2d_ref(x, k, pad=(1, 1))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = upfirdn2d_fast(x, k, pad=(1, 1))
    assert y.dtype == torch.bfloat16
    torch.testing.assert_close(y.float(), ref, rtol=2e-2, atol=2e-2)
    (g,) = torch.autograd.grad(y.float().sum(), x)
    assert g.dtype == torch.float32 and torch.isfinite(g).all()


def test_upfirdn2d_rejects_bad_arguments() -> None:
    x = torch.randn(1, 1, 4, 4)
    k = torch.ones(4, 4)
    with pytest.raises(ValueError, match="empty"):
        upfirdn2d_fast(x, k, pad=(-2, -2))
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        upfirdn2d_ref(x[0], k)
    with pytest.raises(ValueError, match="one of"):
        upfirdn2d(x, k, impl="cuda")


def test_fused_leaky_relu_values_and_double_backward() -> None:
    x = torch.tensor([[-2.0, -0.5, 0.0, 1.5]], dtype=torch.float64).reshape(1, 4, 1, 1)
    bias = torch.tensor([1.0, 0.5, -1.0, 0.5], dtype=torch.float64)
    out = fused_leaky_relu(x, bias).flatten()
    pre = [-1.0, 0.0, -1.0, 2.0]
    expected = [math.sqrt(2) * (v if v >= 0 else 0.2 * v) for v in pre]
    torch.testing.assert_close(out, torch.tensor(expected, dtype=torch.float64))
    # Variance-preserving gain: E[(sqrt2 * lrelu(z))^2] = 1 + 0.04 for z ~ N(0, 1).
    z = torch.randn(200_000, 1, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    assert abs(fused_leaky_relu(z).pow(2).mean().item() - 1.04) < 0.02
    xx = torch.randn(3, 4, 2, 2, dtype=torch.float64, requires_grad=True)
    bb = torch.randn(4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradgradcheck(lambda a, b: fused_leaky_relu(a, b), (xx, bb))
    with pytest.raises(ValueError, match="bias must be"):
        fused_leaky_relu(xx, torch.zeros(3))


@pytest.mark.parametrize("up,down", list(itertools.product([1, 2], [1, 2])))
def test_fast_grad_in_float32_matches_reference(up: int, down: int) -> None:
    k = _kernels(torch.float32)[0]
    x = torch.randn(2, 3, 9, 8, requires_grad=True)
    y_ref = upfirdn2d_ref(x, k, up, down, (2, 1))
    y_fast = upfirdn2d_fast(x, k, up, down, (2, 1))
    torch.testing.assert_close(y_fast, y_ref)
    g = torch.randn_like(y_ref)
    torch.testing.assert_close(torch.autograd.grad(y_fast, x, g)[0], torch.autograd.grad(y_ref, x, g)[0])
