"""StyleGAN2 networks: official key layout, mapping split, truncation, fast vs reference ops."""

from __future__ import annotations

import math

import pytest
import torch

from gan2shape.stylegan2.model import (
    Discriminator,
    Generator,
    to_channels_last,
)
from gan2shape.stylegan2.ops import make_kernel

# ----- the official key table, written out from the naming rules of rosinality/stylegan2-pytorch


def official_channels(cm: int) -> dict[int, int]:
    return {4: 512, 8: 512, 16: 512, 32: 512, 64: 256 * cm, 128: 128 * cm, 256: 64 * cm, 512: 32 * cm, 1024: 16 * cm}


def official_generator_keys(size: int, style_dim: int, n_mlp: int, cm: int) -> list[tuple[str, tuple]]:
    ch = official_channels(cm)
    keys: list[tuple[str, tuple]] = []
    for i in range(1, n_mlp + 1):
        keys += [(f"style.{i}.weight", (style_dim, style_dim)), (f"style.{i}.bias", (style_dim,))]
    keys.append(("input.input", (1, ch[4], 4, 4)))

    def styled(name: str, cin: int, cout: int, up: bool) -> list[tuple[str, tuple]]:
        out = [(f"{name}.conv.weight", (1, cout, cin, 3, 3))]
        if up:
            out.append((f"{name}.conv.blur.kernel", (4, 4)))
        return out + [
            (f"{name}.conv.modulation.weight", (cin, style_dim)),
            (f"{name}.conv.modulation.bias", (cin,)),
            (f"{name}.noise.weight", (1,)),
            (f"{name}.activate.bias", (cout,)),
        ]

    def to_rgb(name: str, cin: int, up: bool) -> list[tuple[str, tuple]]:
        out = [(f"{name}.bias", (1, 3, 1, 1))]
        if up:
            out.append((f"{name}.upsample.kernel", (4, 4)))
        return out + [
            (f"{name}.conv.weight", (1, 3, cin, 1, 1)),
            (f"{name}.conv.modulation.weight", (cin, style_dim)),
            (f"{name}.conv.modulation.bias", (cin,)),
        ]

    keys += styled("conv1", ch[4], ch[4], False) + to_rgb("to_rgb1", ch[4], False)
    convs, rgbs = [], []
    cin = ch[4]
    resolutions = [2**e for e in range(3, int(math.log2(size)) + 1)]
    for j, res in enumerate(resolutions):
        convs += styled(f"convs.{2 * j}", cin, ch[res], True)
        convs += styled(f"convs.{2 * j + 1}", ch[res], ch[res], False)
        rgbs += to_rgb(f"to_rgbs.{j}", ch[res], True)
        cin = ch[res]
    keys += convs + rgbs
    # One noise map at 4x4, then two per resolution 8, 16, ..., size.
    noise_res = [4] + [r for r in resolutions for _ in range(2)]
    keys += [(f"noises.noise_{i}", (1, 1, r, r)) for i, r in enumerate(noise_res)]
    return keys


