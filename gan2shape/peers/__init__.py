"""The peer rows of Table 1, trained here on the synthetic heads (docs/baselines.md).

- supervised: the method's depth net trained with the train heads' GT depth (the upper reference).
- unsup3d: Unsup3d (Wu et al., CVPR 2020) on our renderer and networks, from the train images alone.
- training: what both training loops share (seeded batches, Adam, resumable checkpoints, progress).
- predict: a trained peer's depth of a heads split as a 'prediction' artifact for ``gan2shape evaluate``.

Layer: imports data, render, model, artifacts, errors, config, progress, atomic and device; never
method, export, stylegan2 or evaluate.
"""

from __future__ import annotations

from gan2shape.peers.predict import run_predict
from gan2shape.peers.supervised import SupervisedTrainer, train_supervised
from gan2shape.peers.training import PEER_KINDS, load_peer_checkpoint
from gan2shape.peers.unsup3d import Unsup3dTrainer, train_unsup3d

__all__ = [
    "PEER_KINDS",
    "SupervisedTrainer",
    "Unsup3dTrainer",
    "load_peer_checkpoint",
    "run_predict",
    "train_supervised",
    "train_unsup3d",
]
