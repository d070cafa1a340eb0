"""Datasets: the synthetic head benchmark (procedural heads with exact depth, normals, masks)."""

from __future__ import annotations

from .head_model import ALBEDO_PARAM_NAMES, SHAPE_PARAM_NAMES, canonical_albedo, canonical_shape
from .heads import HeadSample, load_heads, make_heads, render_heads, sample_heads

__all__ = [
    "ALBEDO_PARAM_NAMES",
    "SHAPE_PARAM_NAMES",
    "HeadSample",
    "canonical_albedo",
    "canonical_shape",
    "load_heads",
    "make_heads",
    "render_heads",
    "sample_heads",
]
