"""``gan2shape predict``: a trained peer's depth of a heads split, as the 'prediction' artifact that
``gan2shape evaluate`` scores like every row.

Written datasets (N = the split's first ``limit`` heads, in the split's order):
- depth (N, S, S) float32 > 0, in the input view: the supervised net's exp(raw); for Unsup3d the
  canonical depth seen from the predicted view (``recon_depth``, as the reference evaluates it);
- valid (N, S, S) uint8 {0, 1}, Unsup3d only: pixels its rendered surface covers (evaluate multiplies
  them, eroded, into the GT mask, as the reference's ``mask_pred``);
- Unsup3d also: canon_depth (N, S, S) float32 and view (N, 6) float32 [pitch, yaw, roll (radians), tx, ty, tz].
Attributes: model (the kind), checkpoint, steps (trained), total_steps, finished.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gan2shape.artifacts import write_artifact
from gan2shape.config import SupervisedConfig, Unsup3dConfig, parse_section
from gan2shape.errors import CheckpointError, ConfigError
from gan2shape.peers.data import load_heads_set, to_unit
from gan2shape.peers.supervised import build_supervised, predict_supervised
from gan2shape.peers.training import load_peer_checkpoint
from gan2shape.peers.unsup3d import build_unsup3d, unsup3d_forward
from gan2shape.progress import track
from gan2shape.render import Camera

__all__ = ["run_predict"]

log = logging.getLogger(__name__)

_CONFIGS = {"supervised": SupervisedConfig, "unsup3d": Unsup3dConfig}
_BUILD = {"supervised": build_supervised, "unsup3d": build_unsup3d}


@torch.no_grad()
def run_predict(
    checkpoint: str | Path,
    images_path: str | Path,
    out_path: str | Path,
    *,
    device: torch.device | str = "cpu",
    limit: int | None = None,
    batch_size: int = 100,
    progress: bool = False,
    params_text: str | None = None,
) -> dict[str, Any]:
    """Predict the depth of the first ``limit`` heads (None: all) of ``images_path`` with the peer model of
    ``checkpoint`` (a checkpoint.pt of train-supervised or train-unsup3d); write ``out_path`` (module doc).

    Returns {'out', 'model', 'n', 'steps', 'finished'}. Raises CheckpointError for a bad checkpoint and
    ArtifactError for a heads file of another image size.
    """
    device = torch.device(device)
    state = load_peer_checkpoint(checkpoint, device=device)
    kind = state["kind"]
    try:
        config = parse_section(_CONFIGS[kind], state["config"], kind)
        camera = Camera(**state["camera"])
    except (ConfigError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{checkpoint}: its stored configuration is invalid ({exc}); retrain it") from None
    nets = _BUILD[kind](config)
    try:
        for name, net in nets.items():
            net.load_state_dict(state["networks"][name])
    except (KeyError, RuntimeError) as exc:
        reason = str(exc).strip().splitlines()[0]
        raise CheckpointError(
            f"{checkpoint}: its networks do not fit the {kind} model ({type(exc).__name__}: {reason}); retrain it"
        ) from None
    nets.to(device).eval()
    finished = int(state["step"]) >= config.steps
    if not finished:
        log.warning(
            "%s is at step %d of %d: predicting with an unfinished model", checkpoint, state["step"], config.steps
        )
    data = load_heads_set(images_path, config.image_size, device, limit=limit)
    outputs: dict[str, list[np.ndarray]] = {}
    for start in track(range(0, data.n, batch_size), f"predict {kind}", unit="batch", bar=progress):
        image = to_unit(data.image[start : start + batch_size])
        if kind == "supervised":
            batch = {"depth": predict_supervised(nets, image)}
        else:
            out = unsup3d_forward(nets, image, camera, config)
            b = image.shape[0]
            batch = {
                "depth": out["recon_depth"][:b],
                "valid": out["valid"][:b, 0].to(torch.uint8),
                "canon_depth": out["canon_depth"],
                "view": out["view"],
            }
        for name, value in batch.items():
            outputs.setdefault(name, []).append(
                value.float().cpu().numpy() if value.is_floating_point() else value.cpu().numpy()
            )
    arrays = {name: np.concatenate(parts) for name, parts in outputs.items()}
    attrs = {
        "model": kind,
        "checkpoint": str(checkpoint),
        "steps": int(state["step"]),
        "total_steps": config.steps,
        "finished": finished,
        "images": str(images_path),
    }
    write_artifact(out_path, "prediction", arrays, ids=data.ids, params_text=params_text, attrs=attrs)
    return {"out": str(out_path), "model": kind, "n": data.n, "steps": int(state["step"]), "finished": finished}
