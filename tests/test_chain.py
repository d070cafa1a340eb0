"""The stage chain's description (gan2shape.method.chain): every params field a step could read is
accounted for, and each step's rerun key moves with exactly the fields that step reads."""

from __future__ import annotations

import dataclasses

import pytest

from gan2shape.config import MethodConfig, PriorConfig, RenderConfig, StepSchedule, load_params
from gan2shape.method.chain import NOT_READ, STEPS, step_fields, step_key
from gan2shape.method.reconstruct import stage_paths


def _keys(*overrides: str) -> dict[str, str]:
    params, _ = load_params("params.yaml", overrides)
    return {name: step_key(name, params.method, params.render) for name in STEPS}


def _changed(*overrides: str) -> set[str]:
    base, edited = _keys(), _keys(*overrides)
    return {name for name in STEPS if base[name] != edited[name]}


def test_every_field_is_read_by_a_step_or_named_as_read_by_none():
    fields = (
        {f"method.{f.name}" for f in dataclasses.fields(MethodConfig)}
        | {f"schedule.{f.name}" for f in dataclasses.fields(StepSchedule)}
        | {"render"}
    )
    read = {name for step in STEPS.values() for name in step.reads}
    assert read <= fields, f"reads of no such field: {read - fields}"
    assert set(NOT_READ) <= fields and not set(NOT_READ) & read
    assert fields - read - set(NOT_READ) == set(), "fields no step claims: add them to a step's reads or NOT_READ"


def test_step_fields_resolve_every_read():
    method, render = MethodConfig(), RenderConfig()
    for name, step in STEPS.items():
        values = step_fields(name, method, render)
        assert list(values) == list(step.reads)
    assert step_fields("prior", method, render)["method.prior"] == dataclasses.asdict(PriorConfig())
    assert step_fields("step3", method, render)["schedule.step3_iters"] == method.schedule.step3_iters
    with pytest.raises(KeyError, match="unknown step 'step4'"):
        step_fields("step4", method, render)


@pytest.mark.parametrize(
    "override, steps",
    [
        ("method.lam_view=3.0", {"step3"}),
        ("method.lam_perc=0.25", {"step1", "step3"}),
        ("method.prior.near=0.95", {"prior"}),
        ("method.view_scale=0.7", {"pseudo"}),
        ("method.lam_regular=0.5", {"invert"}),
        ("method.profiles.quick.step3_iters=[5, 5]", {"step3"}),
        ("method.profiles.quick.batch_size=3", {"pseudo", "invert", "step3"}),
        ("method.seed=4", set(STEPS)),
        ("render.fov_deg=12.0", {"prior", "step1", "pseudo", "step3"}),
        ("method.profiles.quick.stages=7", set()),  # the stage count: how many stages, not what one computes
    ],
)
def test_a_key_moves_with_exactly_the_fields_its_step_reads(override, steps):
    assert _changed(override) == steps


def test_a_pretrained_encoder_counts_by_its_content(tmp_path):
    enc = tmp_path / "encoder.h5"
    enc.write_bytes(b"one")
    first = _keys(f"method.encoder_init={enc}")["invert"]
    enc.write_bytes(b"two")
    assert _keys(f"method.encoder_init={enc}")["invert"] != first


def test_stage_paths_are_the_chain_outputs(tmp_path):
    assert stage_paths(tmp_path, 0) == {"shape": tmp_path / "stage0/shape.h5"}
    assert stage_paths(tmp_path, 3) == {
        name: tmp_path / f"stage3/{name}.h5" for name in ("albedo", "pseudo", "projected", "shape")
    }