def official_discriminator_keys(size: int, cm: int) -> list[tuple[str, tuple]]:
    ch = official_channels(cm)
    keys: list[tuple[str, tuple]] = [("convs.0.0.weight", (ch[size], 3, 1, 1)), ("convs.0.1.bias", (ch[size],))]
    cin = ch[size]
    res, k = size, 1
    while res > 4:
        cout = ch[res // 2]
        p = f"convs.{k}"
        keys += [
            (f"{p}.conv1.0.weight", (cin, cin, 3, 3)),
            (f"{p}.conv1.1.bias", (cin,)),
            (f"{p}.conv2.0.kernel", (4, 4)),
            (f"{p}.conv2.1.weight", (cout, cin, 3, 3)),
            (f"{p}.conv2.2.bias", (cout,)),
            (f"{p}.skip.0.kernel", (4, 4)),
            (f"{p}.skip.1.weight", (cout, cin, 1, 1)),
        ]
        cin, res, k = cout, res // 2, k + 1
    keys += [
        ("final_conv.0.weight", (ch[4], cin + 1, 3, 3)),
        ("final_conv.1.bias", (ch[4],)),
        ("final_linear.0.weight", (ch[4], ch[4] * 16)),
        ("final_linear.0.bias", (ch[4],)),
        ("final_linear.1.weight", (1, ch[4])),
        ("final_linear.1.bias", (1,)),
    ]
    return keys


# name: (size, channel_multiplier) of the GAN2Shape reference checkpoints
OFFICIAL_CONFIGS = {
    "celeba-config-e": (128, 1),
    "car-config-f": (512, 2),
    "church-config-f": (256, 2),
    "cat-config-e": (256, 1),
}


@pytest.mark.parametrize("name", sorted(OFFICIAL_CONFIGS))
def test_state_dict_keys_and_shapes_match_official_layout(name: str) -> None:
    size, cm = OFFICIAL_CONFIGS[name]
    with torch.device("meta"):
        g = Generator(size, 512, 8, channel_multiplier=cm)
        d = Discriminator(size, channel_multiplier=cm)
    for net, expected in (
        (g, official_generator_keys(size, 512, 8, cm)),
        (d, official_discriminator_keys(size, cm)),
    ):
        got = [(k, tuple(v.shape)) for k, v in net.state_dict().items()]
        assert [k for k, _ in got] == [k for k, _ in expected]  # same keys in the same order
        assert got == expected  # and the same shapes
        # Blur kernels and noise maps are buffers (not trained), as in the official code.
        buffers = {k for k, _ in net.named_buffers()}
        assert buffers == {k for k, _ in expected if k.endswith("kernel") or ".noise_" in k}


def test_small_config_keys_follow_the_same_rules() -> None:
    g = Generator(32, 64, 3, channel_multiplier=1)
    got = [(k, tuple(v.shape)) for k, v in g.state_dict().items()]
    assert got == official_generator_keys(32, 64, 3, 1)
    # Kernel values: normalised [1,3,3,1] outer product, times 4 where it follows upsampling.
    k = make_kernel([1, 3, 3, 1])
    torch.testing.assert_close(g.convs[0].conv.blur.kernel, k * 4)
    torch.testing.assert_close(g.to_rgbs[0].upsample.kernel, k * 4)
    d = Discriminator(32)
    torch.testing.assert_close(d.convs[1].conv2[0].kernel, k)


def test_channel_max_caps_channels_with_same_keys() -> None:
    g = Generator(64, 32, 2, channel_multiplier=1, channel_max=16)
    d = Discriminator(64, channel_multiplier=1, channel_max=16)
    assert g.input.input.shape == (1, 16, 4, 4)
    assert all(c == 16 for c in g.channels.values())
    names = [k for k, _ in official_generator_keys(64, 32, 2, 1)]
    assert list(g.state_dict()) == names
    assert list(d.state_dict()) == [k for k, _ in official_discriminator_keys(64, 1)]


# ----- small networks for behaviour tests ------------------------------------------------------

STYLE = 32


@pytest.fixture(scope="module")
def nets() -> tuple[Generator, Discriminator]:
    torch.manual_seed(0)
    g = Generator(32, STYLE, 3, channel_max=16)
    d = Discriminator(32, channel_max=16)
    # Non-zero noise strengths and biases so that every parameter influences the output.
    with torch.no_grad():
        for p in [*g.parameters(), *d.parameters()]:
            if p.ndim <= 1 or p.shape == (1, 3, 1, 1):
                p.add_(0.1 * torch.randn_like(p))
    return g, d


def test_generator_output_shape_and_range(nets: tuple[Generator, Discriminator]) -> None:
    g, _ = nets
    img, lat = g([torch.randn(4, STYLE)], return_latents=True)
    assert img.shape == (4, 3, 32, 32) and img.dtype == torch.float32
    assert lat.shape == (4, g.n_latent, STYLE) and g.n_latent == 8 and g.num_layers == 7
    assert torch.isfinite(img).all() and img.abs().mean() < 5


def test_mapping_head_tail_compose_for_every_split(nets: tuple[Generator, Discriminator]) -> None:
    g, _ = nets
    z = torch.randn(5, STYLE)
    w = g.get_latent(z)
    for k in range(g.n_mlp + 1):
        h = g.mapping_head(z, k)
        assert h.shape == (5, STYLE)
        assert torch.equal(g.mapping_tail(h, k), w), k
    # Split 0 with the PixelNorm in the tail, as the reference code does at depth 0.
    assert torch.equal(g.mapping_tail(z, 0, pixel_norm=True), w)
    # PixelNorm makes the mapping invariant to the scale of z.
    torch.testing.assert_close(g.get_latent(3.0 * z), w)
    with pytest.raises(ValueError, match="n_layers"):
        g.mapping_head(z, g.n_mlp + 1)


def test_truncation_zero_gives_mean_latent_image(nets: tuple[Generator, Discriminator]) -> None:
    g, _ = nets
    mean = g.mean_latent(256, generator=torch.Generator().manual_seed(0))
    assert mean.shape == (1, STYLE)
    z = torch.randn(3, STYLE)
    img0, lat0 = g([z], truncation=0.0, truncation_latent=mean, randomize_noise=False, return_latents=True)
    img_mean, _ = g([mean.expand(3, -1)], input_is_latent=True, randomize_noise=False)
    assert torch.equal(img0, img_mean)
    assert torch.equal(lat0, mean[:, None].expand(3, g.n_latent, -1))
    # Truncation 0.5 puts w halfway between its own value and the mean.
    _, lat_half = g([z], truncation=0.5, truncation_latent=mean, return_latents=True)
    torch.testing.assert_close(lat_half[:, 0], 0.5 * (g.get_latent(z) + mean))
    with pytest.raises(ValueError, match="truncation_latent"):
        g([z], truncation=0.5)


def test_fixed_noise_and_style_mixing(nets: tuple[Generator, Discriminator]) -> None:
    g, _ = nets
    w1, w2 = g.get_latent(torch.randn(2, STYLE)), g.get_latent(torch.randn(2, STYLE))
    a, _ = g([w1], input_is_latent=True, randomize_noise=False)
    b, _ = g([w1], input_is_latent=True, noise=[getattr(g.noises, f"noise_{i}") for i in range(g.num_layers)])
    c, _ = g([w1], input_is_latent=True, randomize_noise=True)
    assert torch.equal(a, b) and not torch.equal(a, c)
    _, mixed = g([w1, w2], input_is_latent=True, inject_index=3, return_latents=True)
    assert torch.equal(mixed[:, :3], w1[:, None].expand(2, 3, -1))
    assert torch.equal(mixed[:, 3:], w2[:, None].expand(2, g.n_latent - 3, -1))
    # A W+ latent is used as given.
    wplus = torch.randn(2, g.n_latent, STYLE)
    d1, _ = g([wplus], input_is_latent=True, randomize_noise=False)
    d2 = g.synthesis(wplus, randomize_noise=False)
    assert torch.equal(d1, d2)
    with pytest.raises(ValueError, match="noise must hold"):
        g.synthesis(wplus, noise=[None])
    with pytest.raises(ValueError, match="latent must be"):
        g.synthesis(wplus[:, :3])


@pytest.mark.parametrize("fused", [True, False])
def test_fast_and_reference_ops_give_same_generator(nets: tuple[Generator, Discriminator], fused: bool) -> None:
    g, _ = nets
    z = torch.randn(3, STYLE)
    noise = g.make_noise(generator=torch.Generator().manual_seed(1))
    try:
        img_ref, _ = g.set_ops("reference")([z], noise=noise)
        img_fast, _ = g.set_ops("fast").set_fused_modconv(fused)([z], noise=noise)
        torch.testing.assert_close(img_fast, img_ref, rtol=1e-5, atol=1e-5)
        # Gradients w.r.t. the latent (what a projector uses) and the weights agree too.
        grads = {}
        for ops in ("reference", "fast"):
            w = g.get_latent(z).detach().requires_grad_(True)
            img, _ = g.set_ops(ops)([w], input_is_latent=True, noise=noise)
            loss = (img * torch.linspace(-1, 1, 32)).square().mean()
            grads[ops] = torch.autograd.grad(loss, [w, g.conv1.conv.weight, g.convs[2].conv.weight])
        for a, b in zip(grads["fast"], grads["reference"]):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4 * b.abs().max().item())
    finally:
        g.set_ops("fast").set_fused_modconv(False)


