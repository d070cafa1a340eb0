"""Prior variants of the paper's Table 2 and the box sources (gan2shape.render.prior)."""

from __future__ import annotations

import pytest
import torch

from gan2shape.render.prior import PRIOR_VARIANTS, centered_box, ellipsoid_prior, prior_boxes, prior_variant

NEAR, FAR, S = 0.91, 1.02, 41  # image span S - 1 = 40 px: 0.1 of it is exactly 4 px


def _box():
    return torch.tensor([[10.0, 8.0, 30.0, 32.0]])  # centre (x, y) = (20, 20)


def _argmin_yx(depth):
    return divmod(int(torch.argmin(depth)), depth.shape[-1])


def test_ellipsoid_variant_is_the_ellipsoid_prior():
    assert torch.equal(prior_variant("ellipsoid", _box(), S), ellipsoid_prior(_box(), S))


def test_asymmetric_is_not_mirror_symmetric_but_keeps_range_and_footprint():
    box = centered_box(S, 0.5, 0.5).unsqueeze(0)
    sym = prior_variant("ellipsoid", box, S)[0]
    asym = prior_variant("asymmetric", box, S, asymmetry=0.5)[0]
    assert torch.equal(sym, sym.flip(-1))
    assert (asym - asym.flip(-1)).abs().max().item() > 0.02
    assert asym.min().item() == pytest.approx(NEAR, abs=1e-6)
    # apex moved right by asymmetry * half-width = 0.5 * 10 px
    assert _argmin_yx(asym) == (20, 25)
    # same footprint: far exactly where the ellipse prior is far (rows/cols through the centre)
    assert torch.equal(asym[20] < FAR, sym[20] < FAR)


def test_shifted_moves_the_minimum_by_the_shift():
    base = prior_variant("ellipsoid", _box(), S)[0]
    moved = prior_variant("shifted", _box(), S, shift_frac=(0.1, -0.05))[0]
    assert _argmin_yx(base) == (20, 20)
    assert _argmin_yx(moved) == (20 - 2, 20 + 4)
    # a pure translation of the picture (away from the border)
    torch.testing.assert_close(moved[5:-5, 5:-5], base[7:-3, 1:-9], atol=1e-6, rtol=0)


def test_weaker_has_a_smaller_depth_range():
    full = prior_variant("ellipsoid", _box(), S)[0]
    weak = prior_variant("weaker", _box(), S, strength=0.5)[0]
    assert weak.max().item() == pytest.approx(FAR, abs=1e-7)
    assert weak.min().item() == pytest.approx(FAR - 0.5 * (FAR - NEAR), abs=1e-6)
    assert (weak.max() - weak.min()).item() < 0.51 * (full.max() - full.min()).item()
    assert torch.equal(weak < FAR, full < FAR)


def test_flat_is_a_constant_plane():
    flat = prior_variant("flat", _box().repeat(3, 1), S)
    assert flat.shape == (3, S, S)
    assert torch.equal(flat, torch.full_like(flat, FAR))
    assert torch.equal(prior_variant("flat", _box(), S, level=1.0), torch.ones(1, S, S))


def test_every_variant_has_the_documented_shape_and_range():
    boxes = torch.tensor([[4.0, 6.0, 20.0, 30.0], [10.0, 8.0, 30.0, 32.0]])
    for name in PRIOR_VARIANTS:
        d = prior_variant(name, boxes, S)
        assert d.shape == (2, S, S) and d.dtype == torch.float32
        assert d.min().item() >= NEAR - 1e-6 and d.max().item() <= FAR + 1e-6


def test_variant_errors_are_clear():
    with pytest.raises(ValueError, match="unknown variant"):
        prior_variant("bumpy", _box(), S)
    with pytest.raises(ValueError, match="takes parameters"):
        prior_variant("weaker", _box(), S, asymmetry=0.2)
    with pytest.raises(ValueError, match="asymmetry"):
        prior_variant("asymmetric", _box(), S, asymmetry=1.0)
    with pytest.raises(ValueError, match="strength"):
        prior_variant("weaker", _box(), S, strength=0.0)
    with pytest.raises(ValueError, match="shift_frac"):
        prior_variant("shifted", _box(), S, shift_frac=(0.1,))
    with pytest.raises(ValueError, match="boxes"):
        prior_variant("flat", torch.zeros(2, 3), S)


def test_prior_boxes_sources():
    boxes = prior_boxes("centered", S, 3, width_frac=0.5, height_frac=0.25)
    assert boxes.shape == (3, 4)
    assert torch.equal(boxes[0], torch.tensor([10.0, 15.0, 30.0, 25.0]))
    assert torch.equal(boxes[2], boxes[0])
    masks = torch.zeros(2, S, S)
    masks[0, 12:25, 5:16] = 1  # rows 12..24, cols 5..15
    masks[1, 0:6, 30:41] = 1
    boxes = prior_boxes("mask", S, 2, masks=masks, raise_top_frac=0.5)
    assert torch.equal(boxes[0], torch.tensor([5.0, 6.0, 15.0, 24.0]))  # top raised by 12 / 2
    assert torch.equal(boxes[1], torch.tensor([30.0, 0.0, 40.0, 5.0]))  # clipped at the top


def test_prior_boxes_errors_are_clear():
    with pytest.raises(ValueError, match="needs masks"):
        prior_boxes("mask", S, 2)
    with pytest.raises(ValueError, match="source='mask'"):
        prior_boxes("centered", S, 2, masks=torch.ones(2, S, S))
    with pytest.raises(ValueError, match=r"masks must be \(2, 41, 41\)"):
        prior_boxes("mask", S, 2, masks=torch.ones(3, S, S))
    with pytest.raises(ValueError, match="unknown source"):
        prior_boxes("parsing", S, 2)
    with pytest.raises(ValueError, match="no foreground"):
        prior_boxes("mask", S, 1, masks=torch.zeros(1, S, S))
