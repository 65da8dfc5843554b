"""The file backend: Easy Auth's token store on a local disk, one signed JSON file per user.

App Service keeps each user's tokens in one file; so does this backend, so a
small installation needs no database and an operator can see (and back up)
what is stored per user. Payloads arrive sealed by the layer above; what this
module adds is that nobody can edit the *structure* around them unnoticed:
every file starts with an HMAC-SHA256 over its own path and content, and a file
that fails it (bit flip, truncation, a file copied over another) raises
:class:`~authgate.errors.CorruptRecord` instead of being used. The MAC key is
derived from ``<dir>/.filekey`` (32 random bytes, mode 0600, made on first
open): back it up with the data. Old but genuine copies of a file (rollback)
are not detected.

Layout (``h(x)`` is a keyed hash, so file names do not reveal user ids)::

    <dir>/records/<kind>/<h(id)>.json     a record without subject, in full; or,
                                          for a record with one, a pointer to its file
    <dir>/subjects/<kind>/<h(subject)>.json  that user's records of that kind
    <dir>/grants/<h(grant_id)>.json       the [kind, id] pairs of a family (a superset)
    <dir>/locks/<id|sub|grant>-<nn>.lock  flock stripes

Consistency without a database: every write goes to a temporary file that is
fsync'ed and renamed over the old one, so readers see a whole old or a whole
new file. Writers take ``fcntl.flock`` stripes, always in the order id →
subject → grant, so they serialise per record and per file across processes
without deadlock. The record file (or pointer) is the commit point: a subject
file entry counts only while the pointer names that subject (so a record
moves between users by rewriting the new user's file, then the pointer, then
the old file), and the grant index is written *before* the commit and cleaned
after it, so a crash can leave a stale entry (ignored, and removed by
``purge``) but never hide a family member from ``revoke_by_grant``. Blocking file work runs in worker
threads, never on the event loop. Needs a local file system (flock on NFS is
unreliable).

Costs: ``find``/``consume`` read one or two small files; a write rewrites the
user's file of that kind; ``revoke_by_grant`` reads the family's index and
each member; ``find_by_subject`` reads one file plus a pointer per result;
``scan``, ``count`` and ``purge`` list the directory (``scan`` learns each
file's id once per process, ``purge`` reads everything): maintenance
operations sized for the small installations this backend is for.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import fcntl
import hashlib
import hmac
import os
import re
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from urllib.parse import unquote, urlsplit

from ..errors import ConfigError, CorruptRecord
from .base import Record
from .signed_files import Body, SignedFileIO, _enc

_KIND = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_STRIPES = 64
_LOCK_ORDER = {"id": 0, "sub": 1, "grant": 2}



def file_root(url: str) -> Path:
    """``file:///abs/dir`` or ``file://relative/dir``."""
    parts = urlsplit(url)
    if parts.scheme != "file" or parts.query or parts.fragment:
        raise ConfigError(f"a file store URL is file:///abs/dir or file://rel/dir, not {url!r}")
    path = unquote(parts.netloc + parts.path)
    if not path:
        raise ConfigError("a file store URL needs a directory: file:///abs/dir")
    return Path(path)


def _kind(kind: str) -> str:
    if not _KIND.fullmatch(kind):
        raise ValueError(f"record kind {kind!r} is not usable as a directory name")
    return kind


def _entry(record: Record) -> Body:
    return {
        "payload": base64.b64encode(record.payload).decode(),
        "expires_at": record.expires_at,
        "grant_id": record.grant_id,
        "consumed_at": record.consumed_at,
    }


def _float(value: float | None) -> float | None:
    return None if value is None else float(value)


