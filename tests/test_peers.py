"""The peer rows of Table 1 (gan2shape.peers): losses on analytic cases, the confidence net, the chain
train -> predict -> evaluate on tiny heads, bit-identical resume, bad checkpoints refused in one line.

Sizes: 32 px heads, networks with 16 base channels, a few steps (seconds on a CPU).
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from gan2shape.artifacts import read_artifact
from gan2shape.cli import main
from gan2shape.config import HeadsConfig, RenderConfig, SupervisedConfig, Unsup3dConfig, load_params
from gan2shape.data.heads import make_heads
from gan2shape.errors import CheckpointError, ConfigError
from gan2shape.evaluate import run_evaluate
from gan2shape.evaluate.metrics import side
from gan2shape.peers import run_predict, train_supervised, train_unsup3d
from gan2shape.peers.supervised import erode, normal_error, si_log_error
from gan2shape.peers.unsup3d import EPS, ConfidenceNet, flip_canonical, photometric_loss
from gan2shape.render import Camera, depth_to_normals

ROOT = Path(__file__).resolve().parents[1]
S = 32


def sup_config(**kw) -> SupervisedConfig:
    base = dict(image_size=S, nf=16, zdim=16, batch_size=4, steps=4, checkpoint_every=2, log_every=1, seed=1)
    return SupervisedConfig(**{**base, **kw})


def u3d_config(**kw) -> Unsup3dConfig:
    base = dict(
        image_size=S, nf=16, zdim=16, conf_zdim=16, batch_size=2, steps=2, checkpoint_every=1, log_every=1, seed=1
    )
    return Unsup3dConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def heads(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("heads")
    make_heads(HeadsConfig(image_size=S, n_train=8, n_test=3, batch_size=8), out, progress=False)
    return out


def _raw(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def _assert_same_state(a: dict, b: dict) -> None:
    assert a["step"] == b["step"]
    for name in a["networks"]:
        for key, value in a["networks"][name].items():
            assert torch.equal(value, b["networks"][name][key]), (name, key)
    for idx, st in a["optimizer"]["state"].items():
        for key, value in st.items():
            assert torch.equal(value, b["optimizer"]["state"][idx][key]), (idx, key)
    assert torch.equal(a["rng_state"], b["rng_state"])


# --------------------------------------------------------------------------------------------
# Losses and pieces, analytic
# --------------------------------------------------------------------------------------------


def test_si_log_error_is_zero_for_a_scaled_copy_and_equals_side() -> None:
    gen = torch.Generator().manual_seed(0)
    gt = 1.0 + 0.05 * torch.rand(3, S, S, generator=gen)
    mask = torch.zeros(3, S, S, dtype=torch.bool)
    mask[:, 8:24, 6:26] = True
    assert si_log_error((1.7 * gt).log(), gt.log(), mask).max() < 1e-5
    # a log difference of +c on half the mask and -c on the other half has standard deviation c
    pattern = torch.where(torch.arange(S)[None, None, :] % 2 == 0, 1.0, -1.0).expand(3, S, S)
    c = torch.tensor([0.01, 0.02, 0.05])[:, None, None]
    pred_log = gt.log() + c * pattern
    torch.testing.assert_close(si_log_error(pred_log, gt.log(), mask), c.flatten(), rtol=1e-4, atol=1e-6)
    # and equals the evaluation's SIDE (another implementation) of exp(pred_log)
    pred = 0.9 * gt * (1 + 0.1 * torch.rand(3, S, S, generator=gen))
    torch.testing.assert_close(
        si_log_error(pred.log(), gt.log(), mask), side(pred, gt, mask.float()).float(), rtol=1e-4, atol=1e-6
    )


def test_normal_error_analytic() -> None:
    a = 0.3
    n_gt = torch.zeros(2, 4, 4, 3)
    n_gt[..., 2] = 1.0
    n_pred = torch.zeros(2, 4, 4, 3)
    n_pred[..., 0], n_pred[..., 2] = math.sin(a), math.cos(a)
    mask = torch.ones(2, 4, 4, dtype=torch.bool)
    torch.testing.assert_close(normal_error(n_pred, n_gt, mask), torch.full((2,), 1 - math.cos(a)))
    assert normal_error(n_gt, n_gt, mask).abs().max() == 0
    # normals ignore a global scale of the depth (the surface is scaled about the camera)
    camera = Camera(S)
    depth = 1.0 + 0.05 * torch.rand(2, S, S, generator=torch.Generator().manual_seed(1))
    err = normal_error(
        depth_to_normals(1.3 * depth, camera), depth_to_normals(depth, camera), torch.ones(2, S, S, dtype=torch.bool)
    )
    assert err.abs().max() < 1e-6


def test_erode_removes_one_ring() -> None:
    mask = torch.zeros(1, 8, 8, dtype=torch.bool)
    mask[0, 2:7, 1:6] = True
    expected = torch.zeros(1, 8, 8, dtype=torch.bool)
    expected[0, 3:6, 2:5] = True
    assert torch.equal(erode(mask), expected)
    assert not erode(torch.ones(1, 4, 4, dtype=torch.bool))[0, 0, 0]  # the image border counts as outside


def test_photometric_loss_analytic() -> None:
    gen = torch.Generator().manual_seed(2)
    image, recon = torch.rand(2, 3, 6, 6, generator=gen), torch.rand(2, 3, 6, 6, generator=gen)
    mask = (torch.rand(2, 1, 6, 6, generator=gen) > 0.3).float()
    err = (recon - image).abs()
    l1 = (err * mask).sum() / mask.expand_as(err).sum()
    torch.testing.assert_close(photometric_loss(recon, image, mask), l1)
    # a constant sigma: sqrt(2) * L1 / sigma + log sigma, lowest at sigma = sqrt(2) * L1 (zero derivative)
    best = (2**0.5 * l1).detach().requires_grad_(True)
    loss = photometric_loss(recon, image, mask, best.expand(2, 1, 6, 6))
    torch.testing.assert_close(loss, 2**0.5 * l1 / (best + EPS) + (best + EPS).log())
    (grad,) = torch.autograd.grad(loss, best)
    assert abs(float(grad)) < 1e-5
    for other in (0.5 * best.detach(), 2 * best.detach()):
        assert photometric_loss(recon, image, mask, other.expand(2, 1, 6, 6)) > loss


def test_flip_of_a_symmetric_canonical_pair_is_the_identity() -> None:
    gen = torch.Generator().manual_seed(3)
    half_d, half_a = torch.rand(2, S, S // 2, generator=gen), torch.rand(2, 3, S, S // 2, generator=gen)
    depth = torch.cat([half_d, half_d.flip(2)], 2)
    albedo = torch.cat([half_a, half_a.flip(3)], 3)
    d2, a2 = flip_canonical(depth, albedo)
    assert torch.equal(d2[2:], depth) and torch.equal(a2[2:], albedo)
    assert torch.equal(d2[:2], depth) and torch.equal(a2[:2], albedo)
    # an asymmetric pair is not, and flipping its flip gives it back
    d, a = torch.rand(1, S, S, generator=gen), torch.rand(1, 3, S, S, generator=gen)
    d2, a2 = flip_canonical(d, a)
    assert not torch.equal(d2[1:], d)
    assert torch.equal(flip_canonical(d2[1:], a2[1:])[0][1:], d)


def test_confidence_net_matches_the_reference_layers() -> None:
    net = ConfidenceNet(64, nf=64, zdim=128)
    nf, z = 64, 128
    conv = 16 * (3 * nf + nf * 2 * nf + 2 * nf * 4 * nf + 4 * nf * 8 * nf + 8 * nf * z)
    deconv = 16 * (z * 8 * nf + 8 * nf * 4 * nf + 4 * nf * 2 * nf + 2 * nf * nf + nf * nf) + 25 * nf * 2
    groupnorm = 2 * (nf + 2 * nf + 4 * nf) + 2 * (4 * nf + 2 * nf + nf + nf)
    assert sum(p.numel() for p in net.parameters()) == conv + deconv + groupnorm
    small = ConfidenceNet(S, nf=16, zdim=16)
    sigma = small(torch.rand(2, 3, S, S) * 2 - 1)
    assert sigma.shape == (2, 2, S, S) and bool((sigma > 0).all())
    with pytest.raises(ValueError, match="expects"):
        small(torch.rand(2, 3, 64, 64))


def test_params_sections_equal_the_defaults() -> None:
    params, _ = load_params(ROOT / "params.yaml")
    assert params.supervised == SupervisedConfig() and params.unsup3d == Unsup3dConfig()
    with pytest.raises(ConfigError, match="supervised.nf"):
        load_params(ROOT / "params.yaml", ["supervised.nf=20"])
    with pytest.raises(ConfigError, match="unsup3d.lam_flip"):
        load_params(ROOT / "params.yaml", ["unsup3d.lam_flip=-1"])


# --------------------------------------------------------------------------------------------
# The chain, resume, bad checkpoints
# --------------------------------------------------------------------------------------------


def _finite_row(row: dict, n: int) -> None:
    assert row["n"] == n
    assert math.isfinite(row["side_x1e2_mean"]) and math.isfinite(row["mad_mean"])


def test_supervised_chain_and_bit_identical_resume(heads: Path, tmp_path: Path) -> None:
    cfg = sup_config()
    straight = train_supervised(cfg, heads / "train.h5", tmp_path / "straight", device="cpu", progress=False)
    assert straight["finished"] and straight["steps"] == 4 and math.isfinite(straight["losses"]["loss"])
    first = train_supervised(cfg, heads / "train.h5", tmp_path / "chunked", device="cpu", progress=False, max_steps=3)
    assert first["steps"] == 3 and not first["finished"]
    second = train_supervised(cfg, heads / "train.h5", tmp_path / "chunked", device="cpu", progress=False)
    assert second["resumed_from_step"] == 3 and second["steps"] == 4
    _assert_same_state(_raw(tmp_path / "chunked" / "checkpoint.pt"), _raw(tmp_path / "straight" / "checkpoint.pt"))
    lines = (tmp_path / "chunked" / "log.jsonl").read_text().splitlines()
    assert len(lines) == 4

    pred = tmp_path / "pred.h5"
    out = run_predict(tmp_path / "straight" / "checkpoint.pt", heads / "test.h5", pred)
    assert out == {"out": str(pred), "model": "supervised", "n": 3, "steps": 4, "finished": True}
    with read_artifact(pred, kind="prediction", require=("depth",)) as art:
        assert art.ids == ["test-000000", "test-000001", "test-000002"] and "valid" not in art.names
        assert bool((art.array("depth") > 0).all())
    metrics = run_evaluate(heads / "test.h5", pred, tmp_path / "eval", train_path=heads / "train.h5")
    _finite_row(metrics["rows"]["prediction"], 3)
    assert {"null_depth", "average_gt_depth", "ellipsoid_prior"} <= set(metrics["rows"])
    assert metrics["pred_model"] == "supervised"
    assert "| Supervised (GT depth) | 3 |" in (tmp_path / "eval" / "table.md").read_text()


def test_unsup3d_chain(heads: Path, tmp_path: Path) -> None:
    cfg = u3d_config()
    summary = train_unsup3d(cfg, RenderConfig(), heads / "train.h5", tmp_path / "run", device="cpu", progress=False)
    assert summary["finished"] and set(summary["losses"]) == {"l1", "l1_flip", "loss"}
    assert all(math.isfinite(v) for v in summary["losses"].values())
    pred = tmp_path / "pred.h5"
    run_predict(tmp_path / "run" / "checkpoint.pt", heads / "test.h5", pred, limit=2)
    with read_artifact(pred, kind="prediction") as art:
        assert art.n == 2 and art.shape("depth") == (2, S, S) and art.shape("view") == (2, 6)
        valid = art.array("valid")
        assert set(np.unique(valid)) <= {0, 1} and valid.sum() > 0
    metrics = run_evaluate(heads / "test.h5", pred, tmp_path / "eval", train_path=heads / "train.h5")
    _finite_row(metrics["rows"]["prediction"], 2)


def test_unsup3d_resume_is_bit_identical(heads: Path, tmp_path: Path) -> None:
    cfg = u3d_config(steps=3)
    train_unsup3d(cfg, RenderConfig(), heads / "train.h5", tmp_path / "straight", device="cpu", progress=False)
    train_unsup3d(
        cfg, RenderConfig(), heads / "train.h5", tmp_path / "chunked", device="cpu", progress=False, max_steps=2
    )
    again = train_unsup3d(cfg, RenderConfig(), heads / "train.h5", tmp_path / "chunked", device="cpu", progress=False)
    assert again["resumed_from_step"] == 2
    _assert_same_state(_raw(tmp_path / "chunked" / "checkpoint.pt"), _raw(tmp_path / "straight" / "checkpoint.pt"))


def test_time_budget_stops_with_a_checkpoint(heads: Path, tmp_path: Path) -> None:
    out = train_supervised(sup_config(), heads / "train.h5", tmp_path, device="cpu", progress=False, max_seconds=0)
    assert out["timed_out"] and out["steps"] == 0 and not out["finished"]
    assert _raw(tmp_path / "checkpoint.pt")["step"] == 0


def test_bad_checkpoints_are_refused(heads: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    train_supervised(sup_config(steps=1), heads / "train.h5", run, device="cpu", progress=False)
    ckpt = run / "checkpoint.pt"
    # another architecture in the same folder
    with pytest.raises(CheckpointError, match=r"different architecture \(nf: checkpoint 16 vs config 32\)"):
        train_supervised(sup_config(nf=32), heads / "train.h5", run, device="cpu", progress=False)
    # another kind
    with pytest.raises(CheckpointError, match="holds a 'supervised' model, expected 'unsup3d'"):
        train_unsup3d(u3d_config(), RenderConfig(), heads / "train.h5", run, device="cpu", progress=False)
    # truncated, foreign, missing
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "checkpoint.pt").write_bytes(ckpt.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="cannot be read as a peer checkpoint"):
        train_supervised(sup_config(), heads / "train.h5", bad, device="cpu", progress=False)
    foreign = tmp_path / "foreign.pt"
    torch.save({"g_ema": {}}, foreign)
    with pytest.raises(CheckpointError, match="is not a gan2shape peer checkpoint"):
        run_predict(foreign, heads / "test.h5", tmp_path / "p.h5")
    state = _raw(ckpt)
    del state["networks"]
    torch.save(state, foreign)
    with pytest.raises(CheckpointError, match=r"lacks \['networks'\]"):
        run_predict(foreign, heads / "test.h5", tmp_path / "p.h5")
    # the CLI: one line, exit 1, no traceback
    result = CliRunner().invoke(
        main,
        [
            "-q",
            "predict",
            "--params",
            str(ROOT / "params.yaml"),
            "--checkpoint",
            str(bad / "checkpoint.pt"),
            "--images",
            str(heads / "test.h5"),
            "--out",
            str(tmp_path / "p.h5"),
            "--device",
            "cpu",
        ],
    )
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: ") and "cannot be read as a peer checkpoint" in lines[0]
    assert "weights_only" not in result.output
    random_bytes = tmp_path / "random.pt"
    random_bytes.write_bytes(np.random.default_rng(1).integers(0, 256, 1 << 16, dtype=np.uint8).tobytes())
    with pytest.raises(CheckpointError, match="cannot be read as a peer checkpoint") as info:
        run_predict(random_bytes, heads / "test.h5", tmp_path / "p.h5")
    assert "weights_only" not in str(info.value) and "\n" not in str(info.value)
    assert not (tmp_path / "p.h5").exists()


def test_predict_refuses_heads_of_another_size(heads: Path, tmp_path: Path) -> None:
    train_supervised(sup_config(steps=1), heads / "train.h5", tmp_path / "run", device="cpu", progress=False)
    cfg64 = dataclasses.replace(sup_config(), image_size=64)
    from gan2shape.errors import ArtifactError

    with pytest.raises(ArtifactError, match="expected \\(N, 3, 64, 64\\)"):
        train_supervised(cfg64, heads / "train.h5", tmp_path / "run64", device="cpu", progress=False)


def test_peers_import_only_the_layers_below() -> None:
    """gan2shape.peers may use data, render, model, artifacts, errors, config, progress, atomic, device (and
    itself); never method, export, stylegan2 or evaluate (an AST pass over its files)."""
    import ast

    allowed = {"data", "render", "model", "artifacts", "errors", "config", "progress", "atomic", "device", "peers"}
    found = set()
    for path in (ROOT / "gan2shape" / "peers").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else ([node.module] if isinstance(node, ast.ImportFrom) and node.module else [])
            )
            found |= {n.split(".")[1] for n in names if n.startswith("gan2shape.")}
    assert found and found <= allowed, found - allowed
