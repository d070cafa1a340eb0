"""GAN-refined rotation/relighting media (gan2shape.method.gan_refine) on a tiny random GAN (32 px).

Checks: refining an instance's own image gives back its GAN image (relative_enc: offset exactly 0);
the refined identity-view frame and the refined first relighting frame equal the GAN output of the
same render inverted directly through the library (load_nets, latent_offset, G.synthesis), also in
the written grid PNG; batching over instances does not change an instance's frames; joint-mode
encoders load; the files and the CLI (--projected/--instances) work; another shard, other method
params (f1_d) and a shape of another stage are refused.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from PIL import Image

from gan2shape.artifacts import ArtifactError, read_artifact, write_artifact
from gan2shape.config import load_params
from gan2shape.export import ExportOptions
from gan2shape.imaging import to_uint8
from gan2shape.method.context import load_nets, make_context
from gan2shape.method.gan_refine import (
    GAN_OUTPUT_FILES,
    export_gan_refined,
    load_gan_refiner,
    render_relights,
    render_rotations,
    rotation_views,
)
from gan2shape.method.instances import read_instances, sample_instances, write_instances
from gan2shape.method.latents import latent_offset, make_offset_map
from gan2shape.method.reconstruct import run_reconstruct, stage_paths
from gan2shape.model.decode import decode_light
from gan2shape.model.networks import InversionEncoder
from gan2shape.render import depth_to_normals, light_direction, render_view, shade

S = 32
N = 2
PROFILE = (
    "{stages: 1, prior_iters: 1, step1_iters: [1, 1], step2_iters: [2, 2], step3_iters: [1, 1], "
    "collect_batches: 1, batch_size: 2}"
)
OPTIONS = ExportOptions(n_frames=4, n_pitch=3, n_yaw=3, strip_frames=2)


def _overrides(gan_path: Path) -> list[str]:
    return [
        f"method.checkpoint={gan_path}",
        f"method.image_size={S}",
        "method.f1_d=1",
        "method.perceptual_blocks=2",
        f"method.profiles.tiny={PROFILE}",
        "method.profile=tiny",
    ]


@pytest.fixture(scope="module")
def run(tmp_path_factory, tiny_gan_path):
    root = tmp_path_factory.mktemp("gan_refine")
    params, text = load_params("params.yaml", _overrides(tiny_gan_path))
    ctx = make_context(params, text, device="cpu", progress=False, nf=16, enc_nf=16)
    write_instances(root / "instances.h5", sample_instances(ctx.generator, N, seed=3, image_size=S))
    run_reconstruct(ctx, root / "instances.h5", root / "shard")
    p = stage_paths(root / "shard", 1)
    return {
        "ctx": ctx,
        "root": root,
        "instances": root / "instances.h5",
        "shape": p["shape"],
        "projected": p["projected"],
        "gan": tiny_gan_path,
    }


def _refiner(run, **kw):
    ctx = run["ctx"]
    return load_gan_refiner(
        run["projected"],
        run["instances"],
        ctx.generator,
        f1_d=ctx.config.f1_d,
        relative_enc=ctx.config.relative_enc,
        offset=ctx.config.offset,
        **kw,
    )


def _shape(run) -> dict[str, torch.Tensor]:
    with read_artifact(run["shape"], "shape") as art:
        return {k: art.tensor(k) for k in ("canon_depth", "canon_albedo", "view", "light")}


def _direct(run, encoder, renders: torch.Tensor) -> torch.Tensor:
    """The method's inversion of one render per instance, written out with library functions:
    G(w_target + latent_offset(E(render) - E(target)))."""
    ctx, g = run["ctx"], run["ctx"].generator
    inst = read_instances(run["instances"], S)
    with torch.no_grad():
        omap = make_offset_map(g, ctx.config.offset, ctx.config.f1_d)
        offset = latent_offset(encoder(renders), encoder(inst.image), omap, True)
        return g.synthesis(inst.latent + offset[:, None, :], noise=inst.noise, randomize_noise=False).clamp(-1, 1)


def _stored_encoder(run):
    with read_artifact(run["projected"], "projected") as art:
        return load_nets(run["ctx"], art, N, ("encoder",))["encoder"]


def test_refining_the_target_gives_back_the_instance_image(run):
    refiner = _refiner(run)
    inst = read_instances(run["instances"], S)
    out = refiner.refine(inst.image[:, None].expand(N, 3, 3, S, S))  # three identical frames
    assert out.shape == (N, 3, 3, S, S)
    with torch.no_grad():
        gan = run["ctx"].generator.synthesis(inst.latent, noise=inst.noise, randomize_noise=False).clamp(-1, 1)
    for k in range(3):
        torch.testing.assert_close(out[:, k], gan, rtol=0, atol=1e-5)
    # ... and the instance image stored in instances.h5 (the GAN is 32 px = the method's size)
    torch.testing.assert_close(out[:, 0], inst.image, rtol=0, atol=1e-5)


def test_identity_view_and_first_light_match_the_direct_inversion(run):
    ctx, data, refiner = run["ctx"], _shape(run), _refiner(run)
    enc = _stored_encoder(run)
    cam = ctx.camera
    ambient, diffuse, light_dir = decode_light(data["light"])
    normals = depth_to_normals(data["canon_depth"], cam)
    texture, _ = shade(data["canon_albedo"], normals, ambient, diffuse, light_dir)

    # Rotation: frame 0 of the sweep is the identity view (all six view numbers 0).
    sweep, grid = rotation_views(OPTIONS)
    assert torch.equal(sweep[0], torch.zeros(6))
    renders = render_rotations(texture, data["canon_depth"], torch.cat([sweep, grid]), cam)
    with torch.no_grad():
        frontal = render_view(texture, data["canon_depth"], torch.zeros(N, 6), cam).image.clamp(-1, 1)
    torch.testing.assert_close(renders[:, 0], frontal, rtol=0, atol=0)
    refined = refiner.refine(renders)
    expected = _direct(run, enc, frontal)
    inst = read_instances(run["instances"], S)
    assert (expected - inst.image).abs().max() > 1e-3  # a real edit: the offset is not 0
    torch.testing.assert_close(refined[:, 0], expected, rtol=0, atol=1e-4)
    centre = OPTIONS.n_frames + (OPTIONS.n_pitch // 2) * OPTIONS.n_yaw + OPTIONS.n_yaw // 2  # pitch 0, yaw 0
    torch.testing.assert_close(refined[:, centre], expected, rtol=0, atol=1e-4)

    # Relighting: frame 0 has light (radius, 0) and the instance's own view.
    light_xy = torch.tensor([[OPTIONS.relight_radius, 0.0], [0.0, OPTIONS.relight_radius]])
    relit = render_relights(data["canon_albedo"], data["canon_depth"], data["view"], data["light"], light_xy, cam)
    with torch.no_grad():
        tex0, _ = shade(data["canon_albedo"], normals, ambient, diffuse, light_direction(light_xy[:1]).expand(N, 3))
        own_view = render_view(tex0, data["canon_depth"], data["view"], cam).image.clamp(-1, 1)
    torch.testing.assert_close(relit[:, 0], own_view, rtol=0, atol=1e-6)
    torch.testing.assert_close(refiner.refine(relit)[:, 0], _direct(run, enc, own_view), rtol=0, atol=1e-4)

    # The written grid PNG holds the same numbers (uint8) in its centre cell.
    out = export_gan_refined(
        run["shape"],
        run["projected"],
        run["instances"],
        run["root"] / "export",
        cam,
        ctx.generator,
        f1_d=ctx.config.f1_d,
        options=OPTIONS,
        instance_batch=1,
    )
    for i, name in enumerate(inst.ids):
        png = np.asarray(Image.open(out[name]["rotate_gan_grid.png"]))
        r, c = OPTIONS.n_pitch // 2, OPTIONS.n_yaw // 2
        cell = png[r * (S + 2) : r * (S + 2) + S, c * (S + 2) : c * (S + 2) + S].astype(int)
        want = to_uint8((expected[i].permute(1, 2, 0).numpy().astype(np.float64) + 1) / 2).astype(int)
        assert np.abs(cell - want).max() <= 1


def test_instance_batching_does_not_change_the_frames(run):
    data = _shape(run)
    sweep, _ = rotation_views(OPTIONS)
    ambient, diffuse, light_dir = decode_light(data["light"])
    texture, _ = shade(
        data["canon_albedo"], depth_to_normals(data["canon_depth"], run["ctx"].camera), ambient, diffuse, light_dir
    )
    renders = render_rotations(texture, data["canon_depth"], sweep, run["ctx"].camera)
    both = _refiner(run, batch_size=3).refine(renders)  # 1 frame of each instance per GAN call
    ids = read_instances(run["instances"], S).ids
    second = _refiner(run, ids=[ids[1]], batch_size=64).refine(renders[1:])  # instance 1 alone, all frames at once
    torch.testing.assert_close(second[0], both[1], rtol=0, atol=1e-4)
    first = _refiner(run, ids=[ids[0]]).refine(renders[:1])
    torch.testing.assert_close(first[0], both[0], rtol=0, atol=1e-4)
    assert (both[0] - both[1]).abs().max() > 1e-3  # two different instances


def test_joint_mode_encoder(run, tmp_path):
    """A joint-mode projected.h5 holds one shared encoder; the refiner uses it for every instance."""
    torch.manual_seed(7)
    enc = InversionEncoder(S, out_dim=run["ctx"].generator.style_dim, nf=16).eval()
    with read_artifact(run["projected"], "projected") as art:
        ids, attrs = list(art.ids), dict(art.attrs)
    path = write_artifact(
        tmp_path / "projected.h5",
        "projected",
        {},
        ids=ids,
        params_text=attrs["params_text"],
        attrs={"mode": "joint", "stage": attrs["stage"], "image_size": S, "enc_nf": 16},
        networks={"encoder": enc.state_dict()},
    )
    refiner = load_gan_refiner(
        path, run["instances"], run["ctx"].generator, f1_d=run["ctx"].config.f1_d, offset=run["ctx"].config.offset
    )
    torch.manual_seed(1)
    renders = torch.rand(N, 1, 3, S, S) * 2 - 1
    torch.testing.assert_close(refiner.refine(renders)[:, 0], _direct(run, enc, renders[:, 0]), rtol=0, atol=1e-4)


def test_files_cli_and_refusals(run, tmp_path, monkeypatch):
    from click.testing import CliRunner

    from gan2shape.cli import main

    ctx = run["ctx"]
    ids = read_instances(run["instances"], S).ids
    out = export_gan_refined(
        run["shape"],
        run["projected"],
        run["instances"],
        tmp_path / "lib",
        ctx.camera,
        ctx.generator,
        f1_d=ctx.config.f1_d,
        options=OPTIONS,
        ids=[ids[1]],
    )
    assert list(out) == [ids[1]]
    names = {f for files in GAN_OUTPUT_FILES.values() for f in files}
    assert set(out[ids[1]]) == names and all(p.is_file() for p in out[ids[1]].values())
    with Image.open(out[ids[1]]["rotate_gan.gif"]) as gif:
        assert gif.size == (S, S) and gif.n_frames == OPTIONS.n_frames
    grid = np.asarray(Image.open(out[ids[1]]["rotate_gan_grid.png"]))
    assert grid.shape == (3 * S + 2 * 2, 3 * S + 2 * 2, 3)
    strip = np.asarray(Image.open(out[ids[1]]["relight_gan_strip.png"]))
    assert strip.shape == (S, 2 * S + 2, 3)

    # Another shard's instances.h5 is refused.
    other = tmp_path / "other.h5"
    write_instances(other, sample_instances(ctx.generator, N, seed=9, image_size=S))
    with pytest.raises(ArtifactError, match="different instance ids"):
        _refiner({**run, "instances": other})
    # Params other than the run's (E was trained with f1_d=1) and a shape of another stage are refused.
    with pytest.raises(ValueError, match=r"method\.f1_d=1"):
        load_gan_refiner(run["projected"], run["instances"], ctx.generator, f1_d=2)
    later = tmp_path / "stage2_shape.h5"
    shutil.copy(run["shape"], later)
    with h5py.File(later, "r+") as f:
        f.attrs["stage"] = 2
    with pytest.raises(ArtifactError, match="is stage 2 but .* is stage 1"):
        export_gan_refined(
            later, run["projected"], run["instances"], tmp_path / "no", ctx.camera, ctx.generator, f1_d=ctx.config.f1_d
        )

    monkeypatch.chdir(Path(__file__).resolve().parents[1])
    sets = [x for item in _overrides(run["gan"]) for x in ("--set", item)]
    runner = CliRunner()
    base = ["-q", "export", *sets, "--shape", str(run["shape"]), "--id", ids[0], "--device", "cpu"]
    res = runner.invoke(
        main,
        [
            *base,
            "--out",
            str(tmp_path / "cli"),
            "--projected",
            str(run["projected"]),
            "--instances",
            str(run["instances"]),
        ],
    )
    assert res.exit_code == 0, res.output
    folder = tmp_path / "cli" / ids[0]
    assert all((folder / f).is_file() for f in names) and (folder / "rotate.gif").is_file()
    res = runner.invoke(main, [*base, "--out", str(tmp_path / "x"), "--projected", str(run["projected"])])
    assert res.exit_code != 0 and "--instances" in res.output
