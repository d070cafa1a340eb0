"""The ellipsoid shape prior (gan2shape.render.prior): analytic properties of the cap and the box rules."""

from __future__ import annotations

import pytest
import torch

from gan2shape.render.prior import box_from_mask, centered_box, ellipsoid_prior

NEAR, FAR = 0.91, 1.02


def _box_prior(box, size=48, **kw):
    return ellipsoid_prior(torch.tensor([box], dtype=torch.float32), size, **kw)[0]


def test_minimum_is_near_at_box_centre():
    prior = _box_prior([10.0, 12.0, 30.0, 40.0])  # centre (x, y) = (20, 26)
    assert prior.shape == (48, 48)
    assert prior.dtype == torch.float32
    flat = int(torch.argmin(prior))
    assert divmod(flat, 48) == (26, 20)
    assert prior[26, 20].item() == pytest.approx(NEAR, abs=1e-6)
    assert prior.max().item() == pytest.approx(FAR, abs=1e-7)


def test_far_outside_the_box_and_outside_the_ellipse():
    x0, y0, x1, y1 = 10, 12, 30, 40
    prior = _box_prior([x0, y0, x1, y1])
    far = torch.tensor(FAR, dtype=torch.float32)
    outside = torch.ones(48, 48, dtype=torch.bool)
    outside[y0 : y1 + 1, x0 : x1 + 1] = False
    assert torch.equal(prior[outside], far.expand(int(outside.sum())))
    # the box corners lie outside the inscribed ellipse
    for y, x in [(y0, x0), (y0, x1), (y1, x0), (y1, x1), (y0 + 1, x0 + 1)]:
        assert prior[y, x] == far
    # inside the ellipse the cap is strictly closer than the background
    assert prior[26, 20 - 9].item() < FAR and prior[26 - 13, 20].item() < FAR


def test_rim_of_the_ellipse_reaches_far_continuously():
    # semi-axes 10 (x) and 14 (y) px: the rim passes through pixel centres on the centre row/col
    prior = _box_prior([10.0, 12.0, 30.0, 40.0])
    for y, x in [(26, 10), (26, 30), (12, 20), (40, 20)]:
        assert prior[y, x].item() == pytest.approx(FAR, abs=1e-6)


def test_symmetric_for_a_centred_box():
    size = 33
    # fractions whose box edges are exact binary numbers: exactly mirror-symmetric
    prior = ellipsoid_prior(centered_box(size, 0.75, 0.5), size)[0]
    assert torch.equal(prior, prior.flip(-1))
    assert torch.equal(prior, prior.flip(-2))
    assert prior[16, 16].item() == pytest.approx(NEAR, abs=1e-6)
    # any fractions: symmetric up to the float32 rounding of the box edges
    prior = ellipsoid_prior(centered_box(size, 0.6, 0.8), size)[0]
    torch.testing.assert_close(prior, prior.flip(-1), atol=1e-6, rtol=0)
    torch.testing.assert_close(prior, prior.flip(-2), atol=1e-6, rtol=0)


def test_monotone_from_centre_to_rim_along_rows_and_columns():
    prior = _box_prior([10.0, 12.0, 30.0, 40.0])
    row = prior[26]
    col = prior[:, 20]
    right, left = row[20:31], row[10:21].flip(0)
    down, up = col[26:41], col[12:27].flip(0)
    for profile in (right, left, down, up):
        steps = profile[1:] - profile[:-1]
        assert bool((steps > 0).all()), profile  # strictly rising towards the rim


def test_near_far_and_radius_change_the_cap():
    prior = _box_prior([10.0, 12.0, 30.0, 40.0], near=0.95, far=1.05, radius=1.0)
    assert prior[26, 20].item() == pytest.approx(0.95, abs=1e-6)
    assert prior[0, 0].item() == pytest.approx(1.05, abs=1e-7)
    # a flatter sphere (larger radius) is lower (closer) mid-way: cap over chord is more cone-like
    steep = _box_prior([10.0, 12.0, 30.0, 40.0], radius=0.11)
    flat = _box_prior([10.0, 12.0, 30.0, 40.0], radius=10.0)
    assert steep[26, 25].item() < flat[26, 25].item()


def test_batch_is_independent_per_box():
    boxes = torch.tensor([[10.0, 12.0, 30.0, 40.0], [0.0, 0.0, 47.0, 20.0], [-5.0, 30.0, 20.0, 60.0]])
    batch = ellipsoid_prior(boxes, 48)
    for i in range(3):
        assert torch.equal(batch[i], ellipsoid_prior(boxes[i], 48)[0])
    assert batch.shape == (3, 48, 48)


def test_box_from_mask_rectangle_raises_top_by_a_sixth():
    mask = torch.zeros(2, 64, 64)
    mask[0, 20:45, 8:31] = 1  # rows 20..44 (height 24), cols 8..30
    mask[1, 2:27, 40:50] = 1  # rows 2..26 (height 24): raised top would be -2, clipped to 0
    boxes = box_from_mask(mask)
    assert boxes.shape == (2, 4)
    assert boxes[0].tolist() == [8.0, 16.0, 30.0, 44.0]
    assert boxes[1].tolist() == [40.0, 0.0, 49.0, 26.0]
    plain = box_from_mask(mask, raise_top_frac=0.0)
    assert plain[0].tolist() == [8.0, 20.0, 30.0, 44.0]


def test_box_from_mask_empty_image_is_named():
    mask = torch.zeros(3, 16, 16, dtype=torch.uint8)
    mask[0, 4:8, 4:8] = 1
    mask[2, 1:3, 1:9] = 1
    with pytest.raises(ValueError, match=r"image\(s\) \[1\]"):
        box_from_mask(mask)


def test_centered_box_size_and_offset():
    box = centered_box(33, 0.5, 0.25)
    assert box.tolist() == [8.0, 12.0, 24.0, 20.0]
    shifted = centered_box(33, 0.5, 0.25, offset=(0.25, -0.125))
    assert shifted.tolist() == [16.0, 8.0, 32.0, 16.0]


def test_invalid_arguments_fail_clearly():
    with pytest.raises(ValueError, match="near < far"):
        ellipsoid_prior(torch.tensor([1.0, 1.0, 5.0, 5.0]), 8, near=1.1, far=1.0)
    with pytest.raises(ValueError, match=r"box\(es\) \[0\]"):
        ellipsoid_prior(torch.tensor([5.0, 1.0, 5.0, 5.0]), 8)
    with pytest.raises(ValueError, match="radius"):
        ellipsoid_prior(torch.tensor([1.0, 1.0, 5.0, 5.0]), 8, radius=0.05)
    with pytest.raises(ValueError, match=r"\(N, 4\)"):
        ellipsoid_prior(torch.zeros(2, 3), 8)
    with pytest.raises(ValueError, match=r"\(N, H, W\)"):
        box_from_mask(torch.ones(8, 8))
