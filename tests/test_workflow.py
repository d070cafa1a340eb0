"""The Snakemake workflow, run for real: `python -m snakemake --cores 2` in a temp copy of Snakefile,
workflow/ and a tiny params.yaml, with a tiny StyleGAN2 (32 px) built and saved here by the
project's own code, one stage of a few iterations per step, 2 instances.

Checks:
- end to end: the default target builds the benchmark, its baselines and the exports of every
  instance (depth, normal, mesh preview, rotation/relighting GIFs); `snakemake --report` writes
  an HTML report holding those figures;
- user images (workflow.images): a folder of images is imported, projected into the GAN and
  sampled as instances named after the files, then reconstructed; an HDF5 artifact is projected
  directly;
- params dependencies (dry runs): editing evaluate.erode_pixels reruns only the baseline
  evaluation, editing method.lam_perc reruns step 1 and what follows it (not the prior, not the
  sampling, not the benchmark), editing method.lam_view only step 3 and the export (each method
  rule's deps are the library's per-step keys, gan2shape.method.chain, equal to those its
  artifacts store); a workflow.profile with one more stage and the same iterations adds that stage and
  keeps the finished one, and every method rule gets --set method.profile=<it>;
- kill -9 mid-pipeline: the killed step leaves no file at its final path, every artifact there
  reads back complete, the same command (after `snakemake --unlock`) finishes without redoing
  finished steps, and every dataset and network of every artifact equals the uninterrupted run's
  exactly (same seed, same thread count: each step is a fresh process with seeded generators);
- bad inputs fail early, naming the file or key and what to do, and touch no finished artifact:
  a missing checkpoint, an image of the wrong size (workflow.images), a truncated intermediate
  artifact, an unknown params key;
- shards and GPUs (docs/cluster.md): with workflow.shard_size each shard is an independent chain
  of jobs asking for one GPU, with the runtime and memory of workflow.resources (dry run on
  cuda); `--resources gpu=2` runs two gpu=1 jobs at once on different GPU locks, gpu=1 one at a
  time;
- SLURM (slow; skipped with the reason where no cluster can be started): a single-node cluster
  (tests/slurm_cluster.py) runs the whole workflow through the executor with profiles/slurm, is
  killed mid-step and resumed, and every artifact and exported file equals the local run's.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from gan2shape.artifacts import read_artifact

pytestmark = [pytest.mark.workflow, pytest.mark.slow]  # minutes: the real Snakemake workflow

ROOT = Path(__file__).resolve().parents[1]
S = 32
N = 2
RUN = Path("results/default")
SHARD = RUN / "shard0"  # one shard (workflow.shard_size null): the method's artifacts of every instance
TINY_PROFILE = {
    "stages": 1,
    "prior_iters": 1,
    "step1_iters": [1, 1],
    "step2_iters": [1, 1],
    "step3_iters": [1, 1],
    "collect_batches": 1,
    "batch_size": 2,
}
ARTIFACTS = [
    "instances.h5",
    "stage0/shape.h5",
    "stage1/albedo.h5",
    "stage1/pseudo.h5",
    "stage1/projected.h5",
    "stage1/shape.h5",
]
FIGURES = ["depth.png", "normal.png", "mesh_preview.png", "rotate.gif", "relight.gif", "summary.png"]


def _env() -> dict[str, str]:
    """The package of this tree for the rules' `gan2shape` commands (the entry point of this Python's
    environment); no GPU pinning. Torch's thread count is each rule's --threads (capped at --cores 2),
    the same in every run."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env.pop("GAN2SHAPE_GPU", None)
    return env


def _tiny_params(gan: str) -> dict:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["heads"].update(image_size=S, n_train=8, n_test=4, batch_size=8)
    params["method"].update(checkpoint=gan, image_size=S, f1_d=1, perceptual_blocks=2, nf=16, enc_nf=16)
    params["method"]["profiles"]["tiny"] = dict(TINY_PROFILE)
    params["project"].update(steps=2, batch_size=2, mean_latent_samples=100, feature_blocks=2)
    params["workflow"].update(instances=N, seed=0, device="cpu", profile="tiny", images=None, shard_size=None)
    params["workflow"]["keep_intermediate"] = True  # the tests read every artifact (one test: false)
    # what a cluster job asks for: small enough for any test machine (the SLURM test checks them)
    params["workflow"]["resources"] = {
        "default": {"runtime": 10, "mem_mb": 1000},
        "make_heads": {"runtime": 5, "mem_mb": 900},
    }
    return params


