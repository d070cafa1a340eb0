"""What the peers' training loops share: seeded batches drawn on the device, one Adam over the networks,
resumable checkpoints, a progress bar and a log, a clean stop on SIGTERM/SIGINT.

Conventions of ``gan2shape train-gan`` (gan2shape.stylegan2.train): the data sits in device memory,
every random number comes from one seeded ``torch.Generator`` on the device, ``out_dir/checkpoint.pt``
is written atomically every ``checkpoint_every`` steps, at the end of every call and on a signal, and a
new call with the same architecture continues from it bit for bit (same seed, same device; on the CPU
the result equals an uninterrupted run's). ``log.jsonl`` gets one line every ``log_every`` steps.

Checkpoint (a dict, ``torch.load(weights_only=True)``-readable): format, version, kind (one of
:data:`PEER_KINDS`), config (the section as a dict), camera, step, networks {name: state dict},
optimizer, rng_state, rng_device, params_text.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from gan2shape.atomic import remove_stray_temporaries, write_atomic
from gan2shape.errors import CheckpointError
from gan2shape.peers.data import HeadsSet
from gan2shape.progress import Progress, StopRequest
from gan2shape.render import Camera

__all__ = ["PEER_KINDS", "PeerTrainer", "load_peer_checkpoint", "camera_dict", "fast_cuda", "run_training"]

log = logging.getLogger(__name__)

PEER_KINDS: tuple[str, ...] = ("supervised", "unsup3d")
_FORMAT = "gan2shape_peer"
_VERSION = 1
_KEYS = ("kind", "config", "camera", "step", "networks", "optimizer", "rng_state", "rng_device")


def fast_cuda(device: torch.device) -> None:
    """TF32 matmuls and cuDNN autotuning on CUDA (as train-gan); nothing on the CPU."""
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True


def camera_dict(camera: Camera) -> dict[str, float]:
    """A camera as the plain dict a checkpoint stores (``Camera(**d)`` rebuilds it)."""
    return {
        "image_size": camera.image_size,
        "fov_deg": float(camera.fov_deg),
        "min_depth": float(camera.min_depth),
        "max_depth": float(camera.max_depth),
        "rot_center_depth": float(camera.rot_center_depth),
    }


def load_peer_checkpoint(
    path: str | Path, kind: str | None = None, device: torch.device | str = "cpu"
) -> dict[str, Any]:
    """Read and validate a peer checkpoint (module docstring); ``kind``: the one expected (None: any).

    Raises CheckpointError, one line naming the file and the fix, when it is missing, unreadable or
    truncated, not a peer checkpoint, of another kind, or lacks an entry.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(
            f"{path} does not exist: train the model first (gan2shape train-{kind or 'supervised'} or train-unsup3d)"
        )
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many kinds on damaged or foreign files
        raise CheckpointError(
            f"{path} cannot be read as a peer checkpoint ({_reason(exc)}); it is truncated or "
            "not one: delete it and rerun the training"
        ) from None
    if not isinstance(state, dict) or state.get("format") != _FORMAT:
        raise CheckpointError(
            f"{path} is not a gan2shape peer checkpoint (no format {_FORMAT!r}): give the "
            "checkpoint.pt of gan2shape train-supervised or train-unsup3d"
        )
    if state.get("version") != _VERSION:
        raise CheckpointError(
            f"{path} has peer checkpoint version {state.get('version')!r}, this code reads {_VERSION}: retrain it"
        )
    missing = [k for k in _KEYS if k not in state]
    if missing:
        raise CheckpointError(f"{path} lacks {missing}: it is damaged; delete it and rerun the training")
    if state["kind"] not in PEER_KINDS or (kind is not None and state["kind"] != kind):
        raise CheckpointError(
            f"{path} holds a {state['kind']!r} model, expected {kind or list(PEER_KINDS)!r}: use "
            "another --out folder or the matching command"
        )
    return state


def _reason(exc: BaseException) -> str:
    """The first sentence of a torch.load failure, without PyTorch's advice on weights_only (about trusted
    pickles; it does not apply to a damaged file)."""
    text = str(exc)
    detail = re.search(r"WeightsUnpickler error:\s*(.+?)\s*(?:\n|$)", text)
    text = detail.group(1) if detail else ("" if "weights_only" in text else text)
    line = text.strip().splitlines()[0].split(". ")[0].rstrip(".")[:200] if text.strip() else ""
    return f"{type(exc).__name__}{': ' + line if line else ''}"


