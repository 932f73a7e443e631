"""Subjects, their namespace credentials and per-namespace limits (OpenWhisk's subjects DB).

One JSON file, ``<state dir>/subjects.json``, holds
``{"subjects": {subject: {"subject", "namespaces": [{"name","uuid","key"}]}},
"limits": {namespace: {"invocationsPerMinute": n, "concurrentInvocations": n}}}``
(OpenWhisk's shapes: docs/openwhisk-contract.md, User administration). It holds every user's
key: it is created 0600 from its first byte. Writers take an exclusive ``flock`` and replace the
file atomically; the server reloads it when its modification time changes, so
``python -m localwhisk user create`` takes effect on a running server.
"""

from __future__ import annotations

import fcntl
import json
import secrets
import string
import threading
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from faasload.private_file import write_private

#: The preinstalled guest key (OpenWhisk ``ansible/files/auth.guest``).
GUEST_SUBJECT = "guest"
GUEST_UUID = "23bc46b1-71f6-4ed5-8c54-816aa4f8c502"
GUEST_KEY = "123zO3xZCLrMN6v2BKK1dXYFpXlPkccOFqm12CdAsMgRU4VrNZ9lyGVCGuMDGIwP"
KEY_LENGTH = 64
MIN_SUBJECT_LENGTH = 5
_KEY_ALPHABET = string.ascii_letters + string.digits
LIMIT_KEYS = ("invocationsPerMinute", "concurrentInvocations")


class UserError(ValueError):
    """An admin command that cannot be done (the message is for the operator)."""


@dataclass(frozen=True, slots=True)
class Identity:
    subject: str
    namespace: str
    uuid: str
    key: str

    @property
    def authkey(self) -> str:
        return f"{self.uuid}:{self.key}"


def generate_key() -> str:
    return "".join(secrets.choice(_KEY_ALPHABET) for _ in range(KEY_LENGTH))


class UserStore:
    """The subjects file; thread-safe; reloads on change."""

    def __init__(self, state_dir: Path):
        self.path = Path(state_dir) / "subjects.json"
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._by_credential: dict[tuple[str, str], Identity] = {}
        self._limits: dict[str, dict[str, int]] = {}

    # ------------------------------------------------------------------ reading

    def identify(self, uuid_text: str, key: str) -> Identity | None:
        self._maybe_reload()
        return self._by_credential.get((uuid_text, key))

    def limits_for(self, namespace: str) -> dict[str, int]:
        self._maybe_reload()
        return dict(self._limits.get(namespace, {}))

    def list(self) -> list[Identity]:
        data = self._read()
        return [_identity(s["subject"], ns) for s in data["subjects"].values() for ns in s["namespaces"]]

    def _maybe_reload(self) -> None:
        try:
            st = self.path.stat()
            stamp = (st.st_mtime_ns, st.st_size)
        except FileNotFoundError:
            stamp = None
        if stamp == self._stamp:
            return
        with self._lock:
            data = self._read()
            self._by_credential = {(ns["uuid"], ns["key"]): _identity(s["subject"], ns)
                                   for s in data["subjects"].values() if not s.get("blocked")
                                   for ns in s["namespaces"]}
            self._limits = data["limits"]
            self._stamp = stamp

    def _read(self) -> dict:
        try:
            with open(self.path, encoding="utf-8") as stream:
                data = json.load(stream)
        except FileNotFoundError:
            data = {}
        except json.JSONDecodeError as exc:
            raise UserError(f"{self.path}: not valid JSON ({exc})") from None
        data.setdefault("subjects", {})
        data.setdefault("limits", {})
        return data

    # ------------------------------------------------------------------ writing

    @contextmanager
    def _editing(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_suffix(".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            data = self._read()
            yield data
            write_private(self.path, json.dumps(data, indent=1, sort_keys=True).encode())

    def create(self, subject: str, *, namespace: str | None = None, authkey: str | None = None) -> Identity:
        """``wskadmin user create``: a new subject (or a new namespace of one); its identity."""
        if len(subject) < MIN_SUBJECT_LENGTH:
            raise UserError(f"Subject name must be at least {MIN_SUBJECT_LENGTH} characters")
        if authkey is not None:
            uuid_text, sep, key = authkey.partition(":")
            try:
                uuid.UUID(uuid_text)
            except ValueError:
                raise UserError("authorization id is not a valid UUID") from None
            if not sep or len(key) != KEY_LENGTH:
                raise UserError(f"authorization key must be exactly {KEY_LENGTH} characters")
        else:
            uuid_text, key = str(uuid.uuid4()), generate_key()
        namespace = namespace or subject
        with self._editing() as data:
            for other in data["subjects"].values():
                if any(ns["name"] == namespace for ns in other["namespaces"]):
                    raise UserError("Namespace already exists")
            entry = data["subjects"].setdefault(subject, {"subject": subject, "namespaces": []})
            if entry.get("blocked"):
                raise UserError("The subject you want to edit is blocked")
            entry["namespaces"].append({"name": namespace, "uuid": uuid_text, "key": key})
        return Identity(subject, namespace, uuid_text, key)

    def delete(self, subject: str) -> None:
        with self._editing() as data:
            if subject not in data["subjects"]:
                raise UserError("Subject id is not recognized")
            del data["subjects"][subject]

    def seed_guest(self) -> None:
        """Install OpenWhisk's default guest key unless a ``guest`` subject exists."""
        if GUEST_SUBJECT in self._read()["subjects"]:
            return
        with self._editing() as data:
            if GUEST_SUBJECT not in data["subjects"]:
                data["subjects"][GUEST_SUBJECT] = {"subject": GUEST_SUBJECT, "namespaces": [
                    {"name": GUEST_SUBJECT, "uuid": GUEST_UUID, "key": GUEST_KEY}]}

    def set_limits(self, namespace: str, **limits: int | None) -> dict[str, int]:
        """``wskadmin limits set``: merge the given overrides; returns the namespace's limits."""
        unknown = set(limits) - set(LIMIT_KEYS)
        if unknown:
            raise UserError(f"unknown limit {sorted(unknown)[0]!r} (known: {', '.join(LIMIT_KEYS)})")
        for name, value in limits.items():
            if value is not None and value < 0:
                raise UserError(f"{name} must be >= 0, got {value}")
        with self._editing() as data:
            entry = data["limits"].setdefault(namespace, {})
            entry.update({k: v for k, v in limits.items() if v is not None})
            return dict(entry)

    def delete_limits(self, namespace: str) -> None:
        with self._editing() as data:
            if data["limits"].pop(namespace, None) is None:
                raise UserError(f"Limits for namespace {namespace!r} do not exist")


def _identity(subject: str, ns: dict) -> Identity:
    return Identity(subject, ns["name"], ns["uuid"], ns["key"])
