"""Checkpoint save/load in the rosinality layout: round trips, official files, errors."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest
import torch

from gan2shape.stylegan2.checkpoint import (
    CheckpointError,
    infer_config,
    load_checkpoint,
    save_checkpoint,
)
from gan2shape.stylegan2.model import Discriminator, Generator

STYLE = 32


def _nets(size: int = 32, cm: int = 2, channel_max: int = 16) -> tuple[Generator, Discriminator]:
    torch.manual_seed(0)
    g = Generator(size, STYLE, 2, channel_multiplier=cm, channel_max=channel_max)
    d = Discriminator(size, channel_multiplier=cm, channel_max=channel_max)
    with torch.no_grad():  # non-zero noise strengths so that the noise buffers matter
        for m in g.modules():
            if hasattr(m, "weight") and m.weight.shape == (1,):
                m.weight.fill_(0.3)
    return g, d


def _outputs(g: Generator, d: Discriminator) -> tuple[torch.Tensor, torch.Tensor]:
    z = torch.randn(4, STYLE, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        img, _ = g([z], randomize_noise=False)
        return img, d(img)


def test_round_trip_is_bit_identical(tmp_path: Path) -> None:
    g, d = _nets()
    g_train = Generator(32, STYLE, 2, channel_max=16)
    opt = torch.optim.Adam(g_train.parameters(), lr=1e-3)
    g_train([torch.randn(2, STYLE)])[0].mean().backward()
    opt.step()
    avg = g.mean_latent(64)
    path = save_checkpoint(
        tmp_path / "sub" / "ck.pt",
        g,
        d,
        g=g_train,
        g_optim=opt,
        latent_avg=avg,
        extra={"step": 7, "note": "test", "ema": torch.ones(2)},
    )
    assert path.is_file() and [p.name for p in path.parent.iterdir()] == ["ck.pt"]
    raw = torch.load(path, weights_only=True)
    assert set(raw) == {"g_ema", "d", "g", "g_optim", "latent_avg", "gan2shape"}
    assert raw["latent_avg"].shape == (STYLE,)

    ck = load_checkpoint(path)
    assert not ck.inferred and ck.config == g.config
    assert ck.extra["step"] == 7 and torch.equal(ck.extra["ema"], torch.ones(2))
    assert torch.equal(ck.latent_avg, avg)
    img, logits = _outputs(g, d)
    img2, logits2 = _outputs(ck.g_ema, ck.d)
    assert torch.equal(img, img2) and torch.equal(logits, logits2)
    for a, b in zip(g_train.state_dict().values(), ck.g.state_dict().values()):
        assert torch.equal(a, b)
    opt2 = torch.optim.Adam(ck.g.parameters(), lr=1e-3)
    opt2.load_state_dict(ck.g_optim)
    assert ck.d_optim is None
    # Loaded parameters are trainable float32 Parameters.
    params = list(ck.g_ema.parameters())
    assert all(p.dtype == torch.float32 and p.requires_grad for p in params)
    assert len(params) == len(list(g.parameters()))


def test_half_round_trip_equals_half_rounded_model(tmp_path: Path) -> None:
    g, d = _nets()
    path = save_checkpoint(tmp_path / "half.pt", g, d, half=True)
    assert all(v.dtype == torch.float16 for v in torch.load(path)["g_ema"].values())
    ck = load_checkpoint(path)
    assert all(p.dtype == torch.float32 for p in ck.g_ema.state_dict().values())
    with torch.no_grad():
        for t in [*g.parameters(), *g.buffers(), *d.parameters(), *d.buffers()]:
            t.copy_(t.half().float())
    img, logits = _outputs(g, d)
    img2, logits2 = _outputs(ck.g_ema, ck.d)
    assert torch.equal(img, img2) and torch.equal(logits, logits2)


def test_official_file_without_our_entry_is_inferred(tmp_path: Path) -> None:
    # An official-style training checkpoint: state dicts plus the argparse Namespace of train.py.
    g, d = _nets(size=32, channel_max=16)
    path = tmp_path / "official.pt"
    torch.save(
        {"g_ema": g.state_dict(), "d": d.state_dict(), "args": argparse.Namespace(size=32)},
        path,
    )
    ck = load_checkpoint(path)
    assert ck.inferred and ck.extra == {}
    cfg = ck.config
    assert (cfg.size, cfg.style_dim, cfg.n_mlp, cfg.channel_max) == (32, STYLE, 2, 16)
    img, logits = _outputs(g, d)
    img2, logits2 = _outputs(ck.g_ema, ck.d)
    assert torch.equal(img, img2) and torch.equal(logits, logits2)
    assert ck.g is None and ck.latent_avg is None


def test_infer_config_reads_channel_multiplier_and_cap() -> None:
    for size, cm, cmax in [(128, 1, 512), (128, 2, 512), (512, 2, 512), (64, 2, 128), (32, 2, 512)]:
        with torch.device("meta"):
            g = Generator(size, 64, 3, channel_multiplier=cm, channel_max=cmax)
        cfg = infer_config(g.state_dict())
        assert (cfg.size, cfg.style_dim, cfg.n_mlp, cfg.channel_max) == (size, 64, 3, cmax)
        assert cfg.channels == g.channels  # the multiplier is ambiguous only where it has no effect
        if size >= 64 and 256 * cm <= cmax:
            assert cfg.channel_multiplier == cm


def test_truncated_file_raises(tmp_path: Path) -> None:
    g, d = _nets()
    path = save_checkpoint(tmp_path / "ck.pt", g, d)
    data = path.read_bytes()
    bad = tmp_path / "truncated.pt"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated.pt cannot be read.*re-download or re-create it"):
        load_checkpoint(bad)
    text = tmp_path / "notes.pt"
    text.write_text("not a checkpoint")
    with pytest.raises(CheckpointError, match="notes.pt"):
        load_checkpoint(text)


@pytest.mark.parametrize("head", [b"", b"\x80\x02"], ids=["random", "pickle-like"])
def test_random_bytes_say_what_to_do_without_pytorchs_pickle_advice(tmp_path: Path, head: bytes) -> None:
    """A file of random bytes (also one that starts like a legacy pickle, which torch.load's
    weights_only unpickler rejects with advice about trusting the file) is named with the fix."""
    bad = tmp_path / "random.pt"
    bad.write_bytes(head + np.random.default_rng(0).integers(0, 256, 1 << 16, dtype=np.uint8).tobytes())
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(bad)
    message = str(info.value)
    assert "random.pt cannot be read" in message and "re-download or re-create it" in message
    assert "weights_only" not in message and "\n" not in message


def test_missing_file_raises(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="nope.pt does not exist"):
        load_checkpoint(tmp_path / "nope.pt")


def test_shape_mismatch_names_first_key(tmp_path: Path) -> None:
    g, d = _nets()
    sd = g.state_dict()
    sd["convs.1.conv.weight"] = torch.zeros(1, 16, 8, 3, 3)  # first wrong key
    sd["to_rgbs.2.bias"] = torch.zeros(1, 4, 1, 1)  # a later wrong key
    path = tmp_path / "wrong.pt"
    torch.save({"g_ema": sd, "d": d.state_dict()}, path)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path)
    msg = str(err.value)
    assert "wrong.pt" in msg and "'convs.1.conv.weight'" in msg and "to_rgbs.2" not in msg
    assert "(1, 16, 8, 3, 3)" in msg and "(1, 16, 16, 3, 3)" in msg


def test_requested_architecture_mismatch_and_missing_entries(tmp_path: Path) -> None:
    g, d = _nets()
    path = save_checkpoint(tmp_path / "ck.pt", g, d)
    with pytest.raises(CheckpointError, match="style_dim=64.*'style.1.weight' has shape"):
        load_checkpoint(path, style_dim=64)
    with pytest.raises(CheckpointError, match="'convs.6.conv.weight'.*missing"):
        load_checkpoint(path, size=64)
    # A discriminator that does not match is reported under its entry name.
    d_sd = d.state_dict()
    del d_sd["final_linear.1.bias"]
    torch.save({"g_ema": g.state_dict(), "d": d_sd}, tmp_path / "d.pt")
    with pytest.raises(CheckpointError, match="entry 'd'.*'final_linear.1.bias'.*missing"):
        load_checkpoint(tmp_path / "d.pt")
    torch.save({"d": d.state_dict()}, tmp_path / "no_g.pt")
    with pytest.raises(CheckpointError, match="no 'g_ema'"):
        load_checkpoint(tmp_path / "no_g.pt")
    torch.save({"g_ema": g.state_dict()}, tmp_path / "g_only.pt")
    assert load_checkpoint(tmp_path / "g_only.pt").d is None


def test_untrusted_pickled_objects_are_refused(tmp_path: Path) -> None:
    g, d = _nets()
    path = tmp_path / "obj.pt"
    torch.save({"g_ema": g.state_dict(), "d": d.state_dict(), "cfg": Path("x")}, path)
    with pytest.raises(CheckpointError, match="allow_pickle=True"):
        load_checkpoint(path)
    assert load_checkpoint(path, allow_pickle=True).g_ema.size == 32


def test_save_validates_inputs_and_leaves_no_temp_file(tmp_path: Path) -> None:
    g, d = _nets()
    with pytest.raises(ValueError, match="extra"):
        save_checkpoint(tmp_path / "x.pt", g, d, extra={"p": Path("a")})
    with pytest.raises(ValueError, match="does not match g_ema"):
        save_checkpoint(tmp_path / "x.pt", g, Discriminator(64, channel_max=16))
    with pytest.raises(ValueError, match="latent_avg"):
        save_checkpoint(tmp_path / "x.pt", g, d, latent_avg=torch.zeros(3))
    assert list(tmp_path.iterdir()) == []