class PeerTrainer:
    """One training state (networks, Adam, RNG, step) of a peer on in-memory heads.

    Subclasses set ``kind`` and ``arch_keys`` (config fields that fix the networks' shapes) and
    implement :meth:`build_networks` and :meth:`losses`. The networks are initialised from a CPU RNG
    seeded with config.seed (the caller's global RNG is untouched), so the same config gives the same
    weights on every device; batches are ``batch_size`` rows drawn with replacement by ``self.rng``.
    """

    kind = ""
    arch_keys: tuple[str, ...] = ("image_size", "nf", "zdim")

    def __init__(self, config: Any, data: HeadsSet, camera: Camera, device: torch.device | str):
        self.config, self.data, self.camera = config, data, camera
        self.device = torch.device(device)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            self.nets = self.build_networks(config)
        self.nets.to(self.device)
        self.optim = torch.optim.Adam(
            self.nets.parameters(), lr=config.lr, betas=(0.9, 0.999), weight_decay=config.weight_decay
        )
        self.rng = torch.Generator(device=self.device)
        self.rng.manual_seed(config.seed)
        self.step = 0

    @staticmethod
    def build_networks(config: Any) -> nn.ModuleDict:
        raise NotImplementedError

    def losses(self, rows: Tensor) -> dict[str, Tensor]:
        """The loss terms on the heads ``rows`` (B,) long; 'loss' is the total that is minimised."""
        raise NotImplementedError

    def train_step(self) -> dict[str, Tensor]:
        """One Adam step on a fresh batch; returns the detached loss terms (scalars on the device)."""
        rows = torch.randint(self.data.n, (self.config.batch_size,), generator=self.rng, device=self.device)
        terms = self.losses(rows)
        self.optim.zero_grad(set_to_none=True)
        terms["loss"].backward()
        self.optim.step()
        self.step += 1
        return {k: v.detach() for k, v in terms.items()}

    def state(self, params_text: str | None = None) -> dict[str, Any]:
        return {
            "format": _FORMAT,
            "version": _VERSION,
            "kind": self.kind,
            "config": dataclasses.asdict(self.config),
            "camera": camera_dict(self.camera),
            "step": self.step,
            "networks": {name: net.state_dict() for name, net in self.nets.items()},
            "optimizer": self.optim.state_dict(),
            "rng_state": self.rng.get_state().cpu(),
            "rng_device": self.device.type,
            "params_text": params_text,
        }

    def save(self, path: str | Path, params_text: str | None = None) -> Path:
        """Write the resumable checkpoint atomically."""
        state = self.state(params_text)
        return write_atomic(path, lambda tmp: torch.save(state, tmp))

    def load(self, path: str | Path) -> dict[str, Any]:
        """Continue from a checkpoint of :meth:`save`: networks, Adam, RNG and step.

        Raises CheckpointError when it is not a checkpoint of this kind or its architecture differs.
        """
        state = load_peer_checkpoint(path, self.kind, self.device)
        stored = state["config"]
        diff = ", ".join(
            f"{k}: checkpoint {stored.get(k)!r} vs config {getattr(self.config, k)!r}"
            for k in self.arch_keys
            if stored.get(k) != getattr(self.config, k)
        )
        if diff:
            raise CheckpointError(
                f"{path} holds a different architecture ({diff}); use another --out folder or delete the checkpoint"
            )
        changed = [
            k
            for k, v in dataclasses.asdict(self.config).items()
            if k not in ("steps", "checkpoint_every", "log_every") and stored.get(k) != v
        ]
        if changed:
            log.warning("resuming %s with changed training settings: %s", path, ", ".join(changed))
        try:
            for name, net in self.nets.items():
                net.load_state_dict(state["networks"][name])
            self.optim.load_state_dict(state["optimizer"])
        except (KeyError, RuntimeError, ValueError) as exc:
            reason = str(exc).strip().splitlines()[0]
            raise CheckpointError(
                f"{path} does not fit the {self.kind} networks ({type(exc).__name__}: {reason}); "
                "delete it and rerun the training"
            ) from None
        for group in self.optim.param_groups:  # the config's settings win
            group["lr"], group["weight_decay"] = self.config.lr, self.config.weight_decay
        if state["rng_device"] == self.device.type:
            self.rng.set_state(state["rng_state"].cpu())
        else:
            log.warning(
                "%s was written on %s; the batch RNG restarts from a derived seed on %s",
                path,
                state["rng_device"],
                self.device.type,
            )
            self.rng.manual_seed(self.config.seed + int(state["step"]))
        self.step = int(state["step"])
        return state