def test_fast_and_reference_ops_give_same_discriminator_and_r1(nets: tuple[Generator, Discriminator]) -> None:
    _, d = nets
    x = torch.randn(4, 3, 32, 32)
    results = {}
    try:
        for ops in ("reference", "fast"):
            d.set_ops(ops)
            logits = d(x)
            feats = d.features(x, 4)
            real = x.clone().requires_grad_(True)
            (grad,) = torch.autograd.grad(d(real).sum(), real, create_graph=True)
            r1 = grad.pow(2).sum([1, 2, 3]).mean()
            wgrads = torch.autograd.grad(r1, list(d.parameters()), materialize_grads=True)
            results[ops] = (logits, feats, r1, wgrads)
    finally:
        d.set_ops("fast")
    (l_f, f_f, r_f, w_f), (l_r, f_r, r_r, w_r) = results["fast"], results["reference"]
    assert l_f.shape == (4, 1)
    torch.testing.assert_close(l_f, l_r, rtol=1e-5, atol=1e-5)
    for a, b in zip(f_f, f_r):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    assert r_f.item() > 0
    torch.testing.assert_close(r_f, r_r, rtol=1e-4, atol=0)
    scale = max(w.abs().max().item() for w in w_r)
    assert scale > 0
    for a, b in zip(w_f, w_r):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4 * scale)


