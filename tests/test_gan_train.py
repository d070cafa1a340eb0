"""StyleGAN2 training loop: losses, R1, EMA, checkpoints, bit-exact resume, signals (tiny CPU models)."""

from __future__ import annotations

import dataclasses
import json
import math
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from gan2shape.artifacts import write_artifact
from gan2shape.config import GanConfig
from gan2shape.errors import ArtifactError, CheckpointError
from gan2shape.stylegan2.model import Discriminator
from gan2shape.stylegan2.train import (
    build_networks,
    d_logistic_loss,
    discriminate_pair,
    ema_beta,
    ema_update_,
    g_nonsaturating_loss,
    lazy_adam,
    r1_penalty,
    sample_grid,
    train_gan,
)

BATCH = 4
REPO = Path(__file__).resolve().parents[1]


def tiny_config(steps: int = 4, **overrides) -> GanConfig:
    """A 32px GAN small enough for CPU tests; total_kimg = ``steps`` iterations."""
    base = dict(
        size=32,
        style_dim=32,
        n_mlp=2,
        channel_multiplier=1,
        channel_max=32,
        seed=3,
        batch_size=BATCH,
        total_kimg=steps * BATCH / 1000,
        lr=0.002,
        r1_gamma=1.0,
        r1_every=2,
        mixing_prob=0.5,
        ema_half_life_kimg=0.01,
        amp="none",
        flip=True,
        checkpoint_every_kimg=2 * BATCH / 1000,
        sample_every_kimg=2 * BATCH / 1000,
    )
    base.update(overrides)
    return GanConfig(**base)


