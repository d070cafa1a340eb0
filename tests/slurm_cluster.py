"""A single-node SLURM cluster for the tests: munged, slurmctld and slurmd of Debian's packages
(`apt-get install munge slurmctld slurmd slurm-client`), started in a temp folder, stopped after.

The configuration goes to /etc/slurm/slurm.conf, the path SLURM reads without SLURM_CONF: the
executor plugin's job step (snakemake-executor-plugin-slurm-jobstep 0.6.1) removes every SLURM_*
variable, SLURM_CONF included, before it calls srun inside a job. The file is written only where
there is none (or one this module left behind) and removed on stop. Ports are picked free; munged
runs on its own socket and key in the temp folder. Needs root (slurmd starts the jobs).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

CONF = Path("/etc/slurm/slurm.conf")
_MARK = "# written by gan2shape tests/slurm_cluster.py; removed when its cluster stops"
_BINARIES = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scancel", "sinfo", "srun")


class SlurmStartError(RuntimeError):
    """A daemon did not start or the node did not come up; the message holds the daemons' logs."""


def unavailable_reason() -> str | None:
    """Why no test cluster can be started on this machine, or None."""
    missing = [b for b in _BINARIES if shutil.which(b) is None]
    if missing:
        return (
            f"SLURM/munge binaries missing ({', '.join(missing)}): apt-get install munge slurmctld slurmd slurm-client"
        )
    if os.geteuid() != 0:
        return "slurmd must run as root to start jobs; run the SLURM test as root"
    if CONF.exists() and _MARK not in CONF.read_text(errors="replace"):
        return f"{CONF} exists (a configured SLURM): the test starts its own cluster only where none is configured"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _node_line(name: str) -> str:
    """This machine's node line (CPUs, sockets, cores, memory) as slurmd -C measures it."""
    out = subprocess.run(["slurmd", "-C"], capture_output=True, text=True, check=True).stdout
    line = next(x for x in out.splitlines() if x.startswith("NodeName="))
    fields = [f for f in line.split()[1:] if not f.startswith("UpTime")]
    return f"NodeName={name} NodeAddr=127.0.0.1 " + " ".join(fields) + " State=UNKNOWN"


class SlurmCluster:
    """Start with :meth:`start`, stop with :meth:`stop` (always; it also cancels every job)."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="gan2shape-slurm-"))
        self.host = socket.gethostname().split(".")[0]
        self._procs: dict[str, subprocess.Popen] = {}
        self._wrote_conf = False

    def _spawn(self, name: str, cmd: list[str]) -> None:
        with open(self.root / f"{name}.out", "w") as log:  # the daemon keeps its own copy of the handle
            self._procs[name] = subprocess.Popen(
                cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
            )

    def logs(self) -> str:
        return "".join(
            f"\n--- {p.name}\n{p.read_text(errors='replace')[-1500:]}" for p in sorted(self.root.glob("*.out"))
        )

    def _wait(self, what: str, ready, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            dead = [n for n, p in self._procs.items() if p.poll() is not None]
            if dead or time.monotonic() > deadline:
                why = f"{', '.join(dead)} exited" if dead else f"not ready after {timeout:.0f} s"
                raise SlurmStartError(f"{what}: {why}{self.logs()}")
            time.sleep(0.2)

    def start(self) -> None:
        r = self.root
        for sub in ("munge", "state", "spool"):
            (r / sub).mkdir(mode=0o700)
        (r / "munge").chmod(0o755)  # the socket's folder: clients need to reach it
        key = r / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o600)
        sock = r / "munge" / "munge.socket"
        self._spawn(
            "munged",
            [
                "munged",
                "--foreground",
                "--force",
                f"--key-file={key}",
                f"--socket={sock}",
                f"--pid-file={r}/munged.pid",
                f"--seed-file={r}/munged.seed",
                f"--log-file={r}/munged.log",
            ],
        )
        self._wait("munged", sock.exists)
        conf = f"""{_MARK}
ClusterName=gan2shape-test
SlurmctldHost={self.host}(127.0.0.1)
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket={sock}
CredType=cred/munge
StateSaveLocation={r}/state
SlurmdSpoolDir={r}/spool
SlurmctldPidFile={r}/slurmctld.pid
SlurmdPidFile={r}/slurmd.pid
SlurmctldLogFile={r}/slurmctld.log
SlurmdLogFile={r}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
MpiDefault=none
ReturnToService=2
MinJobAge=3600
KillWait=2
SlurmctldTimeout=30
SlurmdTimeout=30
{_node_line(self.host)}
PartitionName=test Nodes={self.host} Default=YES MaxTime=INFINITE State=UP
"""
        CONF.parent.mkdir(parents=True, exist_ok=True)
        CONF.write_text(conf)
        self._wrote_conf = True
        self._spawn("slurmctld", ["slurmctld", "-D", "-i", "-f", str(CONF)])
        self._wait(
            "slurmctld", lambda: subprocess.run(["sinfo", "-h"], check=False, capture_output=True).returncode == 0
        )
        self._spawn("slurmd", ["slurmd", "-D", "-f", str(CONF), "-N", self.host])
        self._wait("slurmd (node idle)", lambda: "idle" in self.squeue_like(["sinfo", "-h", "-o", "%T"]))

    @staticmethod
    def squeue_like(cmd: list[str]) -> str:
        res = subprocess.run(cmd, check=False, capture_output=True, text=True)
        return res.stdout if res.returncode == 0 else ""

    def jobs(self, fmt: str = "%i|%k|%T|%l|%m") -> list[list[str]]:
        """Every job the controller remembers (finished ones for MinJobAge, an hour), as fields of ``fmt``
        (default: id, comment (Snakemake's rule_<rule>_wildcards_<...>), state, time limit, memory)."""
        out = self.squeue_like(["squeue", "--states=all", "--noheader", f"--format={fmt}"])
        return [line.split("|") for line in out.splitlines() if line.strip()]

    def cancel_all(self, timeout: float = 60.0) -> None:
        """Cancel every job (as a time limit or a preemption would) and wait until none is left running."""
        subprocess.run(["scancel", "--partition=test"], check=False, capture_output=True)
        deadline = time.monotonic() + timeout
        while any(j[2] in ("PENDING", "RUNNING", "COMPLETING", "CONFIGURING") for j in self.jobs()):
            if time.monotonic() > deadline:
                raise RuntimeError(f"jobs still running {timeout:.0f} s after scancel: {self.jobs()}")
            time.sleep(0.5)

    def stop(self) -> None:
        if "slurmd" in self._procs:
            try:
                self.cancel_all(timeout=30)  # no job step left behind the daemons
            except RuntimeError:
                pass
        for name in ("slurmd", "slurmctld", "munged"):
            proc = self._procs.get(name)
            if proc is None or proc.poll() is not None:
                continue
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        if self._wrote_conf and CONF.exists() and _MARK in CONF.read_text(errors="replace"):
            CONF.unlink()
        shutil.rmtree(self.root, ignore_errors=True)
