"""GPU claiming for `--resources gpu=N`: real processes, real flock, no GPU needed.

Checks: two live processes get different GPU indices; a third finds none free; a SIGKILLed holder
frees its GPU for the next process; a process asking twice keeps its GPU; bad counts fail.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from gan2shape.device import claim_gpu, resolve_device

ROOT = Path(__file__).resolve().parents[1]

# Claims a GPU, prints the index (or None), then holds it until stdin closes or it is killed.
_HOLDER = textwrap.dedent("""
    import sys
    from gan2shape.device import claim_gpu
    first = claim_gpu(int(sys.argv[1]), sys.argv[2])
    again = claim_gpu(int(sys.argv[1]), sys.argv[2])
    print(first, again, flush=True)
    sys.stdin.read()
""")


class Holder:
    """A python process that claims a GPU from ``lock_dir`` and holds it."""

    def __init__(self, n_gpus: int, lock_dir: Path):
        env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _HOLDER, str(n_gpus), str(lock_dir)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        line = self.proc.stdout.readline().split()
        assert len(line) == 2, f"holder printed {line!r}"
        assert line[0] == line[1], "a second claim in the same process must return the GPU it holds"
        self.index = None if line[0] == "None" else int(line[0])

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            self.proc.wait(timeout=30)


def test_processes_get_different_gpus_and_a_killed_holder_frees_its_gpu(tmp_path):
    holders = []
    try:
        a = Holder(2, tmp_path)
        holders.append(a)
        b = Holder(2, tmp_path)
        holders.append(b)
        assert {a.index, b.index} == {0, 1}
        c = Holder(2, tmp_path)  # both held: nothing to claim
        holders.append(c)
        assert c.index is None
        c.close()
        a.kill()  # no clean-up code runs: the OS drops the lock
        d = Holder(2, tmp_path)
        holders.append(d)
        assert d.index == a.index
        assert (tmp_path / f"gpu{d.index}.lock").read_text().strip() == str(d.proc.pid)
        b.close()  # a clean exit frees too; the first free GPU is the lowest index
        e = Holder(2, tmp_path)
        holders.append(e)
        assert e.index == b.index
    finally:
        for h in holders:
            if h.proc.poll() is None:
                h.kill()


def test_lock_dir_from_environment_and_argument_checks(tmp_path, monkeypatch):
    monkeypatch.setenv("GAN2SHAPE_GPU_LOCK_DIR", str(tmp_path / "locks"))
    holder = Holder(1, tmp_path / "locks")
    try:
        assert holder.index == 0
        assert (tmp_path / "locks" / "gpu0.lock").exists()
    finally:
        holder.close()
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="n_gpus"):
            claim_gpu(bad, tmp_path)


def test_cpu_devices_resolve_without_claiming(tmp_path, monkeypatch):
    monkeypatch.setenv("GAN2SHAPE_GPU_LOCK_DIR", str(tmp_path / "locks"))
    assert resolve_device("cpu").type == "cpu"
    with pytest.raises(ValueError, match="not understood"):
        resolve_device("tpu")
    import torch

    if not torch.cuda.is_available():
        assert resolve_device("auto").type == "cpu"
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda")
    assert not (tmp_path / "locks").exists()  # a CPU run never touches the lock folder