def run_training(
    trainer: PeerTrainer,
    out_dir: str | Path,
    *,
    max_steps: int | None = None,
    max_seconds: float | None = None,
    progress: bool = True,
    params_text: str | None = None,
) -> dict[str, Any]:
    """Train ``trainer`` to config.steps, resuming from ``out_dir/checkpoint.pt`` when it exists.

    max_steps / max_seconds cap THIS call (chunked runs, a time budget); a rerun continues. On
    SIGTERM/SIGINT the checkpoint is written and SystemExit(128 + signal) is raised.
    Returns: steps, finished, resumed_from_step, seconds, img_per_s, losses (last logged), checkpoint, log.
    """
    config = trainer.config
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ckpt_path, log_path = out_dir / "checkpoint.pt", out_dir / "log.jsonl"
    remove_stray_temporaries(ckpt_path)
    resumed_from = None
    if ckpt_path.exists():
        trainer.load(ckpt_path)
        resumed_from = trainer.step
        log.info("resumed %s from %s at step %d", trainer.kind, ckpt_path, trainer.step)
    else:
        log.info(
            "training %s from scratch: %d heads of %dpx on %s",
            trainer.kind,
            trainer.data.n,
            config.image_size,
            trainer.device,
        )
    start_step = trainer.step
    stop_at = config.steps if max_steps is None else min(config.steps, start_step + max_steps)
    bar = Progress(
        config.steps, f"train-{trainer.kind}", unit="step", bar=progress, initial=start_step, dynamic_ncols=True
    )
    sums: dict[str, Tensor] = {}
    count = 0
    last: dict[str, float] = {}
    t_run = time.perf_counter()
    t_log, step_log = t_run, start_step

    def flush() -> None:
        nonlocal sums, count, last, t_log, step_log
        if not count:
            return
        if trainer.device.type == "cuda":
            torch.cuda.synchronize(trainer.device)
        now = time.perf_counter()
        last = {k: float(v) / count for k, v in sums.items()}
        speed = (trainer.step - step_log) * config.batch_size / max(now - t_log, 1e-9)
        with open(log_path, "a") as fh:
            fh.write(json.dumps({"step": trainer.step, **last, "img_per_s": speed, "time_s": now - t_run}) + "\n")
        bar.update(trainer.step - step_log)
        bar.set_postfix({k: f"{v:.4f}" for k, v in last.items()} | {"img/s": f"{speed:.0f}"})
        sums, count, t_log, step_log = {}, 0, now, trainer.step

    timed_out = False
    try:
        with StopRequest() as stop:
            while trainer.step < stop_at and stop.signum is None:
                if max_seconds is not None and time.perf_counter() - t_run >= max_seconds:
                    timed_out = True
                    break
                terms = trainer.train_step()
                for k, v in terms.items():
                    sums[k] = sums[k] + v if k in sums else v
                count += 1
                if trainer.step % config.log_every == 0:
                    flush()
                if trainer.step % config.checkpoint_every == 0:
                    trainer.save(ckpt_path, params_text)
            flush()
            trainer.save(ckpt_path, params_text)  # every call ends resumable
            if stop.signum is not None:
                log.warning(
                    "stopped by signal %d at step %d; checkpoint written to %s (rerun to continue)",
                    stop.signum,
                    trainer.step,
                    ckpt_path,
                )
                raise SystemExit(128 + stop.signum)
    finally:
        bar.close()
    seconds = time.perf_counter() - t_run
    if timed_out:
        log.warning(
            "stopped after %.0f s (--max-minutes) at step %d of %d; rerun to continue",
            seconds,
            trainer.step,
            config.steps,
        )
    ran = trainer.step - start_step
    return {
        "kind": trainer.kind,
        "steps": trainer.step,
        "total_steps": config.steps,
        "finished": trainer.step >= config.steps,
        "resumed_from_step": resumed_from,
        "timed_out": timed_out,
        "seconds": seconds,
        "img_per_s": ran * config.batch_size / seconds if seconds > 0 else 0.0,
        "losses": last,
        "checkpoint": str(ckpt_path),
        "log": str(log_path),
    }