def _write_params(workdir: Path, params: dict) -> None:
    (workdir / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    """A workdir with Snakefile, workflow/, the tiny GAN and params.yaml; copied per test."""
    from gan2shape.config import GanConfig
    from gan2shape.stylegan2.checkpoint import save_checkpoint
    from gan2shape.stylegan2.train import build_networks

    work = tmp_path_factory.mktemp("template")
    shutil.copy2(ROOT / "Snakefile", work / "Snakefile")
    shutil.copytree(ROOT / "workflow", work / "workflow")
    shutil.copytree(ROOT / "profiles", work / "profiles")  # the workflow profile, as in a clone
    gan = GanConfig(size=S, style_dim=32, n_mlp=2, channel_multiplier=1, channel_max=32, seed=5)
    _, d, g_ema = build_networks(gan)
    (work / "data").mkdir()
    save_checkpoint(work / "data" / "tiny.pt", g_ema, d)
    _write_params(work, _tiny_params("data/tiny.pt"))
    return work


def _copy(src: Path, dest: Path) -> Path:
    shutil.copytree(src, dest, symlinks=True)
    return dest


def snakemake(
    workdir: Path, *args: str, check: bool = True, timeout: float = 240, cores: bool = True
) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "snakemake", *(["--cores", "2"] if cores else []), *args]
    res = subprocess.run(cmd, cwd=workdir, env=_env(), capture_output=True, text=True, timeout=timeout)
    if check and res.returncode != 0:
        logs = "".join(f"\n--- {p}\n{p.read_text()[-2000:]}" for p in sorted(workdir.glob("results/**/logs/*.log")))
        raise AssertionError(
            f"{' '.join(cmd)} failed ({res.returncode}):\n{res.stdout[-4000:]}\n{res.stderr[-6000:]}{logs}"
        )
    return res


@pytest.fixture(scope="module")
def finished(template, tmp_path_factory) -> Path:
    """An uninterrupted run of the default target (the reference of the other tests); what it showed
    on the terminal is in ../terminal.txt."""
    work = _copy(template, tmp_path_factory.mktemp("run") / "work")
    res = snakemake(work)
    (work.parent / "terminal.txt").write_text(res.stdout + res.stderr)
    return work


def test_end_to_end_exports_and_report(finished):
    export = finished / RUN / "export"
    ids = sorted(p.name for p in export.iterdir() if p.is_dir())
    assert ids == [f"s0_{i:05d}" for i in range(N)]
    for instance in ids:
        for name in FIGURES:
            assert (export / instance / name).stat().st_size > 0, f"{instance}/{name} missing"
    assert (finished / f"results/heads{S}/contact_sheet.png").exists()
    assert (finished / "results/baselines/table.md").exists()
    with read_artifact(finished / SHARD / "stage1/shape.h5", "shape") as art:
        assert art.ids == ids and art.shape("canon_depth") == (N, S, S)
        assert art.attrs["stage"] == 1
    report = finished / "report.html"
    snakemake(finished, "--report", str(report), cores=False)  # as docs/workflow.md says: no --cores needed
    html = report.read_text(errors="replace")
    for instance in ids:
        assert instance in html
    for figure in ("mesh_preview", "depth", "normal", "rotate", "relight"):
        assert figure in html


def test_without_keep_intermediate_results_hold_what_users_read(template, finished, tmp_path):
    # workflow.keep_intermediate false (the default): the method's artifacts and the heads' train
    # split are deleted once the jobs that read them are done; the exports are the same, byte for
    # byte, as those of a run that keeps everything, and the finished run is up to date
    work = _copy(template, tmp_path / "work")
    params = yaml.safe_load((work / "params.yaml").read_text())
    params["workflow"]["keep_intermediate"] = False
    _write_params(work, params)
    snakemake(work)
    for name in ARTIFACTS[1:]:
        assert not (work / SHARD / name).exists(), name
    assert not (work / f"results/heads{S}/train.h5").exists()
    kept = ["instances.h5", "shard0/instances.h5", "export"]
    assert all((work / RUN / name).exists() for name in kept)
    assert (work / f"results/heads{S}/test.h5").exists() and (work / "results/baselines/table.md").exists()
    exported = [p.relative_to(finished / RUN) for p in (finished / RUN / "export").rglob("*") if p.is_file()]
    assert len(exported) > len(FIGURES) * N
    for rel in exported:
        assert (work / RUN / rel).read_bytes() == (finished / RUN / rel).read_bytes(), rel
    assert _jobs(snakemake(work, "-n")) == {}
    size = sum(p.stat().st_size for p in (work / "results").rglob("*") if p.is_file())
    assert size < sum(p.stat().st_size for p in (finished / "results").rglob("*") if p.is_file()) / 3


