"""Files a manager uploads to the console, kept between the preview and the import.

An upload is a folder of its own under the console's upload area, named by an unguessable id
(:func:`secrets.token_urlsafe`), holding the file as uploaded, a ``meta.json`` (who may see it,
its name, language and, once imported, the outcome) and the reject and changes files the import
wrote. It is bound to the session that uploaded it: :meth:`UploadStore.get` answers only for the
same user in the same session (an HMAC of both, compared in constant time), so an id seen in a
log or over a shoulder opens nothing. Uploads expire after :attr:`UploadStore.ttl` seconds and
are swept on every upload; the file itself is removed as soon as it has been imported.

Everything is on disk (nothing in the process's memory), so every console process on one host
with the same data directory sees the same uploads. :func:`parse_multipart` reads a
``multipart/form-data`` body with the standard library's MIME parser (no extra dependency).
"""

from __future__ import annotations

import contextlib
import email.parser
import email.policy
import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import shutil
import time
import unicodedata
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

__all__ = ["MultipartError", "Upload", "UploadStore", "parse_multipart", "upload_owner"]

#: The file types an upload may be (what :func:`storage.customers.read_rows` reads).
SUFFIXES: tuple[str, ...] = (".csv", ".txt", ".xlsx", ".xlsm")
_ID = re.compile(r"[A-Za-z0-9_-]{32}")
#: Uploads one session may keep at once (older ones are dropped first).
PER_OWNER = 5


class MultipartError(ValueError):
    """A request body that is not the form the upload page sends."""


@dataclass
class Upload:
    """One uploaded file and what became of it.

    :param result: the import's outcome (counts, list, whether reject and changes files exist),
        None until it is imported.
    """

    id: str
    owner: str
    filename: str
    suffix: str
    lang: str
    created: float
    folder: Path = field(repr=False)
    result: dict[str, Any] | None = None

    @property
    def source(self) -> Path:
        """The file as uploaded (gone once imported)."""
        return self.folder / f"upload{self.suffix}"

    @property
    def rejects(self) -> Path:
        """The reject file the import wrote (when a row was rejected)."""
        return self.folder / "rejects.csv"

    @property
    def changes(self) -> Path:
        """The changes file an update import wrote (when a field changed)."""
        return self.folder / "changes.csv"


def upload_owner(secret: bytes, user_id: int, session_token: str) -> str:
    """The key an upload is bound to: one user in one session (``session_token``: its CSRF token)."""
    return hmac.new(secret, f"upload:{user_id}:{session_token}".encode(), hashlib.sha256).hexdigest()


def safe_filename(name: str) -> str:
    """The uploaded file's name for pages and downloads: no folders, no control characters, bounded."""
    base = re.split(r"[\\/]", name)[-1]
    cleaned = "".join(c for c in unicodedata.normalize("NFC", base) if unicodedata.category(c)[0] != "C")
    return cleaned.strip()[:120] or "upload"