def test_discriminator_features(nets: tuple[Generator, Discriminator]) -> None:
    _, d = nets
    x = torch.randn(4, 3, 32, 32)
    assert d.n_blocks == 4  # ResBlocks 32->16->8->4, then the final conv
    feats = d.features(x, 4)
    assert [tuple(f.shape) for f in feats] == [(4, 16, 16, 16), (4, 16, 8, 8), (4, 16, 4, 4), (4, 16, 4, 4)]
    # Features are the intermediate activations of the ordinary forward pass.
    h = d.convs[1](d.convs[0](x))
    torch.testing.assert_close(feats[0], h)
    torch.testing.assert_close(d.features(x, 2)[1], feats[1])
    with pytest.raises(ValueError, match="n_blocks"):
        d.features(x, 5)
    with pytest.raises(ValueError, match=r"\(N, 3, 32, 32\)"):
        d(torch.randn(4, 3, 16, 16))
    with pytest.raises(ValueError, match="multiple of 4"):
        d(torch.randn(6, 3, 32, 32))


def test_bf16_autocast_and_channels_last(nets: tuple[Generator, Discriminator]) -> None:
    g, d = nets
    z = torch.randn(4, STYLE)
    noise = g.make_noise(generator=torch.Generator().manual_seed(2))
    img32, _ = g([z], noise=noise)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        img16, _ = g([z], noise=noise)
        logits16 = d(img16)
    assert img16.dtype == torch.bfloat16 and logits16.shape == (4, 1)
    rel = (img16.float() - img32).abs().mean() / img32.abs().mean()
    assert rel < 0.05
    # R1 under autocast: double backward runs and gives finite weight gradients.
    x = img32.detach().requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = d(x)
    (grad,) = torch.autograd.grad(out.float().sum(), x, create_graph=True)
    grad.pow(2).sum().backward()
    assert all(p.grad is None or torch.isfinite(p.grad).all() for p in d.parameters())
    d.zero_grad(set_to_none=True)
    # channels_last weights and activations give the same numbers.
    g2 = to_channels_last(Generator(32, STYLE, 3, channel_max=16))
    g2.load_state_dict(g.state_dict())
    assert g2.input.input.is_contiguous(memory_format=torch.channels_last)
    img_cl, _ = g2([z], noise=noise)
    torch.testing.assert_close(img_cl, img32, rtol=1e-5, atol=1e-5)


def test_invalid_configs_raise() -> None:
    with pytest.raises(ValueError, match="power of two"):
        Generator(48)
    with pytest.raises(ValueError, match="size must be"):
        Discriminator(2048)
    with pytest.raises(ValueError, match="ops"):
        Generator(32, 16, 1, ops="cuda")


@pytest.mark.parametrize("resample", ["up", "down", "none"])
def test_modulated_conv_formulations_agree(resample: str) -> None:
    from gan2shape.stylegan2.model import ModulatedConv2d

    torch.manual_seed(3)
    for demodulate in (True, False):
        conv = ModulatedConv2d(
            6,
            5,
            3,
            8,
            demodulate=demodulate,
            upsample=resample == "up",
            downsample=resample == "down",
        ).double()
        x = torch.randn(3, 6, 8, 8, dtype=torch.float64)
        style = torch.randn(3, 8, dtype=torch.float64)
        side = {"up": 16, "down": 4, "none": 8}[resample]
        outs = []
        for ops, fused in (("reference", True), ("fast", True), ("fast", False)):
            conv.ops, conv.fused = ops, fused
            outs.append(conv(x, style))
        assert outs[0].shape == (3, 5, side, side)
        for out in outs[1:]:
            torch.testing.assert_close(out, outs[0], rtol=1e-10, atol=1e-10)
        if demodulate and resample == "none":
            # Demodulation: each sample's effective weight has unit norm per output channel, so
            # the output is invariant to the scale of the style's modulation.
            conv.modulation.bias.data.zero_()
            a = conv(x, style)
            b = conv(x, 2.5 * style)
            torch.testing.assert_close(a, b)


def test_dynamo_traces_without_graph_breaks() -> None:
    import torch._dynamo as dynamo

    g = Generator(16, 8, 2, channel_max=8)
    d = Discriminator(16, channel_max=8)
    z = torch.randn(4, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        g_info = dynamo.explain(g)([z])
        d_info = dynamo.explain(d)(torch.randn(4, 3, 16, 16))
    assert g_info.graph_break_count == 0, g_info.break_reasons
    assert d_info.graph_break_count == 0, d_info.break_reasons