@pytest.fixture(scope="module")
def heads_h5(tmp_path_factory) -> Path:
    """64 images of random smooth coloured blobs, 32x32, as a 'heads' artifact."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:32, 0:32].astype(np.float32) / 31.0
    images = np.empty((64, 3, 32, 32), dtype=np.uint8)
    for i in range(64):
        cx, cy = rng.uniform(0.25, 0.75, 2)
        r = rng.uniform(0.1, 0.3)
        blob = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * r * r))
        colour = rng.uniform(0.2, 1.0, 3)
        images[i] = np.clip(255 * (0.1 + 0.8 * colour[:, None, None] * blob), 0, 255).astype(np.uint8)
    path = tmp_path_factory.mktemp("data") / "heads.h5"
    write_artifact(path, "heads", {"image": images}, ids=[f"h{i:03d}" for i in range(64)])
    return path


def raw(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def train_state(ckpt: dict) -> dict:
    return ckpt["gan2shape"]["extra"]["gan2shape_train"]


def assert_states_equal(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def assert_optim_equal(a: dict, b: dict) -> None:
    assert a["state"].keys() == b["state"].keys()
    for idx in a["state"]:
        for name, value in a["state"][idx].items():
            assert torch.equal(value, b["state"][idx][name]), (idx, name)


# --------------------------------------------------------------------------------------------
# Pure pieces
# --------------------------------------------------------------------------------------------


def test_losses_analytic():
    zero = torch.zeros(4, 1)
    assert torch.isclose(d_logistic_loss(zero, zero), torch.tensor(2 * math.log(2.0)))
    assert torch.isclose(g_nonsaturating_loss(zero), torch.tensor(math.log(2.0)))
    # A perfect discriminator has (almost) no loss, the generator a large one.
    assert d_logistic_loss(torch.full((4, 1), 20.0), torch.full((4, 1), -20.0)) < 1e-8
    assert torch.isclose(g_nonsaturating_loss(torch.full((4, 1), -20.0)), torch.tensor(20.0), rtol=1e-6)


def test_lazy_adam_ratio_and_ema_half_life():
    p = [torch.nn.Parameter(torch.zeros(2))]
    group = lazy_adam(p, 0.002, 16).param_groups[0]
    assert group["lr"] == pytest.approx(0.002 * 16 / 17)
    assert group["betas"] == pytest.approx((0.0, 0.99 ** (16 / 17)))
    assert lazy_adam(p, 0.002, 0).param_groups[0]["betas"] == pytest.approx((0.0, 0.99))
    # After half_life_kimg * 1000 images a weight's contribution has halved.
    beta = ema_beta(64, 10.0)
    assert beta ** (10_000 / 64) == pytest.approx(0.5)


def test_ema_update_is_convex_combination():
    cfg = tiny_config()
    g, _, g_ema = build_networks(cfg)
    with torch.no_grad():
        for p in g.parameters():
            p.add_(torch.randn_like(p))
    old = {k: v.clone() for k, v in g_ema.state_dict().items()}
    ema_update_(g_ema, g, 0.75)
    new, cur = g_ema.state_dict(), g.state_dict()
    for name, _ in g.named_parameters():
        assert torch.allclose(new[name], 0.75 * old[name] + 0.25 * cur[name], atol=1e-6), name


def test_sample_grid_layout():
    imgs = torch.stack([torch.full((3, 2, 2), v) for v in (-1.0, 0.0, 1.0)])
    grid = sample_grid(imgs, cols=2)
    assert grid.shape == (4, 4, 3) and grid.dtype == np.uint8
    assert (grid[:2, :2] == 0).all() and (grid[:2, 2:] == 128).all()
    assert (grid[2:, :2] == 255).all() and (grid[2:, 2:] == 0).all()  # empty cell is black


# --------------------------------------------------------------------------------------------
# R1 against finite differences (float64, tiny D, fast ops incl. double backward)
# --------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_r1_matches_finite_differences():
    torch.manual_seed(0)
    d = Discriminator(8, channel_multiplier=1, channel_max=8).double()
    # The minibatch-stddev statistics run in float32 by design, which would drown float64 finite
    # differences in rounding; groups of one make that feature constant (0) and keep all else.
    d.stddev_group = 1
    x = torch.rand(4, 3, 8, 8, dtype=torch.float64) * 2 - 1
    eps = 1e-6

    def total(inp: torch.Tensor) -> torch.Tensor:
        return d(inp).sum()

    # Full input gradient by central differences.
    flat = x.reshape(-1)
    grad = torch.empty_like(flat)
    with torch.no_grad():
        for i in range(flat.numel()):
            e = torch.zeros_like(flat)
            e[i] = eps
            grad[i] = (total((flat + e).view_as(x)) - total((flat - e).view_as(x))) / (2 * eps)
    r1_ref = grad.view_as(x).square().sum(dim=(1, 2, 3)).mean()
    r1 = r1_penalty(d, x)
    assert r1.dtype == torch.float64
    torch.testing.assert_close(r1, r1_ref, rtol=1e-6, atol=1e-9)

    # d R1 / d theta (double backward through the fast ops) along a random parameter direction.
    params = list(d.parameters())
    grads = torch.autograd.grad(r1, params, allow_unused=True)  # output biases do not enter R1
    assert sum(g is not None for g in grads) > len(params) // 2
    direction = [torch.randn_like(p) for p in params]
    analytic = sum((g * u).sum() for g, u in zip(grads, direction) if g is not None)

    def r1_at(step: float) -> torch.Tensor:
        with torch.no_grad():
            for p, u in zip(params, direction):
                p.add_(step * u)
        value = r1_penalty(d, x).detach()
        with torch.no_grad():
            for p, u in zip(params, direction):
                p.sub_(step * u)
        return value

    numeric = (r1_at(1e-5) - r1_at(-1e-5)) / 2e-5
    torch.testing.assert_close(analytic, numeric, rtol=1e-5, atol=1e-8)


# --------------------------------------------------------------------------------------------
# The training run: outputs, EMA, bit-exact resume, atomic checkpoints, signals
# --------------------------------------------------------------------------------------------


def test_training_writes_checkpoint_samples_and_log(heads_h5, tmp_path):
    from PIL import Image

    from gan2shape.stylegan2.checkpoint import load_checkpoint

    cfg = tiny_config(steps=4)
    summary = train_gan(cfg, heads_h5, tmp_path, device="cpu", progress=False, log_every=1)
    assert summary["finished"] and summary["steps"] == 4 and summary["images_seen"] == 4 * BATCH
    assert summary["resumed_from_kimg"] is None
    lines = [json.loads(x) for x in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines] == [1, 2, 3, 4]
    for x in lines:
        assert math.isfinite(x["d_loss"]) and math.isfinite(x["g_loss"]) and x["img_per_s"] > 0
    assert ["r1" in x for x in lines] == [True, False, True, False]  # lazy R1 on steps 0, 2
    assert all(math.isfinite(x["r1"]) for x in lines if "r1" in x)
    grid = np.asarray(Image.open(tmp_path / "samples_000000.png"))
    assert grid.shape == (8 * 32, 8 * 32, 3) and grid.std() > 0
    assert not list(tmp_path.glob("*.tmp"))
    ckpt = raw(tmp_path / "checkpoint.pt")
    assert train_state(ckpt)["images_seen"] == 4 * BATCH and train_state(ckpt)["step"] == 4
    final = load_checkpoint(tmp_path / "final.pt", device="cpu")
    with torch.no_grad():
        img, _ = final.g_ema([torch.randn(2, cfg.style_dim)])
    assert img.shape == (2, 3, 32, 32) and torch.isfinite(img).all()
    assert tuple(final.latent_avg.reshape(-1).shape) == (cfg.style_dim,)


def test_ema_after_one_step_is_analytic(heads_h5, tmp_path):
    cfg = tiny_config(steps=1, ema_half_life_kimg=0.01)
    g0, _, _ = build_networks(cfg)  # the seeded initial weights, as train_gan builds them
    train_gan(cfg, heads_h5, tmp_path, device="cpu", progress=False)
    ckpt = raw(tmp_path / "checkpoint.pt")
    beta = 0.5 ** (BATCH / 10.0)
    start = g0.state_dict()
    moved = 0
    for name, _ in g0.named_parameters():
        g1, ema = ckpt["g"][name], ckpt["g_ema"][name]
        torch.testing.assert_close(ema, beta * start[name] + (1 - beta) * g1, rtol=1e-5, atol=1e-6)
        moved += int(not torch.equal(g1, start[name]))
    assert moved > 10  # the step changed the generator, so the check above is not vacuous


@pytest.mark.slow
def test_resume_is_bit_identical_to_uninterrupted_run(heads_h5, tmp_path):
    cfg = tiny_config(steps=4)
    chunked, straight = tmp_path / "chunked", tmp_path / "straight"
    first = train_gan(cfg, heads_h5, chunked, device="cpu", progress=False, max_kimg=2 * BATCH / 1000)
    assert first["steps"] == 2 and not first["finished"] and first["final"] is None
    assert train_state(raw(chunked / "checkpoint.pt"))["images_seen"] == 2 * BATCH
    # A write killed half-way leaves a stray temporary file: it must be ignored and removed.
    good = (chunked / "checkpoint.pt").read_bytes()
    strays = [chunked / ".checkpoint.pt.999999.tmp", chunked / "checkpoint.pt.tmp"]
    for stray in strays:
        stray.write_bytes(good[: len(good) // 2])
    second = train_gan(cfg, heads_h5, chunked, device="cpu", progress=False)
    assert second["resumed_from_kimg"] == pytest.approx(2 * BATCH / 1000)
    assert second["steps"] == 4 and second["finished"]
    assert not any(stray.exists() for stray in strays)
    train_gan(cfg, heads_h5, straight, device="cpu", progress=False)

    a, b = raw(chunked / "checkpoint.pt"), raw(straight / "checkpoint.pt")
    for net in ("g", "g_ema", "d"):
        assert_states_equal(a[net], b[net])
    for opt in ("g_optim", "d_optim"):
        assert_optim_equal(a[opt], b[opt])
    assert train_state(a)["step"] == train_state(b)["step"] == 4
    assert torch.equal(train_state(a)["rng_state"], train_state(b)["rng_state"])


def test_resume_refuses_other_architecture(heads_h5, tmp_path):
    train_gan(tiny_config(steps=1), heads_h5, tmp_path, device="cpu", progress=False)
    with pytest.raises(CheckpointError, match="channel_max"):
        train_gan(tiny_config(steps=2, channel_max=16), heads_h5, tmp_path, device="cpu", progress=False)


def test_warm_start_continues_from_a_finished_generator(heads_h5, tmp_path):
    """--init: networks start as the file's g_ema / d, the image count goes on from the file's,
    fresh optimisers; once checkpoint.pt exists a rerun resumes from it instead."""
    from gan2shape.stylegan2.checkpoint import load_checkpoint

    first = tmp_path / "first"
    train_gan(tiny_config(steps=2), heads_h5, first, device="cpu", progress=False)
    final = load_checkpoint(first / "final.pt", device="cpu")
    cfg = tiny_config(steps=5)
    from gan2shape.stylegan2.train import GanTrainer, load_training_images

    trainer = GanTrainer(cfg, load_training_images(heads_h5, cfg.size, "cpu"), "cpu")
    assert trainer.warm_start(first / "final.pt") == 2 * BATCH
    assert_states_equal(trainer.g.state_dict(), final.g_ema.state_dict())
    assert_states_equal(trainer.g_ema.state_dict(), final.g_ema.state_dict())
    assert_states_equal(trainer.d.state_dict(), final.d.state_dict())
    assert not trainer.g_optim.state and trainer.step == 0

    second = tmp_path / "second"
    out = train_gan(
        cfg, heads_h5, second, device="cpu", progress=False, init=first / "final.pt", max_kimg=2 * BATCH / 1000
    )
    assert out["images_seen"] == 4 * BATCH and out["steps"] == 2 and not out["finished"]
    assert out["warm_start_from"] == str(first / "final.pt") and out["resumed_from_kimg"] is None
    state = train_state(raw(second / "checkpoint.pt"))
    assert state["images_seen"] == 4 * BATCH
    moved = raw(second / "checkpoint.pt")["g"]
    assert any(not torch.equal(moved[k], v) for k, v in final.g_ema.state_dict().items())  # it trained
    # A rerun resumes from checkpoint.pt (the warm start is ignored) and finishes at total_kimg.
    again = train_gan(cfg, heads_h5, second, device="cpu", progress=False, init=first / "final.pt")
    assert again["resumed_from_kimg"] == pytest.approx(4 * BATCH / 1000) and again["warm_start_from"] is None
    assert again["images_seen"] == 5 * BATCH and again["finished"]


def test_warm_start_refuses_other_architecture(heads_h5, tmp_path):
    train_gan(tiny_config(steps=1), heads_h5, tmp_path / "a", device="cpu", progress=False)
    with pytest.raises(CheckpointError, match="warm-start.*channel_max"):
        train_gan(
            tiny_config(steps=2, channel_max=16),
            heads_h5,
            tmp_path / "b",
            device="cpu",
            progress=False,
            init=tmp_path / "a" / "final.pt",
        )


def test_data_of_wrong_size_is_rejected(heads_h5, tmp_path):
    with pytest.raises(ArtifactError, match="gan.size"):
        train_gan(tiny_config(size=64), heads_h5, tmp_path, device="cpu", progress=False)


def test_sigterm_writes_checkpoint_and_exits(heads_h5, tmp_path):
    cfg = tiny_config(steps=100_000, checkpoint_every_kimg=1000.0, sample_every_kimg=1000.0)
    script = textwrap.dedent(
        f"""
        from gan2shape.config import GanConfig
        from gan2shape.stylegan2.train import train_gan
        cfg = GanConfig(**{dataclasses.asdict(cfg)!r})
        train_gan(cfg, {str(heads_h5)!r}, {str(tmp_path)!r}, device="cpu", progress=False, log_every=1)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=REPO, stderr=subprocess.PIPE, text=True)
    log = tmp_path / "log.jsonl"
    deadline = time.monotonic() + 60
    while not (log.exists() and log.read_text().count("\n") >= 2):
        assert proc.poll() is None, proc.stderr.read()
        assert time.monotonic() < deadline, "training did not start within 60 s"
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 128 + signal.SIGTERM, proc.stderr.read()
    state = train_state(raw(tmp_path / "checkpoint.pt"))
    assert state["step"] >= 2 and state["images_seen"] == state["step"] * BATCH
    assert not (tmp_path / "final.pt").exists()