def test_the_terminal_shows_one_line_per_phase_of_each_rule(finished):
    """Each rule's log holds everything; the terminal gets its phases, named by subcommand."""
    terminal = (finished.parent / "terminal.txt").read_text()
    assert "Using workflow specific profile profiles/default" in terminal
    for line in (
        "gan2shape make-heads: heads train: 8 img",
        "gan2shape prior: prior: 1 iter",
        "gan2shape step1: stage 1 step 1: done, 1 iter in ",
        "gan2shape invert: stage 1 step 2: 1 iter",
        "gan2shape step3: stage 1 step 3: done, 1 iter in ",
        f"gan2shape export: export: {N} instance",
    ):
        assert line in terminal, line
    log = (finished / SHARD / "logs/step1_stage1.log").read_text()
    assert "gan2shape.progress INFO: stage 1 step 1: 1 iter" in log and '"out": ' in log  # phases and the result
    assert "Traceback" not in terminal


def test_workflow_profile_is_checked_against_method_profiles():
    from gan2shape.config import ConfigError, load_params

    params, _ = load_params(ROOT / "params.yaml", ["workflow.profile=bench"])
    assert params.workflow.profile == "bench" and params.workflow.images is None
    with pytest.raises(
        ConfigError,
        match=r"workflow\.profile: unknown profile 'fast'; use auto or one of method\.profiles: \[.*'quick'",
    ):
        load_params(ROOT / "params.yaml", ["workflow.profile=fast"])
    with pytest.raises(ConfigError, match=r"workflow\.images"):
        load_params(ROOT / "params.yaml", ["workflow.images=''"])


def _jobs(res: subprocess.CompletedProcess) -> dict[str, int]:
    """Rule -> job count from a dry run's 'Job stats' table."""
    text = res.stdout + res.stderr
    if "Nothing to be done" in text:
        return {}
    table = text.split("Job stats:", 1)[1]
    jobs = {}
    for line in table.splitlines()[3:]:
        parts = line.split()
        if len(parts) != 2 or parts[0] == "total":
            break
        jobs[parts[0]] = int(parts[1])
    return jobs


def test_params_edits_rerun_exactly_the_steps_that_use_them(finished, tmp_path):
    work = _copy(finished, tmp_path / "work")
    params = yaml.safe_load((work / "params.yaml").read_text())
    assert _jobs(snakemake(work, "-n")) == {}

    edited = yaml.safe_load(yaml.safe_dump(params))
    edited["evaluate"]["erode_pixels"] = 2
    _write_params(work, edited)
    res = snakemake(work, "-n")
    assert set(_jobs(res)) == {"evaluate_baselines", "all"}, res.stdout

    # a method step reruns when a field it reads changes (gan2shape.method.chain), and so do the
    # steps after it; lam_perc is read by steps 1 and 3, not by the prior
    edited = yaml.safe_load(yaml.safe_dump(params))
    edited["method"]["lam_perc"] = 0.25
    _write_params(work, edited)
    jobs = _jobs(snakemake(work, "-n"))
    assert set(jobs) == {"step1", "pseudo", "invert", "step3", "export", "collect_exports", "all"}

    # another profile with one more stage and the same iterations: the stage count decides the
    # DAG, the finished stage is kept, and the method rules get the profile's name
    edited = yaml.safe_load(yaml.safe_dump(params))
    edited["method"]["profiles"]["two"] = {**TINY_PROFILE, "stages": 2}
    edited["workflow"]["profile"] = "two"
    _write_params(work, edited)
    res = snakemake(work, "-n", "-p", "--forcerun", "prior")
    jobs = _jobs(res)
    assert jobs == {
        "prior": 1,
        "step1": 2,
        "pseudo": 2,
        "invert": 2,
        "step3": 2,
        "export": 1,
        "collect_exports": 1,
        "all": 1,
    }
    jobs = _jobs(snakemake(work, "-n"))
    assert jobs == {"step1": 1, "pseudo": 1, "invert": 1, "step3": 1, "export": 1, "collect_exports": 1, "all": 1}
    calls = re.findall(r"Shell command: gan2shape .* (prior|step1|pseudo|invert|step3) (.*)", res.stdout + res.stderr)
    assert sorted({step for step, _ in calls}) == ["invert", "prior", "pseudo", "step1", "step3"]
    assert all("--set=method.profile=two" in line for _, line in calls)

    # a preset reruns the method and reaches every method call as --set overrides of its keys, except
    # a key that --config sets too
    (work / "over.yaml").write_text("preset: reference\nmethod: {view_scale: 0.5}\n")
    res = snakemake(work, "-n", "-p", "--configfile", "over.yaml")
    assert {"prior", "step1", "pseudo", "invert", "step3"} <= set(_jobs(res))
    calls = re.findall(r"Shell command: gan2shape .* (?:prior|step1|pseudo|invert|step3) (.*)", res.stdout + res.stderr)
    assert calls and all(
        "--set=method.view_origin=canonical" in line
        and "--set=method.view_scale=0.5" in line
        and "view_scale=1.2" not in line
        for line in calls
    )


