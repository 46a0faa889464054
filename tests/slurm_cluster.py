"""A real single-node Slurm cluster with accounting, started on this machine without systemd.

Used by the `slurm_cluster` pytest fixture (tests/conftest.py) and by developers by hand:

    python tests/slurm_cluster.py up        # prints `export SLURM_CONF=...`
    python tests/slurm_cluster.py status
    python tests/slurm_cluster.py down

Every daemon (munged, MariaDB, slurmdbd, slurmctld, slurmd) runs in the foreground as a child we
spawned, with its own config, socket, ports and state under one directory, so the cluster never
touches /etc/slurm, the system munge socket or another cluster on the same host, and `down` stops
exactly the processes `up` started (by pid, checked against /proc). Facts it relies on are in
docs/slurm.md (start order, DefMemPerCPU, why accounting is required).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

PACKAGES = ("slurmctld", "slurmd", "slurm-client", "munge", "slurmdbd", "mariadb-server")
# One binary per package: if any is missing, the packages are (re)installed.
BINARIES = (
    "slurmctld",
    "slurmd",
    "sbatch",
    "sacct",
    "sacctmgr",
    "munged",
    "slurmdbd",
    "mariadbd",
    "mariadb-install-db",
)
DEFAULT_DIR = Path(tempfile.gettempdir()) / "unilearn-slurm"
STATE_FILE = "cluster.json"
# Order matters: each daemon needs the ones before it.
START_ORDER = ("munged", "mariadbd", "slurmdbd", "slurmctld", "slurmd")


class ClusterError(RuntimeError):
    """The cluster could not be brought up; the message names the daemon and its log."""


def missing_binaries() -> list[str]:
    return [b for b in BINARIES if shutil.which(b) is None and not Path("/usr/sbin", b).exists()]


def install_packages() -> None:
    """`apt-get install` the Slurm/munge/MariaDB packages (root only; ~20-40 s)."""
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for cmd in (
        ["apt-get", "update"],
        ["apt-get", "install", "-y", "--no-install-recommends", *PACKAGES],
    ):
        done = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise ClusterError(
                f"`{' '.join(cmd)}` failed ({done.returncode}):\n{done.stderr[-3000:]}"
            )


def unavailable_reason() -> str | None:
    """Why a cluster cannot be started here (None when it can, possibly after installing)."""
    if sys.platform != "linux":
        return "a local Slurm cluster needs Linux"
    if os.geteuid() != 0:
        if missing_binaries():
            return f"Slurm packages missing ({', '.join(missing_binaries())}) and not root to install them"
        return "starting slurmctld/slurmd/munged/MariaDB needs root"
    if missing_binaries() and shutil.which("apt-get") is None:
        return f"Slurm packages missing ({', '.join(missing_binaries())}) and no apt-get"
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _sbin(name: str) -> str:
    return shutil.which(name) or str(Path("/usr/sbin", name))


def _proc_start_time(pid: int) -> str | None:
    """Field 22 of /proc/PID/stat: identifies a process even if its pid is later reused."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


@dataclass
class ClusterState:
    """What `up` started; written to DIR/cluster.json so `down` (or another process) can find it."""

    root: str
    cluster_name: str
    hostname: str
    ports: dict[str, int]
    pids: dict[str, int] = field(default_factory=dict)
    start_times: dict[str, str] = field(default_factory=dict)

    @property
    def slurm_conf(self) -> str:
        return str(Path(self.root, "etc", "slurm.conf"))


