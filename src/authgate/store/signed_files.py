"""Signed files for the file backend: whole-file writes and an HMAC over path + content.

Every file starts with ``authgate-file-v1 <hex HMAC-SHA256(path \\n content)>``; a
file that fails it -- bit flip, truncation, a file copied over another --
raises :class:`~authgate.errors.CorruptRecord` instead of being used. Writes go
to a temporary file that is fsync'ed and renamed into place (then the directory
is fsync'ed), so readers see a whole old or a whole new file.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import secrets
from pathlib import Path
from typing import Any

from ..errors import CorruptRecord

_MAGIC = b"authgate-file-v1"
Body = dict[str, Any]


def _enc(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


class SignedFileIO:
    """Mixin: reads and writes signed files below ``self.root`` with ``self._mac_key``."""

    root: Path
    _mac_key: bytes

    def _file_key(self) -> bytes:
        path = self.root / ".filekey"
        if not path.exists():
            # Write the whole key under a temporary name, then link it into place:
            # of several processes opening a new store at once, exactly one key wins.
            tmp = self.root / f".filekey.{secrets.token_hex(8)}.tmp"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                os.write(fd, secrets.token_bytes(32))
                os.fsync(fd)
            finally:
                os.close(fd)
            with contextlib.suppress(FileExistsError):
                os.link(tmp, path)
            tmp.unlink()
        key = path.read_bytes()
        if len(key) != 32:
            raise CorruptRecord(f"{path} must hold exactly 32 bytes")
        return key

    def _mac(self, rel: str, data: bytes) -> bytes:
        mac = hmac.new(self._mac_key, _enc(rel) + b"\n" + data, hashlib.sha256)
        return mac.hexdigest().encode()

    def _read(self, rel: str) -> Body | None:
        try:
            raw = (self.root / rel).read_bytes()
        except FileNotFoundError:
            return None
        header, sep, data = raw.partition(b"\n")
        magic, _, mac = header.partition(b" ")
        if not sep or magic != _MAGIC or not hmac.compare_digest(mac, self._mac(rel, data)):
            raise CorruptRecord(f"file store file {rel} fails its integrity check")
        body = json.loads(data.decode("utf-8", "surrogatepass"))
        if not isinstance(body, dict):
            raise CorruptRecord(f"file store file {rel} is malformed")
        return body

    def _write(self, rel: str, body: Body) -> None:
        data = _enc(json.dumps(body, ensure_ascii=False, separators=(",", ":")))
        path = self.root / rel
        path.parent.mkdir(mode=0o700, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            try:
                os.write(fd, _MAGIC + b" " + self._mac(rel, data) + b"\n")
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        self._sync_dir(path.parent)

    def _unlink(self, rel: str) -> bool:
        path = self.root / rel
        try:
            path.unlink()
        except FileNotFoundError:
            return False
        self._sync_dir(path.parent)
        return True

    @staticmethod
    def _sync_dir(path: Path) -> None:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