def test_lam_view_reruns_only_step3_and_what_depends_on_it(finished, tmp_path):
    """method.lam_view is read by step 3 alone: Snakemake reruns step 3 and the export of its result,
    and its rerun keys are the ones the finished run's artifacts store (the library's resume keys)."""
    from gan2shape.config import load_params
    from gan2shape.method.chain import STEPS, step_key

    work = _copy(finished, tmp_path / "work")
    params = yaml.safe_load((work / "params.yaml").read_text())
    stored = {}
    for step in STEPS.values():
        with read_artifact(work / SHARD / step.path(1)) as art:
            stored[step.name] = art.attrs["method_key"]
    typed, _ = load_params(work / "params.yaml", ["method.profile=tiny"])
    assert stored == {name: step_key(name, typed.method, typed.render) for name in STEPS}

    edited = yaml.safe_load(yaml.safe_dump(params))
    edited["method"]["lam_view"] = params["method"]["lam_view"] + 1.0
    _write_params(work, edited)
    assert _jobs(snakemake(work, "-n")) == {"step3": 1, "export": 1, "collect_exports": 1, "all": 1}
    snakemake(work)
    assert _jobs(snakemake(work, "-n")) == {}
    with read_artifact(work / SHARD / "stage1/shape.h5") as art:
        assert art.attrs["method_key"] != stored["step3"]
    for name in ("prior", "step1", "pseudo", "invert"):  # untouched files, same keys
        with read_artifact(work / SHARD / STEPS[name].path(1)) as art:
            assert art.attrs["method_key"] == stored[name]


def test_user_images_are_imported_projected_and_reconstructed(finished, tmp_path):
    from PIL import Image

    work = _copy(finished, tmp_path / "work")
    folder = work / "faces"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in ("b.png", "a face.jpg", "c.png"):
        Image.fromarray(rng.integers(0, 256, (S, S, 3), dtype=np.uint8)).save(folder / name)
    params = yaml.safe_load((work / "params.yaml").read_text())
    params["workflow"]["images"] = "faces"
    _write_params(work, params)
    images_run = Path("results/images")
    # the real import, projection and sampling; the method steps after them as a dry run
    snakemake(work, str(images_run / "instances.h5"))
    with read_artifact(work / images_run / "instances.h5", "instances") as art:
        assert art.ids == ["a_face", "b"]  # the first workflow.instances files by name
        assert art.attrs["source"] == str(images_run / "latents.h5")
    jobs = _jobs(snakemake(work, "-n"))
    assert jobs == {
        "split_instances": 1,
        "prior": 1,
        "step1": 1,
        "pseudo": 1,
        "invert": 1,
        "step3": 1,
        "export": 1,
        "collect_exports": 1,
        "all": 1,
    }
    # an HDF5 image artifact is projected as it is (no import step)
    params["workflow"]["images"] = f"results/heads{S}/test.h5"
    _write_params(work, params)
    res = snakemake(work, "-n", "-p", "--forcerun", "project")
    assert "import_images" not in _jobs(res) and f"--images results/heads{S}/test.h5" in res.stdout + res.stderr


def _snapshot(workdir: Path) -> dict[str, tuple[int, str]]:
    """Every file under results/: (mtime_ns, sha256)."""
    out = {}
    for path in sorted((workdir / "results").rglob("*")):
        if path.is_file() and "logs" not in path.parts and "benchmarks" not in path.parts:
            out[str(path.relative_to(workdir))] = (
                path.stat().st_mtime_ns,
                hashlib.sha256(path.read_bytes()).hexdigest(),
            )
    return out


