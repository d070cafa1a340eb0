#!/usr/bin/env python3
"""Run a DVC pipeline's stages in parallel, then record them in dvc.lock as `dvc repro` would.

`dvc repro` runs one stage at a time. The benchmark (dvc.yaml) has many independent GPU stages
(joint pre-training, the Table 2 prior runs, the perceptual ablation), each leaving the GPU partly
idle, so on one GPU they finish far sooner side by side. This script reads the pipeline through
DVC's own API (the stages, their resolved commands, working folders and the dependency graph),
runs every stage that `dvc status` would call changed (and everything downstream of it) in
dependency order with at most --jobs stages at once and at most --slots "GPU slots" in use
(weights: --weight), and after each stage succeeds records it with `dvc commit -f STAGE`, so
dvc.lock holds exactly the commands that ran with the hashes of their deps and outs. A rerun skips
what is recorded (resume after a crash or pre-emption); afterwards `dvc status` reports the pipeline
up to date and `dvc repro` has nothing to do.

Like `dvc repro`, a stage's outputs are removed before its command runs (unless `persist`), a
stage's command list runs in order in its wdir and stops at the first failure, frozen stages are
not run (their outputs must exist), and a failed stage stops its dependents (other branches go on).
Each stage's output goes to LOGDIR/<stage>.log.

--only GLOB (repeatable) limits the run to the matching stages: the others are taken as they are,
not run even when DVC calls them changed (their outputs that a chosen stage reads must be present).
This continues a pipeline on another machine from what the first one recorded: e.g. the Table 2
runs on a second GPU machine, given dvc.lock, heads/test.h5 and latents/test.h5 of the first.

Usage (repository root):
  python3 scripts/dvc_parallel.py [--jobs 8] [--slots 4] [--weight 'test=2'] [--first 'joint'] \
      [--only 'prior@*'] [--logs logs/dvc] [--dry] [DVC_FILE]
"""

from __future__ import annotations

import argparse
import fnmatch
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("dvc_file", nargs="?", default="dvc.yaml", help="pipeline file (default dvc.yaml)")
    p.add_argument("--jobs", type=int, default=8, help="stages running at once (default 8)")
    p.add_argument("--slots", type=int, default=4, help="GPU slots: the weights of running stages sum to at most this")
    p.add_argument(
        "--weight",
        action="append",
        default=[],
        metavar="GLOB=W",
        help="slots a stage takes (fnmatch on its name, e.g. 'prior@*=1'); default 1, "
        "0 for stages that only read/write files",
    )
    p.add_argument(
        "--first",
        action="append",
        default=[],
        metavar="GLOB",
        help="start matching stages first when several are ready (in the order given)",
    )
    p.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="GLOB",
        help="run only matching stages; the others stay as they are even when changed",
    )
    p.add_argument("--logs", default="logs/dvc", help="folder of the per-stage logs (default logs/dvc)")
    p.add_argument("--dry", action="store_true", help="print what would run, in order, and stop")
    args = p.parse_args(argv)
    if args.jobs < 1 or args.slots < 1:
        p.error("--jobs and --slots must be >= 1")
    for spec in args.weight:
        glob, _, w = spec.partition("=")
        if not glob or not w.isdigit():
            p.error(f"--weight {spec!r}: expected GLOB=INTEGER, e.g. 'test=2'")
        if int(w) > args.slots:
            p.error(f"--weight {spec!r}: a stage cannot take more than --slots={args.slots}")
    return args


def _name(stage) -> str:
    return stage.addressing.split(":", 1)[-1]


def _rank(name: str, globs: list[str]) -> int:
    """Index of the first glob matching name; len(globs) when none does."""
    return next((i for i, g in enumerate(globs) if fnmatch.fnmatchcase(name, g)), len(globs))


def _log_path(logs: Path, stage) -> Path:
    return logs / f"{_name(stage).replace('@', '-')}.log"


def load_pipeline(dvc_file: str):
    """(stages of dvc_file in file order, {stage: set of stages it depends on}) from DVC's index."""
    from dvc.repo import Repo

    repo = Repo(".")
    path = os.path.normpath(dvc_file)
    stages = [s for s in repo.index.stages if os.path.normpath(s.path_in_repo) == path]
    if not stages:
        sys.exit(f"dvc_parallel: no stages in {dvc_file} (run from the repository root; is the file name right?)")
    graph = repo.index.graph  # edges point from a stage to the stages it depends on
    chosen = set(stages)
    needs = {s: {d for d in graph.successors(s) if d in chosen} for s in stages}
    return repo, stages, needs


def plan(stages, needs, only: list[str] | None = None) -> list:
    """Stages to run: changed ones (DVC's own check) and everything downstream of them; frozen
    stages never run (a frozen stage with missing outputs is an error). With ``only`` (globs), just
    the matching stages among those."""
    run: set = set()
    order = topo(stages, needs)  # file order need not be topological
    for s in order:
        if only and _rank(_name(s), only) == len(only):
            continue
        if s.frozen:
            missing = [str(o) for o in s.outs if not o.exists]
            if missing:
                sys.exit(
                    f"dvc_parallel: frozen stage {_name(s)} has missing outputs {missing}: unfreeze it or restore them"
                )
            continue
        if any(d in run for d in needs[s]) or s.changed():
            run.add(s)
    return [s for s in order if s in run]


