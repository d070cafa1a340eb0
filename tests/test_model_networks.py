"""Tests of gan2shape.model.networks and gan2shape.model.decode."""

from __future__ import annotations

import math

import pytest
import torch

from gan2shape.model import (
    AlbedoNet,
    DepthNet,
    InstanceEnsemble,
    InversionEncoder,
    LightNet,
    ViewNet,
    decode_depth,
    decode_light,
    decode_view,
    default_nf,
    reconstruct,
)
from gan2shape.render import Camera

SIZES = (32, 64, 128)


def _small_nets(size: int) -> list[tuple[torch.nn.Module, tuple[int, ...]]]:
    """Every network at a small width (fast on CPU), with its expected per-image output shape."""
    return [
        (DepthNet(size, nf=16, zdim=32), (1, size, size)),
        (AlbedoNet(size, nf=16, zdim=32), (3, size, size)),
        (ViewNet(size, nf=8), (6,)),
        (LightNet(size, nf=8), (4,)),
        (InversionEncoder(size, out_dim=24, nf=8), (24,)),
    ]


@pytest.mark.parametrize("size", SIZES)
def test_nets_shapes_ranges_and_gradients(size: int) -> None:
    torch.manual_seed(0)
    x = torch.rand(2, 3, size, size) * 2 - 1
    for net, shape in _small_nets(size):
        y = net(x)
        assert y.shape == (2, *shape), type(net).__name__
        if isinstance(net, (AlbedoNet, ViewNet, LightNet)):
            assert y.abs().max() <= 1.0
        net.zero_grad()
        (y * torch.randn_like(y)).sum().backward()
        for name, p in net.named_parameters():
            assert p.grad is not None and p.grad.abs().sum() > 0, f"{type(net).__name__}.{name} gets no gradient"