def _from_entry(kind: str, id: str, subject: str | None, body: Body) -> Record:
    try:
        return Record(
            kind=kind,
            id=id,
            payload=base64.b64decode(body["payload"], validate=True),
            expires_at=_float(body["expires_at"]),
            grant_id=body["grant_id"],
            subject=subject,
            consumed_at=_float(body["consumed_at"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise CorruptRecord(f"file store entry {kind}/{id[:8]}… is malformed") from exc


class FileBackend(SignedFileIO):
    url_scheme = "file"

    def __init__(self, url: str) -> None:
        self.root = file_root(url)
        self._mac_key = b""
        self._name_key = b""
        self._ids: dict[str, str] = {}  # file name -> id (names are a function of the id)

    # -- setup ------------------------------------------------------------------

    async def open(self) -> None:
        if not self._mac_key:
            await asyncio.to_thread(self._open)

    def _open(self) -> None:
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        for sub in ("records", "subjects", "grants", "locks"):
            (self.root / sub).mkdir(mode=0o700, exist_ok=True)
        key = self._file_key()
        self._mac_key = hmac.new(key, b"authgate file store: mac", hashlib.sha256).digest()
        self._name_key = hmac.new(key, b"authgate file store: names", hashlib.sha256).digest()

    async def close(self) -> None:
        self._mac_key = self._name_key = b""

    # -- files ------------------------------------------------------------------

    def _name(self, value: str) -> str:
        if not self._name_key:
            raise RuntimeError("FileBackend used before open()")
        return hmac.new(self._name_key, _enc(value), hashlib.sha256).hexdigest()[:32]

    def _record_path(self, kind: str, id: str) -> str:
        return f"records/{_kind(kind)}/{self._name(id)}.json"

    def _subject_path(self, kind: str, subject: str) -> str:
        return f"subjects/{_kind(kind)}/{self._name(subject)}.json"

    def _grant_path(self, grant_id: str) -> str:
        return f"grants/{self._name(grant_id)}.json"

    @contextlib.contextmanager
    def _locked(self, *keys: tuple[str, str], shared: bool = False) -> Iterator[None]:
        """Hold flock stripes for ``(class, value)`` keys, taken in the global order."""
        stripes = sorted({
            (_LOCK_ORDER[cls], cls, int(self._name(v)[:4], 16) % _STRIPES) for cls, v in keys
        })
        with contextlib.ExitStack() as stack:
            for _, cls, stripe in stripes:
                path = self.root / "locks" / f"{cls}-{stripe:02d}.lock"
                fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
                stack.callback(os.close, fd)
                fcntl.flock(fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
            yield

    # -- records (callers hold the id stripe) -------------------------------------

    def _load(self, kind: str, id: str) -> Record | None:
        body = self._read(self._record_path(kind, id))
        if body is None:
            return None
        if body.get("kind") != kind or body.get("id") != id:
            raise CorruptRecord(f"file store record {kind}/{id[:8]}… holds another record")
        subject = body.get("subject")
        if subject is None:
            return _from_entry(kind, id, None, body)
        shard = self._read(self._subject_path(kind, subject))
        entry = (shard or {}).get("records", {}).get(id)
        return _from_entry(kind, id, subject, entry) if entry is not None else None

    def _edit_subject(self, kind: str, subject: str, id: str, entry: Body | None) -> None:
        rel = self._subject_path(kind, subject)
        shard = self._read(rel) or {"kind": kind, "subject": subject, "records": {}}
        if entry is None:
            shard["records"].pop(id, None)
        else:
            shard["records"][id] = entry
        if shard["records"]:
            self._write(rel, shard)
        else:
            self._unlink(rel)

    def _edit_grant(self, grant_id: str, kind: str, id: str, *, add: bool) -> None:
        rel = self._grant_path(grant_id)
        body = self._read(rel) or {"grant_id": grant_id, "members": []}
        members = [m for m in body["members"] if m != [kind, id]]
        if (len(members) < len(body["members"])) == add:
            return  # already listed / not listed: nothing to write
        if add:
            members.append([kind, id])
        if members:
            self._write(rel, {"grant_id": grant_id, "members": members})
        else:
            self._unlink(rel)

    def _store(self, record: Record, old: Record | None) -> None:
        kind, id = record.kind, record.id
        before = (None, None) if old is None else (old.subject, old.grant_id)
        keys = [("sub", f"{kind}\0{s}") for s in {record.subject, before[0]} if s is not None]
        keys += [("grant", g) for g in {record.grant_id, before[1]} if g is not None]
        with self._locked(*keys):
            if record.grant_id is not None:
                self._edit_grant(record.grant_id, kind, id, add=True)
            if record.subject is not None:
                self._edit_subject(kind, record.subject, id, _entry(record))
                if before[0] != record.subject:  # the pointer is the commit point
                    pointer = {"kind": kind, "id": id, "subject": record.subject}
                    self._write(self._record_path(kind, id), pointer)
            else:  # the record file is the commit point
                full = {"kind": kind, "id": id, "subject": None, **_entry(record)}
                self._write(self._record_path(kind, id), full)
            if old is not None and old.subject not in (None, record.subject):
                self._edit_subject(kind, old.subject, id, None)
            if old is not None and old.grant_id not in (None, record.grant_id):
                self._edit_grant(old.grant_id, kind, id, add=False)

    def _remove(self, old: Record) -> None:
        keys = [("sub", f"{old.kind}\0{old.subject}")] if old.subject is not None else []
        if old.grant_id is not None:
            keys.append(("grant", old.grant_id))
        with self._locked(*keys):
            self._unlink(self._record_path(old.kind, old.id))  # the commit point
            if old.subject is not None:
                self._edit_subject(old.kind, old.subject, old.id, None)
            if old.grant_id is not None:
                self._edit_grant(old.grant_id, old.kind, old.id, add=False)

    # -- the contract -------------------------------------------------------------

    def _upsert(self, record: Record, now: float, only_if_dead: bool) -> bool:
        with self._locked(("id", f"{record.kind}\0{record.id}")):
            old = self._load(record.kind, record.id)
            if only_if_dead and old is not None and old.live(now):
                return False
            self._store(record, old)
            return True

    async def upsert(self, record: Record, *, now: float) -> None:
        await asyncio.to_thread(self._upsert, record, now, False)

    async def insert(self, record: Record, *, now: float) -> bool:
        return await asyncio.to_thread(self._upsert, record, now, True)

    def _find(self, kind: str, id: str, now: float) -> Record | None:
        with self._locked(("id", f"{kind}\0{id}"), shared=True):
            record = self._load(kind, id)
        return record if record is not None and record.live(now) else None

    async def find(self, kind: str, id: str, *, now: float) -> Record | None:
        return await asyncio.to_thread(self._find, kind, id, now)

    def _consume(self, kind: str, id: str, now: float) -> Record | None:
        with self._locked(("id", f"{kind}\0{id}")):
            record = self._load(kind, id)
            if record is None or not record.live(now):
                return None
            if record.consumed_at is None:
                self._store(replace(record, consumed_at=now), record)
            return record

    async def consume(self, kind: str, id: str, *, now: float) -> Record | None:
        return await asyncio.to_thread(self._consume, kind, id, now)

    def _destroy(self, kind: str, id: str, *, expired_at: float | None = None) -> bool:
        """Delete one record; with ``expired_at``, only if it is expired then."""
        with self._locked(("id", f"{kind}\0{id}")):
            old = self._load(kind, id)
            if old is None:
                return False
            if expired_at is not None and old.live(expired_at):
                return False
            self._remove(old)
            return True

    async def destroy(self, kind: str, id: str) -> bool:
        return await asyncio.to_thread(self._destroy, kind, id)

    def _revoke(self, grant_id: str) -> int:
        rel, removed = self._grant_path(grant_id), 0
        for _ in range(10):  # members added while we revoke are revoked on the next pass
            body = self._read(rel)
            if body is None:
                break
            for kind, id in body["members"]:
                removed += self._revoke_member(grant_id, kind, id)
        return removed

    def _revoke_member(self, grant_id: str, kind: str, id: str) -> bool:
        with self._locked(("id", f"{kind}\0{id}")):
            old = self._load(kind, id)
            if old is not None and old.grant_id == grant_id:
                self._remove(old)
                return True
            with self._locked(("grant", grant_id)):
                self._edit_grant(grant_id, kind, id, add=False)  # a stale member
            return False

    async def revoke_by_grant(self, grant_id: str) -> int:
        return await asyncio.to_thread(self._revoke, grant_id)

    def _points_to(self, kind: str, id: str, subject: str) -> bool:
        pointer = self._read(self._record_path(kind, id))
        return pointer is not None and pointer.get("id") == id and pointer.get("subject") == subject

    def _by_subject(self, kind: str, subject: str, now: float, limit: int) -> list[Record]:
        shard = self._read(self._subject_path(kind, subject))
        out: list[Record] = []
        for id, entry in sorted((shard or {}).get("records", {}).items()):
            if len(out) >= limit:
                break
            record = _from_entry(kind, id, subject, entry)
            if record.live(now) and self._points_to(kind, id, subject):
                out.append(record)
        return out

    async def find_by_subject(
        self, kind: str, subject: str, *, now: float, limit: int = 1000
    ) -> list[Record]:
        return await asyncio.to_thread(self._by_subject, kind, subject, now, limit)

    def _files(self, kind: str) -> list[str]:
        try:
            names = os.listdir(self.root / "records" / _kind(kind))
        except FileNotFoundError:
            return []
        return [n for n in names if n.endswith(".json") and not n.startswith(".")]

    def _scan(self, kind: str, after: str | None, limit: int) -> list[Record]:
        ids = []
        for name in self._files(kind):
            if name not in self._ids:
                body = self._read(f"records/{kind}/{name}")
                if body is None:
                    continue
                self._ids[name] = body["id"]
            ids.append(self._ids[name])
        out: list[Record] = []
        for id in sorted(i for i in ids if after is None or i > after):
            if len(out) >= limit:
                break
            with self._locked(("id", f"{kind}\0{id}"), shared=True):
                record = self._load(kind, id)
            if record is not None:
                out.append(record)
        return out

    async def scan(self, kind: str, *, after: str | None = None, limit: int = 500) -> list[Record]:
        return await asyncio.to_thread(self._scan, kind, after, limit)

    def _kinds(self) -> list[str]:
        return sorted(k for k in os.listdir(self.root / "records") if _KIND.fullmatch(k))

    def _purge(self, now: float, limit: int) -> int:
        removed = 0
        for kind in self._kinds():
            for name in self._files(kind):
                if removed >= limit:
                    return removed
                body = self._read(f"records/{kind}/{name}")
                if body is None:
                    continue
                expired = body.get("subject") is None and not _from_entry(
                    kind, body["id"], None, body).live(now)
                if expired and self._destroy(kind, body["id"], expired_at=now):
                    removed += 1
            sub_dir = self.root / "subjects" / kind
            for name in sorted(os.listdir(sub_dir)) if sub_dir.exists() else []:
                if name.startswith(".") or removed >= limit:
                    continue
                shard = self._read(f"subjects/{kind}/{name}")
                if shard is None:
                    continue
                for id, entry in sorted(shard["records"].items()):
                    if removed >= limit:
                        break
                    record = _from_entry(kind, id, shard["subject"], entry)
                    if not record.live(now) and self._destroy(kind, id, expired_at=now):
                        removed += 1
                self._drop_orphans(kind, shard["subject"])
        return removed

    def _drop_orphans(self, kind: str, subject: str) -> None:
        """Remove entries a crash left behind (their pointer names another subject)."""
        rel = self._subject_path(kind, subject)
        with self._locked(("sub", f"{kind}\0{subject}")):
            shard = self._read(rel)
            if shard is None:
                return
            live = {i: e for i, e in shard["records"].items() if self._points_to(kind, i, subject)}
            if len(live) != len(shard["records"]):
                shard["records"] = live
                if live:
                    self._write(rel, shard)
                else:
                    self._unlink(rel)

    async def purge(self, *, now: float, limit: int = 1000) -> int:
        return await asyncio.to_thread(self._purge, now, limit)

    def _count(self, kind: str | None) -> int:
        kinds = [kind] if kind is not None else self._kinds()
        return sum(len(self._files(k)) for k in kinds)

    async def count(self, kind: str | None = None) -> int:
        return await asyncio.to_thread(self._count, kind)
