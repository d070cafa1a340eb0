"""E pre-trained on the GAN (gan2shape.method.encoder): pairs, training, storage, and its use by step 2."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from gan2shape.config import PretrainEncoderConfig, load_params
from gan2shape.errors import ArtifactError
from gan2shape.method.context import load_nets, make_context
from gan2shape.method.encoder import GanPairs, load_encoder, pretrain_encoder, save_encoder
from gan2shape.method.instances import sample_instances, write_instances
from gan2shape.method.latents import make_offset_map
from gan2shape.method.steps import run_invert
from gan2shape.model.networks import InstanceEnsemble
from gan2shape.stylegan2.checkpoint import load_checkpoint

S = 32


@pytest.fixture(scope="module")
def gan(tiny_gan_path):
    ck = load_checkpoint(tiny_gan_path)
    return ck.g_ema.eval().requires_grad_(False), ck.d.eval().requires_grad_(False)


def test_pairs_have_the_offset_they_claim(gan):
    g, _ = gan
    pairs = GanPairs(g, S, (0.25, 0.5))
    batch = pairs.draw(6, torch.Generator().manual_seed(0))
    z = torch.randn(12, g.style_dim, generator=torch.Generator().manual_seed(0))
    w = g.get_latent(z)
    a = (batch["w2"] - batch["w1"]).norm(dim=1) / (w[6:] - w[:6]).norm(dim=1)
    torch.testing.assert_close(batch["w1"], w[:6])
    assert ((a > 0.25 - 1e-5) & (a < 0.5 + 1e-5)).all()
    # both images are the GAN's drawing of their w with the pair's shared noise
    torch.testing.assert_close(batch["image2"], pairs.synth(batch["w2"], batch["noise"]))
    assert not torch.allclose(batch["image1"], batch["image2"])


@pytest.mark.parametrize("offset", ["linear", "mapping"])
def test_pretraining_learns_the_offsets_and_round_trips(gan, tmp_path, offset):
    g, d = gan
    cfg = PretrainEncoderConfig(steps=150, batch_size=16, lr=1e-3, lam_image=0.0, held_out=64, seed=1)
    enc, report = pretrain_encoder(
        g, d, cfg, image_size=S, enc_nf=8, offset=offset, f1_d=1, feature_blocks=2, progress=False
    )
    # 1.0 = no better than predicting no offset; a fresh encoder's relative encodings are ~0
    assert report["rel_latent_error"] < 0.9, report
    assert len(report["loss_history"]) >= 100
    path = save_encoder(tmp_path / "enc.h5", enc, offset=offset, f1_d=1, checkpoint="tiny.pt", report=report)
    again = load_encoder(path, image_size=S, enc_nf=8, style_dim=g.style_dim, offset=offset, f1_d=1)
    x = torch.rand(3, 3, S, S) * 2 - 1
    torch.testing.assert_close(again(x), enc(x), atol=2e-2, rtol=2e-2)  # float16 storage
    copies = load_encoder(path, image_size=S, enc_nf=8, style_dim=g.style_dim, offset=offset, f1_d=1, n=2)
    assert isinstance(copies, InstanceEnsemble) and copies.n == 2
    torch.testing.assert_close(copies(torch.cat([x[:1], x[:1]])), again(x[:1]).repeat(2, 1))


def test_a_stored_encoder_for_other_settings_is_refused(gan, tmp_path):
    g, d = gan
    enc, report = pretrain_encoder(
        g,
        d,
        PretrainEncoderConfig(steps=1, batch_size=2, held_out=2),
        image_size=S,
        enc_nf=8,
        offset="linear",
        f1_d=1,
        progress=False,
    )
    path = save_encoder(tmp_path / "enc.h5", enc, offset="linear", f1_d=1, checkpoint="tiny.pt", report=report)
    kw = dict(image_size=S, enc_nf=8, style_dim=g.style_dim, offset="linear", f1_d=1)
    for key, value, words in (
        ("offset", "mapping", "method.offset"),
        ("enc_nf", 16, "method.enc_nf"),
        ("image_size", 64, "method.image_size"),
    ):
        with pytest.raises(ArtifactError, match=words):
            load_encoder(path, **{**kw, key: value})


def _ctx(tiny_gan_path: Path, *extra: str):
    profile = (
        "{stages: 1, prior_iters: 1, step1_iters: [1, 1], step2_iters: [0, 0], step3_iters: [1, 1], "
        "collect_batches: 1, batch_size: 2}"
    )
    params, text = load_params(
        "params.yaml",
        [
            f"method.checkpoint={tiny_gan_path}",
            f"method.image_size={S}",
            "method.f1_d=1",
            "method.perceptual_blocks=2",
            "method.enc_nf=8",
            f"method.profiles.t={profile}",
            "method.profile=t",
            *extra,
        ],
    )
    return make_context(params, text, device="cpu", progress=False, nf=16, enc_nf=8)


def test_step2_starts_every_instance_from_the_pretrained_encoder(gan, tiny_gan_path, tmp_path):
    """With no step-2 iterations, step 2b's E is exactly the pre-trained one, once per instance, and its
    projected samples are G(w + linear offset(E(pseudo) - E(target)))."""
    from gan2shape.artifacts import read_artifact, write_artifact

    g, d = gan
    enc, report = pretrain_encoder(
        g,
        d,
        PretrainEncoderConfig(steps=2, batch_size=2, held_out=2),
        image_size=S,
        enc_nf=8,
        offset="linear",
        f1_d=1,
        progress=False,
    )
    enc_path = save_encoder(tmp_path / "enc.h5", enc, offset="linear", f1_d=1, checkpoint="tiny.pt", report=report)
    ctx = _ctx(tiny_gan_path, "method.offset=linear", f"method.encoder_init={enc_path}")
    inst = sample_instances(ctx.generator, 2, seed=4, image_size=S)
    inst_path = write_instances(tmp_path / "inst.h5", inst)
    pseudo = torch.rand(2, 2, 3, S, S, generator=torch.Generator().manual_seed(5)) * 2 - 1
    pseudo_path = write_artifact(
        tmp_path / "pseudo.h5",
        "pseudo",
        {"image": pseudo.half(), "mask": torch.ones(2, 2, 1, S, S).half()},
        ids=inst.ids,
        attrs={"stage": 1},
    )
    out = run_invert(ctx, inst_path, pseudo_path, tmp_path / "projected.h5")
    stored = load_encoder(enc_path, image_size=S, enc_nf=8, style_dim=g.style_dim, offset="linear", f1_d=1)
    with read_artifact(out, "projected") as art:
        trained = load_nets(ctx, art, 2, ("encoder",))["encoder"]
        projected = art.tensor("image").float()
    for i in range(2):
        copy = trained.copy_state_dict(i)
        for key, value in stored.state_dict().items():  # both went through float16 storage
            torch.testing.assert_close(copy[key], value)
    omap = make_offset_map(g, "linear")
    with torch.no_grad():
        x = pseudo.half().float().reshape(4, 3, S, S)
        off = omap(stored(x) - stored(inst.image).repeat_interleave(2, 0))
        want = g.synthesis(
            inst.latent.repeat_interleave(2, 0) + off[:, None],
            noise=[z.repeat_interleave(2, 0) for z in inst.noise],
            randomize_noise=False,
        ).clamp(-1, 1)
    torch.testing.assert_close(projected.reshape(4, 3, S, S), want, atol=2e-3, rtol=0)
    # a file made for the other offset is refused, naming the key to fix
    from gan2shape.config import ConfigError

    wrong = _ctx(tiny_gan_path, "method.offset=mapping", f"method.encoder_init={enc_path}")
    with pytest.raises(ConfigError, match="method.encoder_init"):
        run_invert(wrong, inst_path, pseudo_path, tmp_path / "projected2.h5")


def test_auto_finds_the_encoder_beside_the_checkpoint_only_when_it_fits(gan, tmp_path, caplog):
    """encoder_init 'auto': <checkpoint stem>.encoder_<offset>.h5 when it exists and fits the run,
    otherwise a fresh E with a log line saying why; an explicit path is taken as given, null is none."""
    import logging

    from gan2shape.config import MethodConfig
    from gan2shape.method.encoder import resolve_encoder_init

    g, d = gan
    ckpt = tmp_path / "my_gan.pt"
    cfg = MethodConfig(checkpoint=str(ckpt), offset="linear", encoder_init="auto")
    beside = tmp_path / "my_gan.encoder_linear.h5"
    assert cfg.encoder_path == str(beside)
    assert MethodConfig(checkpoint=str(ckpt), offset="mapping").encoder_path.endswith("my_gan.encoder_mapping.h5")
    fits = {"image_size": S, "enc_nf": 8, "style_dim": g.style_dim}
    with caplog.at_level(logging.INFO, logger="gan2shape.method.encoder"):
        assert resolve_encoder_init(cfg, **fits) is None
    assert f"there is none at {beside}" in caplog.text and "pretrain-encoder" in caplog.text
    enc, report = pretrain_encoder(
        g,
        d,
        PretrainEncoderConfig(steps=1, batch_size=2, held_out=2),
        image_size=S,
        enc_nf=8,
        offset="linear",
        f1_d=1,
        progress=False,
    )
    save_encoder(beside, enc, offset="linear", f1_d=1, checkpoint=str(ckpt), report=report)
    assert resolve_encoder_init(cfg, **fits) == beside
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="gan2shape.method.encoder"):
        assert resolve_encoder_init(cfg, **{**fits, "enc_nf": 16}) is None  # made for another width: fresh E
    assert "enc_nf=8, this run uses 16 (method.enc_nf)" in caplog.text
    explicit = MethodConfig(checkpoint=str(ckpt), encoder_init=str(tmp_path / "elsewhere.h5"))
    assert resolve_encoder_init(explicit, **fits) == tmp_path / "elsewhere.h5"
    assert resolve_encoder_init(MethodConfig(checkpoint=str(ckpt), encoder_init=None), **fits) is None