@pytest.mark.parametrize("size", SIZES)
def test_default_width_nets_map_shapes(size: int) -> None:
    # The reference width (nf = max(4096 // S, 16), zdim 256): deepest stage has 512 channels.
    assert default_nf(size) == max(4096 // size, 16)
    x = torch.zeros(1, 3, size, size)
    with torch.no_grad():
        assert DepthNet(size)(x).shape == (1, 1, size, size)
        assert ViewNet(size)(x).shape == (1, 6)
        assert InversionEncoder(size)(x).shape == (1, 512)


def test_nets_reject_wrong_input_size() -> None:
    with pytest.raises(ValueError, match="image_size=32"):
        ViewNet(64, nf=8)(torch.zeros(1, 3, 32, 32))
    with pytest.raises(ValueError, match="power of two"):
        DepthNet(48)


def test_instance_ensemble_equals_separate_copies() -> None:
    torch.manual_seed(0)
    n, b, size = 3, 2, 32
    copies = [DepthNet(size, nf=16, zdim=16) for _ in range(n)]
    ens = InstanceEnsemble(iter(copies).__next__, n)
    x = torch.randn(n * b, 3, size, size)
    y = ens(x)
    expected = torch.cat([copies[i](x[i * b : (i + 1) * b]) for i in range(n)])
    torch.testing.assert_close(y, expected, rtol=1e-4, atol=1e-5)
    # Gradients of copy i come only from copy i's rows.
    loss = y[:b].sum()
    loss.backward()
    for p in ens.parameters():
        assert p.grad[1:].abs().max() == 0
    assert any(p.grad[0].abs().max() > 0 for p in ens.parameters())
    # State of a copy round-trips into a plain network.
    net = DepthNet(size, nf=16, zdim=16)
    net.load_state_dict(ens.copy_state_dict(2))
    torch.testing.assert_close(net(x[:b]), copies[2](x[:b]))
    ens.load_copy(0, copies[1].state_dict())
    torch.testing.assert_close(ens(x)[:b], copies[1](x[:b]), rtol=1e-4, atol=1e-5)


def test_instance_ensemble_encoder_and_batch_check() -> None:
    torch.manual_seed(1)
    copies = [LightNet(32, nf=8) for _ in range(2)]
    ens = InstanceEnsemble.replicate(copies[0], 2)
    ens.load_copy(1, copies[1].state_dict())
    x = torch.randn(4, 3, 32, 32)
    torch.testing.assert_close(ens(x), torch.cat([copies[0](x[:2]), copies[1](x[2:])]), rtol=1e-4, atol=1e-6)
    with pytest.raises(ValueError, match="n=2"):
        ens(torch.randn(3, 3, 32, 32))


def test_decode_depth_range_border_and_constant() -> None:
    cam = Camera(16)
    torch.manual_seed(0)
    raw = torch.randn(3, 1, 16, 16) * 5
    depth = decode_depth(raw, cam)
    assert depth.shape == (3, 16, 16)
    assert depth.min() >= cam.min_depth and depth.max() <= cam.max_depth
    border = torch.full((3, 16, 2), cam.border_depth)
    torch.testing.assert_close(depth[:, :, :2], border)
    torch.testing.assert_close(depth[:, :, -2:], border)
    both = decode_depth(raw[:, 0], cam, border_rows=True)
    torch.testing.assert_close(both[:, :2, :], torch.full((3, 2, 16), cam.border_depth))
    # Mean subtraction: a constant map (any constant) gives the mid depth off the border.
    flat = decode_depth(torch.full((2, 16, 16), 7.3), cam)
    torch.testing.assert_close(flat[:, :, 2:-2], torch.full((2, 16, 12), (cam.min_depth + cam.max_depth) / 2))
    # Off the border, depth follows tanh of the centred map exactly.
    d = torch.tanh(raw[:, 0] - raw[:, 0].mean((1, 2), keepdim=True))
    torch.testing.assert_close(depth[:, :, 2:-2], (1 + d[:, :, 2:-2]) / 2 * 1.1 + (1 - d[:, :, 2:-2]) / 2 * 0.9)


def test_decode_view_scaling_and_mean() -> None:
    raw = torch.tensor([[1.0, -0.5, 0.25, 1.0, -1.0, 1.0]])
    v = decode_view(raw)
    expected = torch.tensor([[math.pi / 3, -math.pi / 6, math.pi / 12, 0.1, -0.1, 0.0]])
    torch.testing.assert_close(v, expected)
    v2 = decode_view(raw, xyz_rotation_range_deg=90, z_translation_range=0.5, mean_view=torch.full((6,), 0.5))
    torch.testing.assert_close(v2[0, 0], torch.tensor(1.5 * math.pi / 2))
    torch.testing.assert_close(v2[0, 5], torch.tensor(0.75))
    with pytest.raises(ValueError, match="mean_view"):
        decode_view(raw, mean_view=torch.zeros(5))


def test_decode_light_frontal_and_unit() -> None:
    ka, kd, d = decode_light(torch.tensor([[0.0, 1.0, 0.0, 0.0], [-1.0, 0.0, 1.0, -1.0]]))
    torch.testing.assert_close(ka, torch.tensor([0.5, 0.0]))
    torch.testing.assert_close(kd, torch.tensor([1.0, 0.5]))
    s = 1 / math.sqrt(3)
    torch.testing.assert_close(d, torch.tensor([[0.0, 0.0, 1.0], [s, -s, s]]))


def test_reconstruct_identity_view_flat_depth_gives_shaded_albedo() -> None:
    cam = Camera(16)
    torch.manual_seed(0)
    albedo = torch.rand(2, 3, 16, 16) * 2 - 1
    depth = torch.ones(2, 16, 16)
    ka, kd = torch.tensor([0.3, 0.1]), torch.tensor([0.4, 0.5])
    light = torch.tensor([[0.0, 0.0, 1.0], [0.0, 0.0, 1.0]])
    out = reconstruct(albedo, depth, torch.zeros(2, 6), ka, kd, light, cam)
    shading = (ka + kd)[:, None, None, None]
    expected = (albedo / 2 + 0.5) * shading * 2 - 1
    assert out["mask"].shape == (2, 1, 16, 16) and out["mask"].min() == 1
    torch.testing.assert_close(out["image"], expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out["recon_depth"], depth)
    torch.testing.assert_close(out["shading"], shading.expand(2, 1, 16, 16))
    torch.testing.assert_close(out["diffuse_shading"], torch.ones(2, 1, 16, 16))