def test_discriminate_pair_equals_two_calls():
    torch.manual_seed(1)
    d = Discriminator(32, channel_multiplier=1, channel_max=16)
    a, b = torch.randn(8, 3, 32, 32), torch.randn(8, 3, 32, 32)
    pa, pb = discriminate_pair(d, a, b, d.stddev_group)
    torch.testing.assert_close(pa, d(a), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(pb, d(b), rtol=1e-5, atol=1e-6)
    # A plain concatenation would mix the two batches' minibatch statistics: not equal.
    assert not torch.allclose(d(torch.cat([a, b]))[:8], d(a), rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_kill_9_then_rerun_continues_from_the_last_checkpoint(heads_h5, tmp_path):
    """A SIGKILL gives no chance to save: the rerun must continue from the last periodic checkpoint."""
    every_kimg = 2 * BATCH / 1000  # a checkpoint every 2 steps
    cfg = tiny_config(steps=100_000, checkpoint_every_kimg=every_kimg, sample_every_kimg=1000.0)
    script = textwrap.dedent(
        f"""
        import sys
        from gan2shape.config import GanConfig
        from gan2shape.stylegan2.train import train_gan
        cfg = GanConfig(**{dataclasses.asdict(cfg)!r})
        max_kimg = float(sys.argv[1]) if len(sys.argv) > 1 else None
        summary = train_gan(cfg, {str(heads_h5)!r}, {str(tmp_path)!r}, device="cpu", progress=False,
                            log_every=1, max_kimg=max_kimg)
        print("RESUMED_FROM", summary["resumed_from_kimg"], "KIMG", summary["kimg"])
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=REPO, stderr=subprocess.PIPE, text=True)
    ckpt = tmp_path / "checkpoint.pt"
    deadline = time.monotonic() + 90
    while not (ckpt.exists() and train_state(raw(ckpt))["step"] >= 4):
        assert proc.poll() is None, proc.stderr.read()
        assert time.monotonic() < deadline, "no periodic checkpoint within 90 s"
        time.sleep(0.1)
    proc.kill()
    proc.wait(timeout=30)
    saved = train_state(raw(ckpt))
    assert saved["step"] >= 4 and saved["images_seen"] == saved["step"] * BATCH
    rerun = subprocess.run(
        [sys.executable, "-c", script, str(2 * BATCH / 1000)], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert rerun.returncode == 0, rerun.stderr
    resumed_from = float(rerun.stdout.split("RESUMED_FROM")[1].split()[0])
    assert resumed_from >= saved["images_seen"] / 1000 > 0
    after = train_state(raw(ckpt))
    assert after["step"] == round(resumed_from * 1000 / BATCH) + 2