class UploadStore:
    """The upload area: a folder per upload under ``root`` (made, mode 0700, at the first upload).

    :param ttl: seconds an upload is kept (a preview left open longer is uploaded again).
    :param clock: wall-clock seconds (injected for tests).
    """

    def __init__(self, root: Path, *, ttl: float = 3600.0, clock: Callable[[], float] = time.time) -> None:
        self.root = root
        self.ttl = ttl
        self.clock = clock

    def save(self, owner: str, filename: str, data: bytes, *, lang: str) -> Upload:
        """Keep ``data`` as a new upload of ``owner``'s and return it (expired uploads swept first).

        :raises ValueError: the file name's type is not one an import reads.
        """
        name = safe_filename(filename)
        suffix = Path(name).suffix.lower()
        if suffix not in SUFFIXES:
            raise ValueError(f"not a CSV or XLSX file: {name}")
        self.sweep()
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        mine = sorted((u for u in self._all() if u.owner == owner), key=lambda u: u.created)
        for old in mine[: max(len(mine) - PER_OWNER + 1, 0)]:
            self.discard(old)
        upload_id = secrets.token_urlsafe(24)
        folder = self.root / upload_id
        folder.mkdir(mode=0o700)
        upload = Upload(upload_id, owner, name, suffix, lang, self.clock(), folder)
        _write_atomic(upload.source, data)
        self._store(upload)
        return upload

    def get(self, upload_id: str, owner: str) -> Upload | None:
        """The upload ``upload_id`` if it exists, has not expired and is ``owner``'s; else None."""
        if not _ID.fullmatch(upload_id):
            return None
        upload = self._load(self.root / upload_id)
        if upload is None or not hmac.compare_digest(upload.owner, owner):
            return None
        if self.clock() - upload.created > self.ttl:
            self.discard(upload)
            return None
        return upload

    def finish(self, upload: Upload, result: dict[str, Any]) -> None:
        """Record the import's outcome and remove the uploaded file (the results stay until expiry)."""
        upload.result = result
        self._store(upload)
        with contextlib.suppress(FileNotFoundError):
            upload.source.unlink()

    def discard(self, upload: Upload) -> None:
        """Remove an upload and everything it holds."""
        shutil.rmtree(upload.folder, ignore_errors=True)

    def sweep(self) -> int:
        """Remove every expired upload (and any folder that is not an upload); how many were removed."""
        removed = 0
        if not self.root.is_dir():
            return 0
        now = self.clock()
        for folder in self.root.iterdir():
            upload = self._load(folder)
            if upload is None or now - upload.created > self.ttl:
                if folder.is_dir():
                    shutil.rmtree(folder, ignore_errors=True)
                else:
                    with contextlib.suppress(OSError):
                        folder.unlink()
                removed += 1
        if removed:
            logger.info("uploads: %d expired upload(s) removed", removed)
        return removed

    def _all(self) -> list[Upload]:
        if not self.root.is_dir():
            return []
        return [u for u in (self._load(folder) for folder in self.root.iterdir()) if u is not None]

    def _store(self, upload: Upload) -> None:
        meta = {k: v for k, v in asdict(upload).items() if k != "folder"}
        _write_atomic(upload.folder / "meta.json", json.dumps(meta, ensure_ascii=False).encode())

    def _load(self, folder: Path) -> Upload | None:
        try:
            meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
            return Upload(
                id=str(meta["id"]),
                owner=str(meta["owner"]),
                filename=str(meta["filename"]),
                suffix=str(meta["suffix"]),
                lang=str(meta["lang"]),
                created=float(meta["created"]),
                folder=folder,
                result=meta.get("result"),
            )
        except (OSError, ValueError, KeyError, TypeError):
            return None


def _write_atomic(path: Path, data: bytes) -> None:
    """Write ``path`` under a temporary name in its folder, then rename it."""
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise


@dataclass(frozen=True, slots=True)
class FilePart:
    """A file field of a form: its name as the browser sent it and its bytes."""

    filename: str
    data: bytes


def parse_multipart(content_type: str, body: bytes) -> tuple[dict[str, str], dict[str, FilePart]]:
    """A ``multipart/form-data`` body: its text fields and its file fields, by field name.

    :raises MultipartError: not multipart, no boundary, or a body that is not one.
    """
    if not content_type.lower().startswith("multipart/form-data") or "boundary=" not in content_type:
        raise MultipartError("expected multipart/form-data with a boundary")
    parser = email.parser.BytesParser(policy=email.policy.HTTP)
    message = parser.parsebytes(b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + body)
    if not message.is_multipart() or message.defects:
        raise MultipartError("the form body is not well-formed multipart")
    fields: dict[str, str] = {}
    files: dict[str, FilePart] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str):
            continue
        payload = part.get_payload(decode=True)
        data = payload if isinstance(payload, bytes) else b""
        filename = part.get_param("filename", header="content-disposition")
        if filename is not None:
            files[name] = FilePart(_utf8_name(str(filename)), data)
        else:
            fields[name] = data.decode("utf-8", errors="replace")
    return fields, files


def _utf8_name(name: str) -> str:
    """A file name the browser sent as raw UTF-8 bytes (which the MIME parser read as Latin-1 or escapes)."""
    try:
        return name.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return name.encode("utf-8", errors="surrogateescape").decode("utf-8", errors="replace")