class SlurmCluster:
    """Slurm + slurmdbd + MariaDB + munged under `root`; `start()` / `stop()`. One node, or with
    `nodes=N` N nodes on this host (one slurmd each, `node1..N`, own port and spool: Debian's
    Slurm is built with multiple-slurmd support), for multi-node jobs."""

    def __init__(
        self, root: str | os.PathLike | None = None, cpus: int | None = None, nodes: int = 1
    ) -> None:
        self.root = Path(root) if root else Path(tempfile.mkdtemp(prefix="unilearn-slurm-"))
        self.cpus = cpus
        self.nodes = nodes
        self.state: ClusterState | None = None

    def _node_names(self) -> list[str]:
        if self.nodes == 1:
            return [self.state.hostname]
        return [f"node{i + 1}" for i in range(self.nodes)]

    def _slurmd_names(self) -> list[str]:
        """Daemon names in the state: `slurmd`, then `slurmd-node2`, ... for extra nodes."""
        return ["slurmd"] + [f"slurmd-{n}" for n in self._node_names()[1:]]

    # ---- public -------------------------------------------------------------------------------
    @property
    def slurm_conf(self) -> str:
        return str(self.root / "etc" / "slurm.conf")

    @property
    def env(self) -> dict[str, str]:
        """Environment for Slurm client commands (sbatch, squeue, sacct) talking to this cluster."""
        return dict(os.environ, SLURM_CONF=self.slurm_conf)

    def start(self, timeout_s: float = 120.0) -> SlurmCluster:
        reason = unavailable_reason()
        if reason:
            raise ClusterError(reason)
        if missing_binaries():
            install_packages()
        self._prepare_dirs()
        for i in range(self.nodes if self.nodes > 1 else 0):
            (self.root / f"spool-node{i + 1}").mkdir(exist_ok=True)  # SlurmdSpoolDir=spool-%n
        hostname = socket.gethostname().split(".")[0]
        ports = {name: _free_port() for name in ("mariadb", "slurmdbd", "slurmctld", "slurmd")}
        ports.update({f"slurmd{i}": _free_port() for i in range(2, self.nodes + 1)})
        self.state = ClusterState(
            root=str(self.root),
            cluster_name=f"unilearn{secrets.token_hex(3)}",
            hostname=hostname,
            ports=ports,
        )
        deadline = time.monotonic() + timeout_s
        try:
            self._start_munged(deadline)
            db_password = self._start_mariadb(deadline)
            self._write_configs(db_password)
            self._spawn("slurmdbd", [_sbin("slurmdbd"), "-D"])
            self._wait_for(deadline, "slurmdbd", self._sacctmgr_answers)
            self._client(["sacctmgr", "-i", "add", "cluster", self.state.cluster_name])
            self._spawn("slurmctld", [_sbin("slurmctld"), "-D", "-i"])
            self._wait_for(deadline, "slurmctld", lambda: self._client_ok(["scontrol", "ping"]))
            for daemon, node in zip(self._slurmd_names(), self._node_names(), strict=True):
                self._spawn(daemon, [_sbin("slurmd"), "-D", "-N", node])
            self._wait_for(deadline, "slurmd", self._node_idle)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self, timeout_s: float = 30.0) -> None:
        """Cancel this cluster's jobs, then stop the daemons it started, in reverse order."""
        if self.state is None:
            return
        if self.state.pids.get("slurmctld") and self._alive("slurmctld"):
            self._client_ok(["scancel", "--full", "--quiet", f"--user={os.geteuid()}"])
            end = time.monotonic() + 15
            while time.monotonic() < end and self._client_out(["squeue", "-h", "-o", "%i"]).strip():
                time.sleep(0.5)
        for name in reversed(START_ORDER):
            if name == "slurmd":
                for extra in self._slurmd_names()[1:]:
                    self._terminate(extra, timeout_s)
            self._terminate(name, timeout_s)
        self._save_state()

    def status(self) -> str:
        lines = [f"SLURM_CONF={self.slurm_conf}"]
        if self.state:
            for name in START_ORDER:
                pid = self.state.pids.get(name)
                alive = "running" if pid and self._alive(name) else "stopped"
                lines.append(f"{name:<10} pid {pid}  {alive}")
        lines.append(self._client_out(["sinfo", "-N", "-l"]))
        return "\n".join(lines)

    @classmethod
    def attach(cls, root: str | os.PathLike) -> SlurmCluster:
        """The cluster described by ROOT/cluster.json (started by `up` in another process)."""
        cluster = cls(root)
        cluster.state = ClusterState(**json.loads((cluster.root / STATE_FILE).read_text()))
        return cluster

    def is_running(self) -> bool:
        return self.state is not None and all(self._alive(name) for name in START_ORDER)

    # ---- daemons ------------------------------------------------------------------------------
    def _prepare_dirs(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        # munge and mysql users must traverse the tree (mkdtemp makes it 0700).
        self.root.chmod(0o755)
        for sub in ("etc", "log", "state", "spool", "run"):
            (self.root / sub).mkdir(exist_ok=True)
        for sub, user in (("munge", "munge"), ("mysql", "mysql")):
            path = self.root / sub
            path.mkdir(exist_ok=True)
            path.chmod(0o755)
            shutil.chown(path, user, user)

    def _start_munged(self, deadline: float) -> None:
        munge = self.root / "munge"
        key = Path("/etc/munge/munge.key")
        if not key.exists():
            key = munge / "munge.key"
            subprocess.run(["mungekey", "--create", f"--keyfile={key}"], check=True)
            shutil.chown(key, "munge", "munge")
        cmd = [
            "setpriv", "--reuid=munge", "--regid=munge", "--init-groups", _sbin("munged"), "--foreground",
            f"--socket={munge / 'munge.socket'}", f"--key-file={key}",
            f"--pid-file={munge / 'munged.pid'}", f"--log-file={munge / 'munged.log'}",
            f"--seed-file={munge / 'munged.seed'}",
        ]  # fmt: skip
        self._spawn("munged", cmd)
        self._wait_for(deadline, "munged", (munge / "munge.socket").exists)

    def _start_mariadb(self, deadline: float) -> str:
        mysql = self.root / "mysql"
        data = mysql / "data"
        install = subprocess.run(
            [
                "mariadb-install-db", "--no-defaults", "--user=mysql", f"--datadir={data}",
                "--auth-root-authentication-method=socket", "--skip-test-db",
            ],
            capture_output=True, text=True,
        )  # fmt: skip
        if install.returncode != 0:
            raise ClusterError(f"mariadb-install-db failed:\n{install.stdout}\n{install.stderr}")
        socket_path = mysql / "mysqld.sock"
        cmd = [
            _sbin("mariadbd"), "--no-defaults", "--user=mysql", f"--datadir={data}",
            f"--socket={socket_path}", f"--port={self.state.ports['mariadb']}",
            "--bind-address=127.0.0.1", f"--pid-file={mysql / 'mysqld.pid'}",
            f"--log-error={self.root / 'log' / 'mariadb.log'}", "--skip-name-resolve",
            "--innodb-buffer-pool-size=32M", "--innodb-log-file-size=16M",
            "--performance-schema=OFF",
        ]  # fmt: skip
        self._spawn("mariadbd", cmd)
        password = secrets.token_hex(12)
        sql = (
            "CREATE DATABASE IF NOT EXISTS slurm_acct_db;"
            f"CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY '{password}';"
            f"CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '{password}';"
            "GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';"
            "GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';"
        )
        client = ["mariadb", "--no-defaults", f"--socket={socket_path}", "-u", "root", "-e"]
        self._wait_for(
            deadline,
            "mariadbd",
            lambda: subprocess.run([*client, "SELECT 1"], capture_output=True).returncode == 0,
        )
        subprocess.run([*client, sql], check=True, capture_output=True)
        return password

    def _write_configs(self, db_password: str) -> None:
        s = self.state
        etc, log, run = self.root / "etc", self.root / "log", self.root / "run"
        auth = f"AuthType=auth/munge\nAuthInfo=socket={self.root / 'munge' / 'munge.socket'}\n"
        dbd = (
            auth
            + f"DbdHost=localhost\nDbdAddr=127.0.0.1\nDbdPort={s.ports['slurmdbd']}\n"
            + "SlurmUser=root\n"
            + f"PidFile={run / 'slurmdbd.pid'}\nLogFile={log / 'slurmdbd.log'}\n"
            + "StorageType=accounting_storage/mysql\nStorageHost=127.0.0.1\n"
            + f"StoragePort={s.ports['mariadb']}\nStorageUser=slurm\nStoragePass={db_password}\n"
            + "StorageLoc=slurm_acct_db\n"
        )
        dbd_path = etc / "slurmdbd.conf"
        dbd_path.write_text(dbd)
        dbd_path.chmod(0o600)  # slurmdbd refuses a world-readable config (it holds a password)
        cpus = os.cpu_count() or 1
        node_cpus = self.cpus or cpus
        real_mb = _total_memory_mb()
        # Leave headroom for the OS; DefMemPerCPU keeps a job from claiming the whole node
        # (otherwise jobs run one at a time).
        node_mb = int(real_mb * 0.9)
        per = "" if self.nodes == 1 else "-%n"  # several slurmd: a spool, pid and log each
        if self.nodes == 1:
            nodes = (
                f"NodeName={s.hostname} NodeAddr=127.0.0.1 CPUs={node_cpus} "
                f"RealMemory={node_mb} State=UNKNOWN\n"
            )
        else:
            ports = [s.ports["slurmd"]] + [s.ports[f"slurmd{i}"] for i in range(2, self.nodes + 1)]
            nodes = "".join(
                f"NodeName={name} NodeHostname={s.hostname} NodeAddr=127.0.0.1 Port={port} "
                f"CPUs={node_cpus} RealMemory={node_mb // self.nodes} State=UNKNOWN\n"
                for name, port in zip(self._node_names(), ports, strict=True)
            )
        conf = (
            f"ClusterName={s.cluster_name}\n"
            f"SlurmctldHost={s.hostname}(127.0.0.1)\n"
            f"SlurmctldPort={s.ports['slurmctld']}\nSlurmdPort={s.ports['slurmd']}\n"
            + auth.rstrip("\n")
            # A requeued job waits cred_expire seconds (default 120) before it may start again.
            + ",cred_expire=10\n"
            + "CredType=cred/munge\nSlurmUser=root\nSlurmdUser=root\n"
            f"StateSaveLocation={self.root / 'state'}\nSlurmdSpoolDir={self.root / 'spool'}{per}\n"
            f"SlurmctldPidFile={run / 'slurmctld.pid'}\nSlurmdPidFile={run / 'slurmd'}{per}.pid\n"
            f"SlurmctldLogFile={log / 'slurmctld.log'}\nSlurmdLogFile={log / 'slurmd'}{per}.log\n"
            "ProctrackType=proctrack/linuxproc\nTaskPlugin=task/none\n"
            "JobAcctGatherType=jobacct_gather/none\nMpiDefault=none\n"
            "AccountingStorageType=accounting_storage/slurmdbd\n"
            f"AccountingStorageHost=localhost\nAccountingStoragePort={s.ports['slurmdbd']}\n"
            # For slurmdbd connections Slurm takes the munge socket from here, not AuthInfo.
            f"AccountingStoragePass={self.root / 'munge' / 'munge.socket'}\n"
            "JobCompType=jobcomp/none\n"
            "SelectType=select/cons_tres\nSelectTypeParameters=CR_Core_Memory\n"
            f"DefMemPerCPU={max(256, node_mb // (4 * node_cpus))}\n"
            "SchedulerType=sched/backfill\nReturnToService=2\n"
            # Quick cancel/requeue in tests: short grace period, frequent scheduling.
            "KillWait=5\nMinJobAge=300\nInactiveLimit=0\nWaittime=0\n"
            "SchedulerParameters=sched_interval=2,defer_batch\n"
            + ("SlurmdParameters=config_overrides\n" if node_cpus != cpus else "")
            + nodes
            + f"PartitionName=debug Nodes={','.join(self._node_names())} Default=YES "
            "MaxTime=INFINITE State=UP\n"
        )
        (etc / "slurm.conf").write_text(conf)

    # ---- process handling ---------------------------------------------------------------------
    def _spawn(self, name: str, cmd: list[str]) -> None:
        out = open(self.root / "log" / f"{name}.out", "ab")  # noqa: SIM115 (owned by the child)
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=dict(os.environ, SLURM_CONF=self.slurm_conf),
            start_new_session=True,  # survives `up` exiting; not hit by the terminal's Ctrl-C
        )
        out.close()
        self.state.pids[name] = proc.pid
        self.state.start_times[name] = _proc_start_time(proc.pid) or ""
        self._procs = getattr(self, "_procs", {})
        self._procs[name] = proc
        self._save_state()

    def _alive(self, name: str) -> bool:
        pid = self.state.pids.get(name)
        if not pid:
            return False
        proc = getattr(self, "_procs", {}).get(name)
        if proc is not None and proc.poll() is not None:
            return False
        start = _proc_start_time(pid)
        return start is not None and start == self.state.start_times.get(name)

    def _terminate(self, name: str, timeout_s: float) -> None:
        if not self._alive(name):
            return
        pid = self.state.pids[name]
        os.kill(pid, signal.SIGTERM)
        end = time.monotonic() + timeout_s
        while time.monotonic() < end and self._alive(name):
            self._reap(name)
            time.sleep(0.2)
        if self._alive(name):
            os.kill(pid, signal.SIGKILL)
        self._reap(name)

    def _reap(self, name: str) -> None:
        proc = getattr(self, "_procs", {}).get(name)
        if proc is not None:
            try:
                proc.wait(timeout=0.1)
            except subprocess.TimeoutExpired:
                pass

    def _wait_for(self, deadline: float, name: str, ready) -> None:
        while time.monotonic() < deadline:
            if not self._alive(name):
                raise ClusterError(f"{name} exited during start-up; see {self._log_hint(name)}")
            if ready():
                return
            time.sleep(0.3)
        raise ClusterError(f"{name} not ready in time; see {self._log_hint(name)}")

    def _log_hint(self, name: str) -> str:
        logs = sorted((self.root / "log").glob(f"{name}*")) + sorted(
            self.root.glob(f"*/{name}.log")
        )
        tails = []
        for path in logs:
            text = path.read_text(errors="replace").splitlines()[-15:]
            tails.append(f"{path}:\n" + "\n".join(text))
        return "\n".join(tails) or str(self.root / "log")

    def _save_state(self) -> None:
        if self.state is not None:
            (self.root / STATE_FILE).write_text(json.dumps(asdict(self.state), indent=1))

    # ---- client commands ----------------------------------------------------------------------
    def _client(self, cmd: list[str]) -> str:
        done = subprocess.run(cmd, env=self.env, capture_output=True, text=True, timeout=60)
        if done.returncode != 0:
            raise ClusterError(f"`{' '.join(cmd)}` failed: {done.stderr.strip()}")
        return done.stdout

    def _client_ok(self, cmd: list[str]) -> bool:
        try:
            self._client(cmd)
        except (ClusterError, subprocess.TimeoutExpired):
            return False
        return True

    def _client_out(self, cmd: list[str]) -> str:
        try:
            return self._client(cmd)
        except (ClusterError, subprocess.TimeoutExpired) as e:
            return str(e)

    def _sacctmgr_answers(self) -> bool:
        return self._client_ok(["sacctmgr", "-n", "list", "cluster"])

    def _node_idle(self) -> bool:
        states = self._client_out(["sinfo", "-h", "-N", "-o", "%T"]).split()
        return bool(states) and all(state == "idle" for state in states)