def _same_artifact(a: Path, b: Path) -> None:
    with read_artifact(a) as x, read_artifact(b) as y:
        assert x.kind == y.kind and x.ids == y.ids and x.names == y.names and x.network_names == y.network_names
        for name in x.names:
            assert np.array_equal(x.array(name), y.array(name)), f"{a}: dataset {name!r} differs"
        for net in x.network_names:
            wa, wb = x.network(net), y.network(net)
            assert wa.keys() == wb.keys()
            for key in wa:
                assert np.array_equal(wa[key].numpy(), wb[key].numpy()), f"{a}: network {net}.{key} differs"


def _interrupted_state(work: Path, who: str) -> dict[str, int]:
    """After a run was stopped during step 2b: no partial file at a final path, the finished
    artifacts complete and valid; returns their modification times (name -> ns)."""
    assert not (work / SHARD / "stage1/projected.h5").exists(), f"{who} left a file at its final path"
    done = [name for name in ARTIFACTS if (work / SHARD / name).exists()]
    assert "stage1/albedo.h5" in done and "stage1/shape.h5" not in done
    for name in done:
        read_artifact(work / SHARD / name).close()  # complete and valid
    return {name: (work / SHARD / name).stat().st_mtime_ns for name in done}


def test_kill_mid_step_then_resume_gives_the_uninterrupted_result(finished, tmp_path):
    # stage 1 and the exports from scratch (sampling and the prior are shared with the reference)
    work = _copy(finished, tmp_path / "work")
    for folder in (SHARD / "stage1", SHARD / "export", SHARD / "logs", RUN / "export"):
        shutil.rmtree(work / folder)
    target = str(RUN / "export")
    cmd = [sys.executable, "-m", "snakemake", "--cores", "2", target]
    proc = subprocess.Popen(
        cmd, cwd=work, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    albedo, invert_log = work / SHARD / "stage1/albedo.h5", work / SHARD / "logs/invert_stage1.log"
    deadline = time.monotonic() + 180
    try:
        # kill once step 1 is done and the inversion is training (its log shows the loaded GAN)
        while not (albedo.exists() and invert_log.exists() and "perceptual loss" in invert_log.read_text()):
            assert proc.poll() is None, "the workflow ended before it could be killed"
            assert time.monotonic() < deadline, "the workflow did not reach step 2b in time"
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    before = _interrupted_state(work, "the killed step")

    snakemake(work, "--unlock")
    snakemake(work, target)
    for name in before:  # finished steps are not redone
        assert (work / SHARD / name).stat().st_mtime_ns == before[name], name
    for name in ARTIFACTS:
        _same_artifact(work / SHARD / name, finished / SHARD / name)
    from PIL import Image

    for instance in sorted(p.name for p in (finished / RUN / "export").iterdir() if p.is_dir()):
        a = np.asarray(Image.open(work / RUN / "export" / instance / "depth.png"))
        b = np.asarray(Image.open(finished / RUN / "export" / instance / "depth.png"))
        assert np.array_equal(a, b)


def _fails(workdir: Path, *args: str) -> str:
    before = _snapshot(workdir)
    res = snakemake(workdir, *args, check=False)
    assert res.returncode != 0, res.stdout[-2000:]
    text = res.stdout + res.stderr
    logs = "".join(p.read_text() for p in workdir.glob("results/**/logs/*.log"))
    return text + "\n--- logs ---\n" + logs, before


def test_bad_inputs_fail_early_and_touch_nothing(finished, tmp_path):
    work = _copy(finished, tmp_path / "work")
    good = yaml.safe_load((work / "params.yaml").read_text())

    # a missing checkpoint: fails while building the DAG, naming the key, the file and the fix
    bad = yaml.safe_load(yaml.safe_dump(good))
    bad["method"]["checkpoint"] = "data/missing.pt"
    _write_params(work, bad)
    text, before = _fails(work)
    assert "method.checkpoint" in text and "data/missing.pt" in text and "does not exist" in text
    assert _snapshot(work) == before

    # an unknown params key: fails at parse time with the key and a did-you-mean
    bad = yaml.safe_load(yaml.safe_dump(good))
    bad["method"]["lam_prec"] = 0.5
    _write_params(work, bad)
    text, before = _fails(work)
    assert "method.lam_prec" in text and "did you mean 'lam_perc'" in text
    assert _snapshot(work) == before

    # an image of the wrong size among the user's images: the import step names it
    from PIL import Image

    folder = work / "my_images"
    folder.mkdir()
    Image.new("RGB", (S, S), (200, 120, 90)).save(folder / "a.png")
    Image.new("RGB", (S + 8, S), (90, 120, 200)).save(folder / "b_wide.png")
    bad = yaml.safe_load(yaml.safe_dump(good))
    bad["workflow"]["images"] = "my_images"
    _write_params(work, bad)
    text, before = _fails(work)
    assert "b_wide.png" in text and f"{S + 8}x{S}" in text and f"expected {S}x{S}" in text
    assert "resize" in text
    assert _snapshot(work) == before
    assert not (work / "results/images/images.h5").exists()
    _write_params(work, good)

    # a truncated intermediate artifact: the step reading it fails naming it; only that step's
    # own (stale) output is gone, removed by snakemake before the job started
    albedo = work / SHARD / "stage1/albedo.h5"
    albedo.write_bytes(albedo.read_bytes()[: albedo.stat().st_size // 3])
    text, before = _fails(work, "--forcerun", "pseudo")
    assert "stage1/albedo.h5" in text and "truncated" in text and "rerun" in text
    terminal = text[: text.index("--- logs ---")]  # the failed rule's error and its log, on the terminal
    assert "gan2shape pseudo: Error: " in terminal and "truncated" in terminal
    assert "logs/pseudo_stage1.log" in terminal and "Traceback" not in terminal
    after = _snapshot(work)
    assert str(SHARD / "stage1/pseudo.h5") not in after
    del before[str(SHARD / "stage1/pseudo.h5")]
    assert after == before


# ----- several GPUs of one host, and a SLURM cluster (docs/cluster.md) ------------------------------


def _dry_run_jobs(res: subprocess.CompletedProcess) -> list[dict[str, str]]:
    """The job blocks of a dry run: {'rule', 'local', 'input', 'output', 'wildcards', 'threads', 'resources'}."""
    jobs = []
    for line in (res.stdout + res.stderr).splitlines():
        head = re.match(r"^(local)?rule (\w+):$", line)
        if head:
            jobs.append({"rule": head.group(2), "local": bool(head.group(1))})
        elif jobs and re.match(r"^    (input|output|wildcards|threads|resources): ", line):
            key, value = line.strip().split(": ", 1)
            jobs[-1][key] = value
    return jobs


def test_shards_are_independent_chains_that_ask_for_a_gpu_each(template, tmp_path):
    # two shards of one instance on CUDA (a dry run: no GPU needed): every method step runs once per
    # shard, touches only its shard's folder and asks for one GPU and 4 threads, so
    # `--cores 32 --resources gpu=2` can run the two shards at once
    work = _copy(template, tmp_path / "work")
    (work / "cuda.yaml").write_text("workflow: {device: cuda, shard_size: 1}\n")
    res = snakemake(work, "-n", "--cores", "32", "--resources", "gpu=2", "--configfile", "cuda.yaml", cores=False)
    jobs = _dry_run_jobs(res)
    chain = {"split_instances", "prior", "step1", "pseudo", "invert", "step3", "export"}
    by_shard: dict[str, set[str]] = {}
    for job in jobs:
        shard = re.search(r"shard=(\d+)", job.get("wildcards", ""))
        if shard is None:
            continue
        by_shard.setdefault(shard.group(1), set()).add(job["rule"])
        for path in re.split(r",\s*", job.get("input", "") + ", " + job["output"]):
            assert "/shard" not in path or f"/shard{shard.group(1)}/" in path, (job["rule"], path)
        resources = dict(kv.split("=", 1) for kv in job["resources"].split(", "))
        if job["rule"] == "split_instances":  # a file split (a local rule on a cluster)
            continue
        # one GPU each; runtime and memory from workflow.resources (default entry of the tiny params)
        assert (resources["gpu"], job["threads"]) == ("1", "4"), job
        assert (resources["runtime"], resources["mem_mb"]) == ("10", "1000"), job
    assert by_shard == {"0": chain, "1": chain}
    collect = [j for j in jobs if j["rule"] == "collect_exports"]
    assert len(collect) == 1
    assert collect[0]["input"] == f"{SHARD.parent}/shard0/export, {SHARD.parent}/shard1/export"
    heads = next(j for j in jobs if j["rule"] == "make_heads")  # its own workflow.resources entry, no GPU
    assert "gpu=0" in heads["resources"] and "runtime=5" in heads["resources"] and "mem_mb=900" in heads["resources"]

    # a resources entry naming no rule fails before any job, with the rule names
    (work / "typo.yaml").write_text("workflow: {resources: {step_3: {runtime: 5}}}\n")
    res = snakemake(work, "-n", "--configfile", "typo.yaml", check=False, cores=False)
    assert res.returncode != 0
    assert "workflow.resources.step_3: no rule of that name; did you mean 'step3'?" in res.stdout + res.stderr


def test_device_auto_stops_a_cluster_run(template, tmp_path):
    # a cluster executor (it needs --jobs; a dry run submits nothing): auto would pick the GPU and the
    # profile on the submit host, so the run stops before any job, saying what to set
    import importlib.util

    if importlib.util.find_spec("snakemake_executor_plugin_slurm") is None:
        pytest.skip("snakemake-executor-plugin-slurm is not installed: pip install -e '.[slurm]'")
    work = _copy(template, tmp_path / "work")
    (work / "auto.yaml").write_text("workflow: {device: auto}\n")
    res = snakemake(
        work, "-n", "--executor", "slurm", "--jobs", "4", "--configfile", "auto.yaml", check=False, cores=False
    )
    text = res.stdout + res.stderr
    assert res.returncode != 0 and "workflow.device is auto" in text and "set workflow.device to cuda" in text
    res = snakemake(work, "-n", "--executor", "slurm", "--jobs", "4", cores=False)  # device cpu: fine
    assert "Job stats" in res.stdout + res.stderr


# Two jobs of one rule that ask for one GPU each: each claims a GPU lock with the CLI's claim_gpu
# (gan2shape.device, as `--device auto|cuda` does on a machine with several GPUs) from 2 GPUs and
# writes the index and its start and end time; with wait=1 it first waits (up to 60 s) until the
# other job holds a lock too.
_GPU_SNAKEFILE = """
rule all:
    input: expand("job{i}.txt", i=range(2))

rule claim:
    output: "job{i}.txt"
    resources: gpu=1
    shell: "PYTHON claim.py {output} LOCKS {config[wait]}"
"""
_CLAIM = """
import glob, sys, time
from gan2shape.device import claim_gpu
start = time.time()
index = claim_gpu(2, sys.argv[2])
open(sys.argv[1] + ".held", "w").close()
while sys.argv[3] == "1" and len(glob.glob("*.held")) < 2 and time.time() < start + 60:
    time.sleep(0.05)
time.sleep(0.5)
open(sys.argv[1], "w").write(f"{index} {start} {time.time()}")
"""


def test_gpu_resource_runs_jobs_side_by_side_on_different_gpu_locks(tmp_path):
    import shlex

    def run(gpus: int, wait: int) -> list[tuple[int, float, float]]:
        work = tmp_path / f"gpu{gpus}"
        work.mkdir()
        (work / "claim.py").write_text(_CLAIM)
        (work / "Snakefile").write_text(
            _GPU_SNAKEFILE.replace("PYTHON", shlex.quote(sys.executable)).replace(
                "LOCKS", shlex.quote(str(tmp_path / f"locks{gpus}"))
            )
        )
        res = subprocess.run(
            [
                sys.executable,
                "-m",
                "snakemake",
                "--cores",
                "4",
                "--resources",
                f"gpu={gpus}",
                "--config",
                f"wait={wait}",
            ],
            check=False,
            cwd=work,
            env=_env(),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert res.returncode == 0, res.stderr[-3000:]
        rows = [(work / f"job{i}.txt").read_text().split() for i in range(2)]
        return [(int(r[0]), float(r[1]), float(r[2])) for r in rows]

    (a, a0, a1), (b, b0, b1) = run(gpus=2, wait=1)
    assert {a, b} == {0, 1}, "two jobs at once hold different GPUs"
    assert a0 < b1 and b0 < a1, "--resources gpu=2 ran the two jobs at once"
    (a, a0, a1), (b, b0, b1) = run(gpus=1, wait=0)
    assert a1 <= b0 or b1 <= a0, "--resources gpu=1 runs one job at a time"
    assert a == b == 0, "a finished job frees its GPU for the next"


def _slurm_available() -> str | None:
    import importlib.util

    from slurm_cluster import unavailable_reason

    if importlib.util.find_spec("snakemake_executor_plugin_slurm") is None:
        return "snakemake-executor-plugin-slurm is not installed: pip install -e '.[slurm]'"
    return unavailable_reason()


@pytest.fixture(scope="module")
def slurm():
    """A single-node SLURM cluster (tests/slurm_cluster.py), stopped after this module's tests."""
    from slurm_cluster import SlurmCluster, SlurmStartError

    reason = _slurm_available()
    if reason:
        pytest.skip(f"no SLURM cluster here: {reason}")
    cluster = SlurmCluster()
    try:
        cluster.start()
    except SlurmStartError as exc:
        cluster.stop()
        pytest.skip(f"SLURM could not be started on this machine: {exc}")
    yield cluster
    cluster.stop()


# The shipped profile, plus what this test cluster needs: no accounting database (job states from
# squeue) and status checks every second instead of after 40 s.
SLURM_ARGS = [
    "--workflow-profile",
    "profiles/slurm",
    "--slurm-status-command",
    "squeue",
    "--slurm-init-seconds-before-status-checks",
    "1",
]


@pytest.mark.slow
def test_slurm_run_killed_and_resumed_equals_the_local_run(template, finished, slurm, tmp_path):
    # the whole workflow through the SLURM executor (sbatch, a job per step), killed while step 2b
    # trains (the controller SIGKILLed, the cluster job cancelled), then resumed with the same command
    work = _copy(template, tmp_path / "work")
    cmd = [sys.executable, "-m", "snakemake", *SLURM_ARGS]
    with open(tmp_path / "killed_run.log", "w") as log:
        proc = subprocess.Popen(cmd, cwd=work, env=_env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    albedo, invert_log = work / SHARD / "stage1/albedo.h5", work / SHARD / "logs/invert_stage1.log"
    deadline = time.monotonic() + 420
    try:
        while not (albedo.exists() and invert_log.exists() and "perceptual loss" in invert_log.read_text()):
            assert proc.poll() is None, (
                "the workflow ended before it could be killed:\n" + (tmp_path / "killed_run.log").read_text()[-3000:]
            )
            assert time.monotonic() < deadline, "the workflow did not reach step 2b in time"
            time.sleep(0.1)
        running = [j[1] for j in slurm.jobs() if j[2] == "RUNNING"]
        assert "rule_invert_wildcards_0_1" in running, running
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        slurm.cancel_all()
    before = _interrupted_state(work, "the cancelled job")

    snakemake(work, "--unlock")
    res = subprocess.run(cmd, check=False, cwd=work, env=_env(), capture_output=True, text=True, timeout=1500)
    assert res.returncode == 0, f"{res.stdout[-3000:]}\n{res.stderr[-5000:]}"
    for name in before:  # finished steps are not redone
        assert (work / SHARD / name).stat().st_mtime_ns == before[name], name

    # every step but the two local file moves ran as a SLURM job, with the runtime (minutes) and
    # memory of workflow.resources; a SLURM log per job
    ran = {}
    for _, comment, state, limit, memory in slurm.jobs():
        rule = re.match(r"rule_(\w+?)(_wildcards_.*)?$", comment).group(1)
        ran.setdefault(rule, []).append(state)
        assert (limit, memory) == (("5:00", "900M") if rule == "make_heads" else ("10:00", "1000M")), comment
    assert sorted(ran.pop("invert")) == ["CANCELLED", "COMPLETED"] and set(ran) == {
        "make_heads",
        "evaluate_baselines",
        "sample_instances",
        "prior",
        "step1",
        "pseudo",
        "step3",
        "export",
    }
    assert all(states == ["COMPLETED"] for states in ran.values()), ran
    assert len(list((work / "results/logs/slurm").rglob("*.log"))) == len(slurm.jobs())

    # the outputs equal the local run's: every dataset and network of every artifact, every exported
    # file byte for byte, the benchmark's heads and its baseline table
    for name in ARTIFACTS:
        _same_artifact(work / SHARD / name, finished / SHARD / name)
    _same_artifact(work / RUN / "instances.h5", finished / RUN / "instances.h5")
    for split in ("train", "test"):
        _same_artifact(work / f"results/heads{S}/{split}.h5", finished / f"results/heads{S}/{split}.h5")
    assert (work / "results/baselines/table.md").read_text() == (finished / "results/baselines/table.md").read_text()
    exported = sorted(
        p.relative_to(finished / RUN)
        for p in (finished / RUN / "export").rglob("*")
        if p.is_file() and not p.name.startswith(".")
    )
    assert len(exported) > len(FIGURES) * N
    for rel in exported:
        assert (work / RUN / rel).read_bytes() == (finished / RUN / rel).read_bytes(), rel
