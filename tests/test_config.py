"""params.yaml parsing: defaults, overrides, and errors that name the offending key."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from gan2shape.config import (
    REFERENCE_PRESET,
    ConfigError,
    HeadsConfig,
    Params,
    load_params,
    params_digest,
    parse_section,
)

ROOT = Path(__file__).resolve().parents[1]


def test_project_params_parse_and_match_defaults():
    params, text = load_params(ROOT / "params.yaml")
    assert isinstance(params, Params)
    assert params.heads.view.yaw_deg == (-60.0, 60.0)
    assert params.render.fov_deg == 10.0
    assert len(params_digest(text)) == 16


def test_code_defaults_equal_params_yaml():
    """One set of defaults: what Params() holds is what the pipeline runs (params.yaml), presets included."""
    from_file, _ = load_params(ROOT / "params.yaml")
    for section in dataclasses.fields(Params):  # section by section first, so that a failure names it
        assert getattr(Params(), section.name) == getattr(from_file, section.name), section.name
    assert Params() == from_file
    assert load_params(None)[0] == from_file
    assert from_file.presets["reference"] == dict(REFERENCE_PRESET)
    # the reference preset applies without a params file too
    assert load_params(None, ["preset=reference"])[0] == load_params(ROOT / "params.yaml", ["preset=reference"])[0]


def test_every_deviation_from_the_reference_has_its_decision():
    """Each key whose default differs from the reference preset has a row in docs/decisions.md."""
    decisions = (ROOT / "docs" / "decisions.md").read_text()
    reference, _ = load_params(None, ["preset=reference"])
    deviations = [key for key in REFERENCE_PRESET if _get(Params(), key) != _get(reference, key)]
    assert "method.view_scale" in deviations and "project.w_plus" not in deviations
    for key in deviations:
        assert f"`{key}`" in decisions, f"{key} differs from the reference preset; add a line to docs/decisions.md"


def _get(params, dotted):
    for part in dotted.split("."):
        params = getattr(params, part)
    return params


def test_override_changes_one_key(tmp_path):
    params, text = load_params(ROOT / "params.yaml", ["heads.n_train=12", "heads.view.yaw_deg=[-10, 10]"])
    assert params.heads.n_train == 12 and params.heads.view.yaw_deg == (-10.0, 10.0)
    assert "n_train: 12" in text


@pytest.mark.parametrize(
    "override, key, words",
    [
        ("heads.n_trian=3", "heads.n_trian", "did you mean 'n_train'"),
        ("heads.image_size=60", "heads.image_size", "power of two"),
        ("heads.view.yaw_deg=[0, 100]", "heads.view.yaw_deg", "low <= high"),
        ("heads.view.yaw_deg=[1, 2, 3]", "heads.view.yaw_deg", "list of 2"),
        ("render.fov_deg=abc", "render.fov_deg", "expected a number"),
        ("heads.seed=1.5", "heads.seed", "expected an integer"),
        ("render.max_depth=0.5", "render.max_depth", "must be > min_depth"),
        ("evaluate.baselines=[foo]", "evaluate.baselines", "unknown baseline"),
        ("nosection.key=1", "nosection", "unknown key"),
        ("method.lam_view_joint=-1", "method.lam_view_joint", "must be >= 0"),
        ("method.lam_smooth_joint=-1", "method.lam_smooth_joint", "must be null (= lam_smooth) or >= 0"),
        ("method.offset=tail", "method.offset", "mapping"),
        ("project.latent_prior=-1", "project.latent_prior", "must be >= 0"),
        ("project.layer_tie=-1", "project.layer_tie", "must be >= 0"),
        ("pretrain_encoder.mix_range=[0.5, 0.1]", "pretrain_encoder.mix_range", "lo <= hi"),
        ("pretrain_encoder.lam_image=-1", "pretrain_encoder.lam_latent", "must be >= 0"),
    ],
)
def test_bad_values_name_their_key(override, key, words):
    with pytest.raises(ConfigError) as info:
        load_params(ROOT / "params.yaml", [override])
    assert info.value.key == key
    assert words in str(info.value)


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_params(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("heads: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_params(bad)
    bad.write_text("- a list\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_params(bad)


def test_parse_section_optional_and_nested():
    cfg = parse_section(HeadsConfig, {"background_depth": None, "light": {"ambient": [0.1, 0.2]}})
    assert cfg.background_depth is None and cfg.light.ambient == (0.1, 0.2)
    with pytest.raises(ConfigError) as info:
        parse_section(HeadsConfig, {"light": {"ambient": "bright"}}, "heads")
    assert info.value.key == "heads.light.ambient"


def test_smooth_weight_follows_the_mode():
    params, _ = load_params(ROOT / "params.yaml", ["method.lam_smooth=0.02", "method.lam_smooth_joint=null"])
    assert params.method.smooth_weight == 0.02
    params, _ = load_params(
        ROOT / "params.yaml", ["method.lam_smooth=0.02", "method.lam_smooth_joint=null", "method.mode=joint"]
    )
    assert params.method.smooth_weight == 0.02  # null: the instance weight in both modes
    params, _ = load_params(
        ROOT / "params.yaml", ["method.lam_smooth=0.02", "method.lam_smooth_joint=0.3", "method.mode=joint"]
    )
    assert params.method.smooth_weight == 0.3
    params, _ = load_params(ROOT / "params.yaml", ["method.lam_smooth=0.02", "method.lam_smooth_joint=0.3"])
    assert params.method.smooth_weight == 0.02


def test_view_anchor_weight_follows_the_mode():
    params, _ = load_params(ROOT / "params.yaml", ["method.lam_view=3", "method.lam_view_joint=0.5"])
    assert params.method.view_anchor == 3
    params, _ = load_params(
        ROOT / "params.yaml", ["method.lam_view=3", "method.lam_view_joint=0.5", "method.mode=joint"]
    )
    assert params.method.view_anchor == 0.5


def test_presets_apply_their_keys_and_a_set_still_wins(tmp_path):
    params, text = load_params(ROOT / "params.yaml", ["preset=reference"])
    ref = yaml_load(ROOT / "params.yaml")["presets"]["reference"]
    assert params.method.view_scale == ref["method.view_scale"] and params.project.w_plus is ref["project.w_plus"]
    assert params.method.prior.near == ref["method.prior.near"] and "preset: reference" in text
    again, _ = load_params(ROOT / "params.yaml", ["preset=reference", "method.view_scale=0.5"])
    assert again.method.view_scale == 0.5 and again.method.prior.near == ref["method.prior.near"]
    plain, _ = load_params(ROOT / "params.yaml")
    assert plain.preset is None
    with pytest.raises(ConfigError, match="unknown preset 'refrence'") as info:
        load_params(ROOT / "params.yaml", ["preset=refrence"])
    assert info.value.key == "preset"
    bad = tmp_path / "p.yaml"
    bad.write_text("preset: x\npresets:\n  x:\n    method.view_scael: 1.0\n")
    with pytest.raises(ConfigError, match="did you mean 'view_scale'"):
        load_params(bad)


def yaml_load(path):
    import yaml

    return yaml.safe_load(Path(path).read_text())


def test_workflow_shards_and_cluster_resources():
    params, _ = load_params(ROOT / "params.yaml")
    wf = params.workflow
    assert wf.shard_size is None  # one shard of all instances
    assert (wf.resources["default"].runtime, wf.resources["default"].mem_mb) == (60, 16000)
    assert wf.resources["project"].runtime == 240 and wf.resources["project"].mem_mb is None  # default's
    params, _ = load_params(ROOT / "params.yaml", ["workflow.shard_size=8", "workflow.resources.step3={runtime: 90}"])
    assert params.workflow.shard_size == 8 and params.workflow.resources["step3"].runtime == 90
    for override, key, words in (
        ("workflow.shard_size=0", "workflow.shard_size", "must be null (one shard of all instances) or >= 1"),
        ("workflow.resources.step3={runtime: 0}", "workflow.resources.step3.runtime", "must be null or >= 1"),
        ("workflow.resources.step3={mem: 9}", "workflow.resources.step3.mem", "did you mean 'mem_mb'"),
    ):
        with pytest.raises(ConfigError) as info:
            load_params(ROOT / "params.yaml", [override])
        assert info.value.key == key and words in str(info.value)