def _total_memory_mb() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) // 1024
    raise ClusterError("/proc/meminfo has no MemTotal line")


def session_cluster():
    """Generator behind the `slurm_cluster` pytest fixture: yields a running `SlurmCluster`.

    Reuses a cluster already named by SLURM_CONF (one started by `up`) and leaves it running;
    otherwise starts a fresh one in a temporary directory and stops exactly what it started.
    """
    import pytest

    conf = os.environ.get("SLURM_CONF")
    if conf and (Path(conf).parent.parent / STATE_FILE).exists():
        cluster = SlurmCluster.attach(Path(conf).parent.parent)
        if cluster.is_running():
            yield cluster
            return
    reason = unavailable_reason()
    if reason:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI must run the Slurm tests, but: {reason}")
        pytest.skip(reason)
    cluster = SlurmCluster()
    try:
        cluster.start()
    except ClusterError as error:
        pytest.fail(f"could not bring up the local Slurm cluster: {error}")
    previous = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = cluster.slurm_conf
    try:
        yield cluster
    finally:
        cluster.stop()
        if previous is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = previous
        shutil.rmtree(cluster.root, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("action", choices=("up", "down", "status"))
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIR, help="where the cluster lives")
    parser.add_argument("--cpus", type=int, default=None, help="CPUs to declare (default: real)")
    args = parser.parse_args(argv)
    state_file = args.dir / STATE_FILE
    if args.action == "up":
        if state_file.exists() and SlurmCluster.attach(args.dir).is_running():
            print(f"already running; export SLURM_CONF={args.dir / 'etc' / 'slurm.conf'}")
            return 0
        cluster = SlurmCluster(args.dir, cpus=args.cpus).start()
        print(f"export SLURM_CONF={cluster.slurm_conf}")
        return 0
    if not state_file.exists():
        print(f"no cluster under {args.dir}", file=sys.stderr)
        return 1
    cluster = SlurmCluster.attach(args.dir)
    if args.action == "status":
        print(cluster.status())
    else:
        cluster.stop()
        print("stopped")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
