"""GAN-refined rotation and relighting media (docs/METHOD.md section 6: "gan_rotate", "gan_relight").

Each rendered edit of a reconstructed instance (a rotated view of its canonical texture + depth, or
its albedo re-lit and rendered in its own view) is inverted back into the GAN with the instance's
trained inversion encoder E, exactly as step 2 inverts its pseudo-samples
(gan2shape.method.latents, gan2shape.method.steps)::

    e   = E(render) - E(target image)            (method.relative_enc; else e = E(render))
    w   = w_target + offset(e)                    (latent_offset with method.offset and method.f1_d)
    out = G.synthesis(w, the instance's fixed noise), clamped to [-1, 1]

which gives a natural-looking GAN image of the edit. The renders are made like the pseudo-samples
E was trained on (render_view without a background colour, clamped to [-1, 1]); the views and
lights are those of the plain media (export.media): the yaw sweep and the pitch x yaw grid of
rotation_frames / rotation_grid, the light circle of relight_frames in the instance's own view.
With relative_enc, refining the target image itself gives back the instance's own GAN image
(offset exactly 0).

Inputs, all from one run: the final stage's shape.h5 (kind 'shape': canon_depth, canon_albedo,
view, light), the same stage's projected.h5 (kind 'projected': network 'encoder', the E of that
stage), the shard's instances.h5 (latent, noise, image) and the GAN of method.checkpoint.

Files, next to the plain media (exporter.py) in out_dir/<id>/::

    rotate_gan.gif, rotate_gan_grid.png      the refined yaw sweep and pitch x yaw grid
    relight_gan.gif, relight_gan_strip.png   the refined relighting sweep and its strip

at the GAN's own resolution (the refined images are not resized to the method's size).

Batching: instances are taken ``instance_batch`` at a time (one encoder ensemble over them); each
GAN call gets up to ``batch_size`` rows, B frames of every instance of the batch, grouped by
instance (rows i*B .. i*B+B-1 belong to instance i, as the instance-mode encoder ensemble needs).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import yaml
from torch import nn

from gan2shape import imaging
from gan2shape.artifacts import read_artifact
from gan2shape.errors import ArtifactError, ConfigError, InputError
from gan2shape.export import media
from gan2shape.export.exporter import REQUIRED, ExportOptions, _check_id
from gan2shape.method.chain import PROJECTED_KIND
from gan2shape.method.instances import Instances, read_instances
from gan2shape.method.latents import check_w_target, invert_grouped, make_offset_map
from gan2shape.model.decode import decode_light
from gan2shape.model.networks import InstanceEnsemble, InversionEncoder
from gan2shape.progress import track
from gan2shape.render import Camera, depth_to_normals, light_direction, render_view, shade
from gan2shape.render._checks import check_tensor
from gan2shape.stylegan2.model import Generator

__all__ = [
    "GAN_OUTPUTS",
    "GAN_OUTPUT_FILES",
    "GanRefiner",
    "load_gan_refiner",
    "rotation_views",
    "render_rotations",
    "render_relights",
    "export_gan_refined",
]

log = logging.getLogger(__name__)

GAN_OUTPUTS = ("rotate_gan", "relight_gan")
GAN_OUTPUT_FILES: dict[str, tuple[str, ...]] = {
    "rotate_gan": ("rotate_gan.gif", "rotate_gan_grid.png"),
    "relight_gan": ("relight_gan.gif", "relight_gan_strip.png"),
}


@dataclass
class GanRefiner:
    """Inverts renders of n instances back into the GAN with their trained encoder (module docstring).

    generator: the frozen StyleGAN2 (eval). encoder: an InversionEncoder (joint mode: shared) or an
    InstanceEnsemble of n of them (instance mode), image (M, 3, S, S) in [-1, 1] -> (M, style_dim).
    latent: (n, n_latent, D) float32 w+ of the instances; noise: num_layers maps (n, 1, r, r);
    target: (n, 3, S, S) in [-1, 1], the instances' images (E(target) is the relative_enc anchor);
    f1_d, relative_enc, offset: the run's method.f1_d, method.relative_enc and method.offset;
    batch_size: rows per GAN call.
    All tensors on the generator's device.
    """

    generator: Generator
    encoder: nn.Module
    latent: torch.Tensor
    noise: list[torch.Tensor]
    target: torch.Tensor
    f1_d: int
    relative_enc: bool = True
    batch_size: int = 64
    offset: str = "linear"

    def __post_init__(self) -> None:
        n = self.target.shape[0]
        check_tensor("target", self.target, ("N", 3, "S", "S"))
        check_w_target(self.latent, self.generator)
        if self.latent.dim() != 3 or self.latent.shape[0] != n:
            raise ValueError(
                f"latent must be w+ ({n}, n_latent, D) for the {n} targets, got {tuple(self.latent.shape)}"
            )
        if len(self.noise) != self.generator.num_layers or any(x.shape[0] != n for x in self.noise):
            raise ValueError(
                f"noise must be {self.generator.num_layers} maps with {n} rows each, got "
                f"{[tuple(x.shape) for x in self.noise]}; was it made with another generator?"
            )
        if isinstance(self.encoder, InstanceEnsemble) and self.encoder.n != n:
            raise ValueError(f"the encoder ensemble has {self.encoder.n} copies for {n} instances")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")

    @property
    def n(self) -> int:
        return self.target.shape[0]

    @property
    def image_size(self) -> int:
        """S, the size of the images E takes (the method's image size)."""
        return self.target.shape[-1]

    @property
    def device(self) -> torch.device:
        return self.target.device

    @torch.no_grad()
    def refine(self, renders: torch.Tensor) -> torch.Tensor:
        """GAN-refined versions of T renders per instance.

        renders: (n, T, 3, S, S) float in [-1, 1], row i the renders of instance i (any device).
        Returns (n, T, 3, R, R) float32 in [-1, 1] on the generator's device, R = the GAN's size.
        """
        n, s = self.n, self.image_size
        check_tensor("renders", renders, (n, "T", 3, s, s))
        t = renders.shape[1]
        g = self.generator
        offset_map = make_offset_map(g, self.offset, self.f1_d)
        e_target = self.encoder(self.target) if self.relative_enc else None
        b = max(1, min(t, self.batch_size // n))
        out = torch.empty(n, t, 3, g.size, g.size, device=self.device)
        for start in range(0, t, b):
            bb = min(b, t - start)
            chunk = renders[:, start : start + bb].to(self.device, torch.float32).reshape(n * bb, 3, s, s)
            img, _ = invert_grouped(
                self.encoder, chunk, e_target, self.latent, self.noise, offset_map, self.relative_enc
            )
            out[:, start : start + bb] = img.reshape(n, bb, 3, g.size, g.size)
        return out


@dataclass
class _Sources:
    """What the refiners of one shard need, read once: the projected artifact's encoder state and
    attributes, and the shard's instances (on the generator's device)."""

    projected: Path
    instances: Path
    mode: str
    image_size: int
    enc_nf: int
    state: dict[str, torch.Tensor]
    inst: Instances
    recorded: dict  # the method section of the params the artifact was made with (may be empty)

    @classmethod
    def read(cls, projected: str | Path, instances: str | Path, device: torch.device) -> _Sources:
        projected, instances = Path(projected), Path(instances)
        with read_artifact(projected, PROJECTED_KIND) as art:
            mode, size = art.attrs.get("mode"), int(art.attrs["image_size"])
            if mode not in ("instance", "joint"):
                raise ArtifactError(
                    f"{projected}: unknown mode {mode!r} (expected 'instance' or 'joint'): give a "
                    "projected.h5 of `gan2shape invert`"
                )
            inst = read_instances(instances, size, device)
            if list(art.ids) != inst.ids:
                raise ArtifactError(
                    f"{projected} and {instances} hold different instance ids ({art.ids[:3]}... vs "
                    f"{inst.ids[:3]}...): give the projected.h5 and instances.h5 of the same shard"
                )
            try:
                tree = yaml.safe_load(art.attrs.get("params_text") or "") or {}
                recorded = tree.get("method") or {} if isinstance(tree, dict) else {}
            except yaml.YAMLError:
                recorded = {}
            return cls(
                projected,
                instances,
                mode,
                size,
                int(art.attrs.get("enc_nf", 32)),
                art.network("encoder"),
                inst,
                recorded if isinstance(recorded, dict) else {},
            )

    def check_params(self, f1_d: int, relative_enc: bool, offset: str = "linear") -> None:
        """The inversion must use the f1_d, relative_enc and offset E was trained with (when recorded;
        runs made before method.offset existed used 'mapping')."""
        recorded = {"offset": "mapping", **self.recorded}
        for key, value in (("f1_d", f1_d), ("relative_enc", relative_enc), ("offset", offset)):
            if key in recorded and recorded[key] != value:
                raise ConfigError(
                    f"method.{key}",
                    f"{self.projected} was made with method.{key}={recorded[key]!r}, the params "
                    f"say {value!r}: export with the run's params (e.g. --set method.{key}="
                    f"{str(recorded[key]).lower()})",
                )

    def rows(self, ids: Sequence[str] | None) -> list[int]:
        wanted = self.inst.ids if ids is None else [str(i) for i in ids]
        missing = [i for i in wanted if i not in self.inst.ids]
        if missing:
            raise InputError(
                f"{self.instances} has no instance(s) {missing[:5]}; it holds {self.inst.n} ids, "
                f"e.g. {self.inst.ids[:3]}: give ids of this shard (--id)"
            )
        return [self.inst.ids.index(i) for i in wanted]

    def encoder(self, rows: list[int], out_dim: int) -> nn.Module:
        """The shared encoder (joint mode) or an ensemble of the copies of ``rows`` (instance mode:
        every stacked tensor of the stored ensemble has the instance axis first, so slicing it selects
        copies), eval, no grad, on the instances' device."""
        size, enc_nf, state = self.image_size, self.enc_nf, self.state

        def factory() -> nn.Module:
            return InversionEncoder(size, out_dim=out_dim, nf=enc_nf)

        with torch.random.fork_rng(devices=[]):  # the throw-away initial weights must not move the caller's RNG
            if self.mode == "instance":
                index = torch.tensor(rows)
                state = {k: v[index] for k, v in state.items()}
                net: nn.Module = InstanceEnsemble(factory, len(rows))
            else:
                net = factory()
        try:
            net.load_state_dict(state)
        except RuntimeError as exc:
            raise ArtifactError(
                f"{self.projected}: its encoder does not fit (image size {size}, enc_nf {enc_nf}, GAN "
                f"style_dim {out_dim}): was it made with another GAN? ({exc})"
            ) from None
        return net.to(self.inst.image.device).eval().requires_grad_(False)

    def refiner(
        self,
        generator: Generator,
        ids: Sequence[str] | None,
        f1_d: int,
        relative_enc: bool,
        batch_size: int,
        offset: str = "linear",
    ) -> GanRefiner:
        self.check_params(f1_d, relative_enc, offset)
        rows = self.rows(ids)
        index = torch.tensor(rows, device=self.inst.image.device)
        inst = self.inst
        try:
            return GanRefiner(
                generator,
                self.encoder(rows, generator.style_dim),
                inst.latent[index],
                [x[index] for x in inst.noise],
                inst.image[index],
                f1_d=f1_d,
                relative_enc=relative_enc,
                batch_size=batch_size,
                offset=offset,
            )
        except ValueError as exc:
            raise ArtifactError(
                f"{self.instances}: {exc}: give the instances.h5 the projected.h5 was made from "
                "(the same shard and GAN)"
            ) from None


def load_gan_refiner(
    projected: str | Path,
    instances: str | Path,
    generator: Generator,
    *,
    f1_d: int,
    relative_enc: bool = True,
    ids: Sequence[str] | None = None,
    batch_size: int = 64,
    offset: str = "linear",
) -> GanRefiner:
    """A GanRefiner for the instances ``ids`` (None = all) of one shard.

    projected: a 'projected' artifact (stage{k}/projected.h5) holding network 'encoder';
    instances: the shard's instances.h5 (same ids, same order); generator: the run's GAN, on the
    device to run on; f1_d, relative_enc, offset: the run's method.f1_d / relative_enc / offset.
    Raises ValueError when the files belong to different shards, an id is missing, or the encoder
    or latents do not fit the generator.
    """
    sources = _Sources.read(projected, instances, generator.input.input.device)
    return sources.refiner(generator, ids, f1_d, relative_enc, batch_size, offset)


# ----- the edits, rendered like step 2's pseudo-samples -----------------------------------------


def rotation_views(options: ExportOptions) -> tuple[torch.Tensor, torch.Tensor]:
    """The views of the plain rotation media: (sweep (T, 6), grid (P*Y, 6)) physical views.

    sweep: media.rotation_yaws(n_frames, max_yaw_deg), pitch 0 (frame 0 is the identity view);
    grid: pitch = linspace(-max_pitch, max_pitch, n_pitch) (rows, top to bottom) x yaw =
    linspace(-max_yaw, max_yaw, n_yaw) (columns), row-major, as media.rotation_grid.
    """
    sweep = torch.zeros(options.n_frames, 6)
    sweep[:, 1] = media.rotation_yaws(options.n_frames, options.max_yaw_deg)

    def spread(count: int, max_deg: float) -> torch.Tensor:
        return torch.linspace(-1.0, 1.0, count) * math.radians(float(max_deg)) if count > 1 else torch.zeros(1)

    pitch, yaw = torch.meshgrid(
        spread(options.n_pitch, options.max_pitch_deg), spread(options.n_yaw, options.max_yaw_deg), indexing="ij"
    )
    grid = torch.zeros(options.n_pitch * options.n_yaw, 6)
    grid[:, 0], grid[:, 1] = pitch.reshape(-1), yaw.reshape(-1)
    return sweep, grid


def _render_chunked(
    texture: torch.Tensor, depth: torch.Tensor, views: torch.Tensor, camera: Camera, rows_per_call: int
) -> torch.Tensor:
    """texture (n, V, C, S, S) or (n, 1, C, S, S), depth (n, S, S), views (n, V, 6) -> (n, V, C, S, S)
    render_view images clamped to [-1, 1], no background, V chunked to bound memory."""
    n, v = views.shape[:2]
    s = depth.shape[-1]
    out = []
    step = max(1, rows_per_call // n)
    for a in range(0, v, step):
        b = min(v, a + step) - a
        tex = texture[:, a : a + b] if texture.shape[1] == v else texture.expand(n, b, *texture.shape[2:])
        r = render_view(
            tex.reshape(n * b, *tex.shape[2:]),
            depth.repeat_interleave(b, 0),
            views[:, a : a + b].reshape(n * b, 6),
            camera,
        )
        out.append(r.image.clamp(-1.0, 1.0).reshape(n, b, -1, s, s))
    return torch.cat(out, dim=1)


@torch.no_grad()
def render_rotations(
    texture: torch.Tensor, depth: torch.Tensor, views: torch.Tensor, camera: Camera, rows_per_call: int = 64
) -> torch.Tensor:
    """Each instance's shaded canonical texture + depth rendered from V views, as step 2 renders its
    pseudo-samples (no background colour, clamped).

    texture: (n, 3, S, S) in [-1, 1]; depth: (n, S, S) canonical; views: (V, 6) physical.
    Returns (n, V, 3, S, S) float in [-1, 1].
    """
    dims = check_tensor("texture", texture, ("N", 3, "S", "S"))
    check_tensor("depth", depth, ("N", "S", "S"), dims)
    check_tensor("views", views, ("V", 6))
    n = texture.shape[0]
    v = views.to(texture).expand(n, -1, -1)
    return _render_chunked(texture[:, None], depth, v, camera, rows_per_call)


@torch.no_grad()
def render_relights(
    albedo: torch.Tensor,
    depth: torch.Tensor,
    view: torch.Tensor,
    light: torch.Tensor,
    light_xy: torch.Tensor,
    camera: Camera,
    rows_per_call: int = 64,
) -> torch.Tensor:
    """Each instance's albedo re-shaded with its own k_a, k_d under T light directions
    normalize([lx, ly, 1]) and rendered in its own view, as step 2 renders pseudo-samples.

    albedo: (n, 3, S, S) in [-1, 1]; depth: (n, S, S); view: (n, 6) physical; light: (n, 4) raw
    (decode_light); light_xy: (T, 2) (e.g. media.relight_light_xy). Returns (n, T, 3, S, S) in [-1, 1].
    """
    dims = check_tensor("albedo", albedo, ("N", 3, "S", "S"))
    check_tensor("depth", depth, ("N", "S", "S"), dims)
    check_tensor("view", view, ("N", 6), dims)
    check_tensor("light", light, ("N", 4), dims)
    check_tensor("light_xy", light_xy, ("T", 2))
    n, t, s = albedo.shape[0], light_xy.shape[0], albedo.shape[-1]
    ambient, diffuse, _ = decode_light(light)
    direction = light_direction(light_xy.to(albedo)).repeat(n, 1)  # (n*T, 3), instance-major
    normals = depth_to_normals(depth, camera).repeat_interleave(t, 0)
    texture, _ = shade(
        albedo.repeat_interleave(t, 0),
        normals,
        ambient.repeat_interleave(t, 0),
        diffuse.repeat_interleave(t, 0),
        direction,
    )
    views = view.to(albedo)[:, None].expand(n, t, 6)
    return _render_chunked(texture.reshape(n, t, 3, s, s), depth, views, camera, rows_per_call)


def _frames(x: torch.Tensor) -> np.ndarray:
    """(T, 3, R, R) in [-1, 1] -> (T, R, R, 3) uint8."""
    return imaging.to_uint8((x.detach().to("cpu", torch.float64).permute(0, 2, 3, 1).numpy() + 1.0) / 2.0)


def export_gan_refined(
    shape: str | Path,
    projected: str | Path,
    instances: str | Path,
    out_dir: str | Path,
    camera: Camera,
    generator: Generator,
    *,
    f1_d: int,
    relative_enc: bool = True,
    ids: Sequence[str] | None = None,
    what: Sequence[str] = GAN_OUTPUTS,
    options: ExportOptions | None = None,
    instance_batch: int = 16,
    batch_size: int = 64,
    progress: bool = False,
    offset: str = "linear",
) -> dict[str, dict[str, Path]]:
    """Write the GAN-refined media of every (or every selected) instance under ``out_dir/<id>/``.

    shape: the final shape.h5 (kind 'shape'); projected: the same stage's projected.h5; instances:
    the shard's instances.h5; camera: the method's camera (image size S = the shape's); generator:
    the run's GAN (its device is where E and G run); f1_d, relative_enc, offset: the run's method params;
    ids: the ids to export (None = all); what: a subset of GAN_OUTPUTS; options: the plain media's
    ExportOptions (sweep lengths, grid, light circle, fps).
    Returns {id: {file name: path}} with the names of GAN_OUTPUT_FILES.
    """
    options = options or ExportOptions()
    unknown = [w for w in what if w not in GAN_OUTPUTS]
    if unknown or not what:
        raise ValueError(f"unknown GAN-refined output(s) {unknown or list(what)}; choose from {GAN_OUTPUTS}")
    if instance_batch < 1:
        raise ValueError(f"instance_batch must be >= 1, got {instance_batch}")
    s = camera.image_size
    shapes = {"canon_depth": (s, s), "canon_albedo": (3, s, s), "view": (6,), "light": (4,)}
    with (
        read_artifact(shape, "shape", require=REQUIRED, shapes=shapes) as art,
        read_artifact(projected, PROJECTED_KIND) as proj,
    ):
        if list(art.ids) != list(proj.ids):
            raise ArtifactError(
                f"{shape} and {projected} hold different instance ids: give the projected.h5 of the "
                "same shard and stage"
            )
        stage, proj_stage = art.attrs.get("stage"), proj.attrs.get("stage")
        if stage != proj_stage:
            raise ArtifactError(
                f"{shape} is stage {stage} but {projected} is stage {proj_stage}: give the "
                f"projected.h5 of stage {stage} (its encoder is the one trained with this shape)"
            )
        wanted = list(art.ids) if ids is None else [str(i) for i in ids]
        missing = [i for i in wanted if i not in art.ids]
        if missing:
            raise InputError(
                f"{shape} has no instance(s) {missing}; it holds {art.n} ids, e.g. {art.ids[:5]}: "
                "give ids of this file (--id)"
            )
        rows = [art.ids.index(i) for i in wanted]
        device = generator.input.input.device  # render, encode and synthesise on the GAN's device
        data = {k: torch.from_numpy(np.asarray(art.array(k, rows), np.float32)).to(device) for k in REQUIRED}
    names = [_check_id(i) for i in wanted]
    sources = _Sources.read(projected, instances, device)
    sources.rows(names)  # every id must be in instances.h5 too
    log.info(
        "GAN-refined media of %d instance(s): encoder of %s (stage %s), latents of %s, GAN at %d px",
        len(names),
        projected,
        stage,
        instances,
        generator.size,
    )
    sweep, grid = rotation_views(options)
    light_xy = media.relight_light_xy(options.n_frames, options.relight_radius)
    result: dict[str, dict[str, Path]] = {name: {} for name in names}
    starts = range(0, len(names), instance_batch)
    for start in track(starts, "export (GAN-refined)", unit="batch", bar=progress):
        sel = slice(start, start + instance_batch)
        chunk = names[sel]
        refiner = sources.refiner(generator, chunk, f1_d, relative_enc, batch_size, offset)
        depth, albedo = data["canon_depth"][sel], data["canon_albedo"][sel]
        view, light = data["view"][sel], data["light"][sel]
        parts: list[torch.Tensor] = []
        if "rotate_gan" in what:
            ambient, diffuse, light_dir = decode_light(light)
            texture, _ = shade(albedo, depth_to_normals(depth, camera), ambient, diffuse, light_dir)
            parts.append(render_rotations(texture, depth, torch.cat([sweep, grid]), camera))
        if "relight_gan" in what:
            parts.append(render_relights(albedo, depth, view, light, light_xy, camera))
        refined = refiner.refine(torch.cat(parts, dim=1)).cpu()
        for i, name in enumerate(chunk):
            folder, written = Path(out_dir) / name, result[name]
            frames = _frames(refined[i])
            t = 0
            if "rotate_gan" in what:
                n_sweep, n_grid = sweep.shape[0], grid.shape[0]
                written["rotate_gan.gif"] = media.write_gif(folder / "rotate_gan.gif", frames[:n_sweep], options.fps)
                tiles = list(frames[n_sweep : n_sweep + n_grid])
                written["rotate_gan_grid.png"] = imaging.write_png(
                    folder / "rotate_gan_grid.png", imaging.tile_images(tiles, n_cols=options.n_yaw, pad=2)
                )
                t = n_sweep + n_grid
            if "relight_gan" in what:
                relit = frames[t : t + light_xy.shape[0]]
                written["relight_gan.gif"] = media.write_gif(folder / "relight_gan.gif", relit, options.fps)
                written["relight_gan_strip.png"] = imaging.write_png(
                    folder / "relight_gan_strip.png", media.frames_strip(relit, options.strip_frames)
                )
    return result
