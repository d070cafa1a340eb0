"""The pose regressor (gan2shape.evaluate.pose): line fits, shapes, training on rendered heads, storage."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from gan2shape.config import HeadsConfig
from gan2shape.evaluate.pose import (
    PoseRegressor,
    line_fit,
    load_pose_regressor,
    predict_pose,
    render_pose_set,
    save_pose_regressor,
    train_pose_regressor,
)

HEADS32 = HeadsConfig(image_size=32)


def test_line_fit_analytic():
    x = np.arange(10.0)
    fit = line_fit(x, 2.0 * x + 1.0)
    assert fit["slope"] == 2.0 and fit["r"] == 1.0 and fit["n"] == 10
    assert fit["mean_abs_diff"] == pytest.approx(float(np.abs(x + 1.0).mean()), abs=1e-4)
    assert line_fit(x, -0.5 * x)["r"] == -1.0
    flat = line_fit(x, np.zeros(10))
    assert flat["slope"] == 0.0 and math.isnan(flat["r"])
    assert math.isnan(line_fit(np.ones(4), np.arange(4.0))["slope"])
    # a term orthogonal to x (symmetric about its mean) leaves the slope alone and lowers r
    bent = line_fit(x, 0.7 * x + (x - 4.5) ** 2)
    assert bent["slope"] == pytest.approx(0.7, abs=1e-4) and bent["r"] < 0.5
    with pytest.raises(ValueError, match="one size"):
        line_fit(x, x[:3])


def test_regressor_shapes_and_checks():
    net = PoseRegressor(32, nf=8)
    assert net(torch.zeros(3, 3, 32, 32)).shape == (3, 2)
    with pytest.raises(ValueError, match="resize"):
        net(torch.zeros(1, 3, 64, 64))
    with pytest.raises(ValueError, match="power of two"):
        PoseRegressor(48)
    # chunked prediction equals one batch
    x = torch.rand(5, 3, 32, 32) * 2 - 1
    torch.testing.assert_close(predict_pose(net.eval(), x, chunk=2), net(x).detach())


def test_render_pose_set_gives_the_heads_views():
    images, angles = render_pose_set(HEADS32, 7, 5)
    assert images.shape == (5, 3, 32, 32) and images.dtype == torch.float16 and images.abs().max() <= 1
    from gan2shape.data.heads import sample_heads

    torch.testing.assert_close(angles, sample_heads(HEADS32, "train", 7, 5).view[:, :2])


@pytest.mark.slow
def test_training_learns_yaw_and_round_trips(tmp_path):
    net, report = train_pose_regressor(
        HEADS32, n_images=1500, n_held=300, steps=300, batch_size=64, nf=8, progress=False
    )
    yaw = report["held_out"]["yaw"]
    # yaw spans +-60 degrees (std ~35): a regressor that learned nothing has r ~ 0
    assert yaw["r"] > 0.8 and yaw["slope"] > 0.5, yaw
    path = save_pose_regressor(tmp_path / "pose.h5", net, report)
    again, rep = load_pose_regressor(path)
    assert rep["held_out"]["yaw"] == yaw and again.image_size == 32 and again.nf == 8
    x = render_pose_set(HEADS32, 5000, 4)[0].float()
    torch.testing.assert_close(predict_pose(again, x), predict_pose(net, x))