def topo(stages, needs) -> list:
    done: list = []
    seen: set = set()

    def visit(s, path=()):
        if s in seen:
            return
        if s in path:
            sys.exit(f"dvc_parallel: dependency cycle through {_name(s)}")
        for d in sorted(needs[s], key=stages.index):
            visit(d, path + (s,))
        seen.add(s)
        done.append(s)

    for s in stages:
        visit(s)
    return done


def weight_of(name: str, specs: list[str]) -> int:
    for spec in specs:
        glob, _, w = spec.partition("=")
        if fnmatch.fnmatchcase(name, glob):
            return int(w)
    return 1


def start_stage(stage, log_path: Path) -> subprocess.Popen:
    """Remove the stage's outputs (not persistent ones) and start its commands in one shell, in order,
    stopping at the first failure, as `dvc repro` runs them."""
    for out in stage.outs:
        if out.persist:
            continue
        p = Path(out.fs_path)
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        elif p.exists() or p.is_symlink():
            p.unlink()
    cmds = stage.cmd if isinstance(stage.cmd, list) else [stage.cmd]
    script = "set -e\n" + "\n".join(cmds) + "\n"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log = open(log_path, "w")
    log.write("".join(f"> {c}\n" for c in cmds))
    log.flush()
    return subprocess.Popen(
        ["bash", "-c", script], cwd=stage.wdir, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )


def commit(stage) -> None:
    """Record the finished stage in dvc.lock (hashes of its deps, outs and params)."""
    subprocess.run([sys.executable, "-m", "dvc", "commit", "-f", "-q", stage.addressing], check=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    repo, stages, needs = load_pipeline(args.dvc_file)
    with repo.lock:  # DVC's status checks need the repository lock; released before any stage runs
        todo = plan(stages, needs, args.only)
    repo.close()
    if not todo:
        print(f"dvc_parallel: {args.dvc_file}: every stage is up to date")
        return 0
    print(f"dvc_parallel: {len(todo)} of {len(stages)} stages to run: " + ", ".join(_name(s) for s in todo))
    if args.dry:
        for s in todo:
            print(
                f"- {_name(s)} (weight {weight_of(_name(s), args.weight)}; after "
                f"{', '.join(_name(d) for d in needs[s] if d in todo) or 'nothing pending'})"
            )
        return 0
    logs = Path(args.logs)
    pending = list(todo)
    running: dict = {}  # stage -> (Popen, t0)
    finished: set = set()
    failed: set = set()
    t_start = time.perf_counter()

    def ready(s) -> bool:
        return all(d in finished or d not in todo for d in needs[s])

    try:
        while pending or running:
            used = sum(weight_of(_name(s), args.weight) for s in running)
            cands = [s for s in pending if ready(s)]
            cands.sort(key=lambda s: (_rank(_name(s), args.first), todo.index(s)))
            for s in cands:
                w = weight_of(_name(s), args.weight)
                if len(running) >= args.jobs or used + w > args.slots:
                    continue
                running[s] = (start_stage(s, _log_path(logs, s)), time.perf_counter())
                pending.remove(s)
                used += w
                print(f"[{time.perf_counter() - t_start:7.0f} s] start  {_name(s)}", flush=True)
            for s in list(pending):  # topological order: a skip reaches everything downstream in one pass
                if any(d in failed for d in needs[s]):
                    pending.remove(s)
                    failed.add(s)
                    print(
                        f"[{time.perf_counter() - t_start:7.0f} s] skip   {_name(s)} (an upstream stage failed)",
                        flush=True,
                    )
            time.sleep(1.0)
            for s, (proc, t0) in list(running.items()):
                rc = proc.poll()
                if rc is None:
                    continue
                del running[s]
                took = time.perf_counter() - t0
                if rc == 0:
                    commit(s)
                    finished.add(s)
                    print(f"[{time.perf_counter() - t_start:7.0f} s] done   {_name(s)} ({took:.0f} s)", flush=True)
                else:
                    failed.add(s)
                    print(
                        f"[{time.perf_counter() - t_start:7.0f} s] FAILED {_name(s)} (exit {rc} after {took:.0f} s; "
                        f"see {_log_path(logs, s)})",
                        flush=True,
                    )
    except KeyboardInterrupt:
        for proc, _ in running.values():
            os.killpg(proc.pid, 15)
        print("dvc_parallel: interrupted; finished stages are recorded in dvc.lock, rerun to go on", file=sys.stderr)
        return 130
    total = time.perf_counter() - t_start
    if failed:
        print(
            f"dvc_parallel: {len(failed)} stage(s) failed or skipped after {total:.0f} s: "
            + ", ".join(_name(s) for s in failed)
        )
        return 1
    print(f"dvc_parallel: all {len(todo)} stages done in {total:.0f} s; recorded in dvc.lock")
    return 0


if __name__ == "__main__":
    sys.exit(main())
