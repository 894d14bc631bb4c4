"""A real one-node SLURM (munged + slurmctld + slurmd) on loopback, for tests and benchmarks.

Follows ``../shared/notes/slurm-one-node.md``: Debian's packages, no systemd and no cgroups,
every daemon a child of this process bound to 127.0.0.1 on free ports, all state in one
temporary directory. :func:`install` adds the packages when they are missing (``make slurm``);
:class:`OneNodeSlurm` starts and stops the daemons; clients find them through ``SLURM_CONF``.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DAEMONS = ["munged", "mungekey", "slurmctld", "slurmd", "sbatch", "scancel", "squeue", "scontrol", "sinfo"]


def install() -> str | None:
    """Make sure the SLURM and munge programs are there (``make slurm``: Debian's packages, as
    root); the reason when they cannot be."""
    if all(shutil.which(p) for p in DAEMONS):
        return None
    proc = subprocess.run(["make", "-s", "slurm"], cwd=ROOT, capture_output=True, text=True, timeout=900)
    if proc.returncode:
        return f"SLURM is not installed and `make slurm` failed: {(proc.stdout + proc.stderr).strip()[-500:]}"
    missing = [p for p in DAEMONS if not shutil.which(p)]
    return f"`make slurm` ran but {missing} are missing" if missing else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class OneNodeSlurm:
    """munged + slurmctld + slurmd for this host, started on ``start()`` and gone after ``stop()``.

    ``cpus`` job slots are offered (more than the cores is allowed), one partition ``debug``.
    """

    def __init__(self, cpus: int = 4) -> None:
        self.cpus = cpus
        self.root = Path(tempfile.mkdtemp(prefix="phslurm-"))  # short: the munge socket path is limited
        self.root.chmod(0o755)  # munged wants every directory above its socket world-executable
        self.host = socket.gethostname().split(".")[0]
        self.conf = self.root / "etc" / "slurm.conf"
        self.env = {**os.environ, "SLURM_CONF": str(self.conf)}
        self._procs: list[subprocess.Popen] = []

    def _write_config(self) -> None:
        for d in ("munge", "etc", "state/ctld", "state/d", "log", "run", "jobs"):
            (self.root / d).mkdir(parents=True, exist_ok=True)
        (self.root / "munge").chmod(0o755)
        mem = int(
            next(int(line.split()[1]) for line in open("/proc/meminfo") if line.startswith("MemAvailable")) / 1024 * 0.9
        )
        r = self.root
        self.conf.write_text(f"""ClusterName=phstoretest
SlurmctldHost={self.host}(127.0.0.1)
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={r}/munge/munge.socket
CommunicationParameters=NoCtldInAddrAny,NoInAddrAny
StateSaveLocation={r}/state/ctld
SlurmdSpoolDir={r}/state/d
SlurmctldPidFile={r}/run/slurmctld.pid
SlurmdPidFile={r}/run/slurmd.pid
SlurmctldLogFile={r}/log/slurmctld.log
SlurmdLogFile={r}/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SwitchType=switch/none
MpiDefault=none
MailProg=/bin/true
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SlurmdParameters=config_overrides
ReturnToService=2
NodeName={self.host} NodeAddr=127.0.0.1 NodeHostname={self.host} CPUs={self.cpus} CoresPerSocket={self.cpus} RealMemory={mem} State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
""")  # noqa: E501 (slurm.conf lines are one line each)

    def _spawn(self, name: str, *cmd: str) -> None:
        log = open(self.root / "log" / f"{name}.out", "w")
        self._procs.append(
            subprocess.Popen(
                cmd,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )

    def _wait(self, what: str, check, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if check():
                return
            if any(p.poll() is not None for p in self._procs):
                break
            time.sleep(0.1)
        logs = "\n".join(f"--- {f.name}\n{f.read_text()[-1500:]}" for f in sorted((self.root / "log").iterdir()))
        self.stop()
        raise RuntimeError(f"one-node SLURM: {what} did not come up\n{logs}")

    def _run(self, *cmd: str) -> subprocess.CompletedProcess:
        return subprocess.run(cmd, env=self.env, capture_output=True, text=True, timeout=30)

    def start(self) -> "OneNodeSlurm":
        self._write_config()
        m = self.root / "munge"
        subprocess.run(["mungekey", "--create", f"--keyfile={m}/munge.key"], check=True, capture_output=True)
        self._spawn(
            "munged",
            "munged",
            "--foreground",
            f"--key-file={m}/munge.key",
            f"--socket={m}/munge.socket",
            f"--pid-file={m}/munged.pid",
            f"--log-file={m}/munged.log",
            f"--seed-file={m}/munged.seed",
        )
        self._wait("munged", lambda: (m / "munge.socket").exists())
        self._spawn("slurmctld", "slurmctld", "-D")
        self._wait("slurmctld", lambda: "UP" in self._run("scontrol", "ping").stdout)
        self._spawn("slurmd", "slurmd", "-D", "-N", self.host)
        self._wait("slurmd", lambda: self._run("sinfo", "-h", "-n", self.host, "-o", "%T").stdout.strip() == "idle")
        return self

    def jobs(self) -> list[str]:
        """Ids of the jobs in the queue."""
        return self._run("squeue", "-h", "-o", "%i").stdout.split()

    def stop(self) -> None:
        """Cancel every job, wait for the queue to drain, stop the daemons, remove the state."""
        if self._procs and self._procs[0].poll() is None and len(self._procs) == 3:
            self._run("scancel", f"--user={os.getuid()}")
            deadline = time.monotonic() + 30
            while self.jobs() and time.monotonic() < deadline:
                time.sleep(0.2)
        for proc in reversed(self._procs):  # slurmd, slurmctld, munged
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        self._procs.clear()
        shutil.rmtree(self.root, ignore_errors=True)

    def profile(self, path: Path, **slurm) -> Path:
        """A phstore cluster profile (like ``deploy/slurm.yaml``) for this SLURM, on loopback."""
        import yaml

        config = {
            "cores": 1,
            "memory": "2GB",
            "walltime": "00:15:00",
            "queue": "debug",
            "log-directory": str(path.parent / "logs"),
            "shared-temp-directory": str(path.parent),
            "scheduler-options": {"host": "127.0.0.1"},
            "worker-extra-args": ["--host", "127.0.0.1", "--dashboard-address", "127.0.0.1:0"],
            **slurm,
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump({"jobqueue": {"slurm": config}, "phstore": {"cluster": {"start-timeout": 120}}}))
        return path
