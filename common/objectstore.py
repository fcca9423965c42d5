"""Folders on an object store (``s3://bucket/prefix``), mirrored by a local working copy.

A lake or registry given as a URL works in a local folder (the working copy, ``working_copy``) bound to the URL
by a ``.remote.json`` file in it; every folder below inherits the binding (``Mirror.of``). The object store is
the shared truth, the working copy a cache: what flowhawk writes locally (atomically, as for a local lake) is
then pushed, and what another machine pushed is pulled on demand.

Object stores have no atomic rename, so each unit (a lake batch, a report, a model version) has a **commit
marker**, its manifest: ``push`` uploads the other files first and the marker last, and a unit is visible
(``committed``, ``pull``) only once its marker exists. A writer killed mid-push leaves objects without a
marker: invisible, removed by ``clean_uncommitted`` once older than a grace period (a writer on another
machine may still be pushing), or overwritten by the rerun. A single object (a pointer, a marker) is written by
one PUT, which S3 applies whole or not at all.

Filesystems come from ``pyarrow.fs.FileSystem.from_uri``: credentials from the standard AWS variables
(``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_REGION``), the endpoint of an S3-compatible server from
``AWS_ENDPOINT_URL`` or the URL's query (``s3://bucket/lake?endpoint_override=http://host:8333``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pyarrow.fs as pafs

from flowhawk.common.files import (
    atomic_path,
    atomic_write_bytes,
    atomic_write_json,
    exclusive_lock,
    swap_dir,
    tmp_sibling,
)

log = logging.getLogger(__name__)

SCHEMES = ("s3",)
REMOTE_FILE = ".remote.json"
STORE_ID = ".flowhawk-store.json"  # at the URL: the store's identity (hidden from unit listings: a '.' name)
CHUNK = 8 << 20
PULL_LOCKS = ".pull-locks"  # in a working copy: one lock file per unit being pulled (never pushed)
STALE_UPLOAD_S = 3600.0  # an uncommitted unit younger than this may belong to a push in progress


def is_url(location: str | Path) -> bool:
    """True for ``s3://...`` (a ``Path`` is always local: ``Path('s3://b')`` would lose a slash)."""
    return isinstance(location, str) and location.split("://", 1)[0] in SCHEMES and "://" in location


@dataclass(frozen=True)
class StoreEntry:
    rel: str  # path relative to the store's prefix, '/'-separated
    size: int
    mtime: float  # seconds since the epoch (0 when the store does not say)


class ObjectStore:
    """A prefix of an object store (or of any ``pyarrow.fs`` filesystem) addressed by relative paths."""

    def __init__(self, url: str, filesystem: pafs.FileSystem | None = None, base: str | None = None) -> None:
        self.url = url.rstrip("/")
        if filesystem is None or base is None:
            try:
                filesystem, base = pafs.FileSystem.from_uri(self.url)
            except (OSError, ValueError) as exc:
                raise ValueError(f"{self.url}: not a usable object-store URL ({exc})") from None
        self.fs, self.base = filesystem, base.rstrip("/")

    def child(self, rel: str) -> ObjectStore:
        rel = rel.strip("/")
        return ObjectStore(f"{self.url}/{rel}", self.fs, f"{self.base}/{rel}") if rel else self

    def key(self, rel: str) -> str:
        rel = rel.strip("/")
        return f"{self.base}/{rel}" if rel else self.base

    def uri(self, rel: str = "") -> str:
        """The object's URL (``s3://bucket/prefix/rel``), for readers outside flowhawk."""
        scheme = self.url.split("://", 1)[0]
        return f"{scheme}://{self.key(rel)}"

    def list(self, rel: str = "") -> list[StoreEntry]:
        """Every object below ``rel`` (recursive; empty when there is none)."""
        start = self.key(rel)
        infos = self.fs.get_file_info(pafs.FileSelector(start, recursive=True, allow_not_found=True))
        cut = len(self.base) + 1
        return [StoreEntry(i.path[cut:], i.size or 0, i.mtime.timestamp() if i.mtime else 0.0)
                for i in infos if i.type == pafs.FileType.File]

    def exists(self, rel: str) -> bool:
        return self.fs.get_file_info(self.key(rel)).type == pafs.FileType.File

    def read_bytes(self, rel: str) -> bytes:
        """The object's bytes; FileNotFoundError naming its URL when it does not exist."""
        if not self.exists(rel):
            raise FileNotFoundError(f"{self.uri(rel)}: no such object")
        with self.fs.open_input_stream(self.key(rel)) as fh:
            return fh.read()

    def write_bytes(self, rel: str, data: bytes) -> None:
        """One PUT: readers see the old object or the whole new one."""
        out = self.fs.open_output_stream(self.key(rel))
        out.write(data)
        out.close()

    def upload(self, local: Path, rel: str) -> None:
        """Stream a local file into one object. The stream is closed explicitly, so a failed upload raises
        (``pyarrow.fs.copy_files`` and a stream's destructor only log the error)."""
        out = self.fs.open_output_stream(self.key(rel))
        try:
            with Path(local).open("rb") as fh:
                while block := fh.read(CHUNK):
                    out.write(block)
        except BaseException:
            out.abort()
            raise
        out.close()

    def download(self, rel: str, local: Path) -> None:
        """The object into ``local`` (a temp name beside it, then renamed)."""
        with atomic_path(Path(local)) as tmp, self.fs.open_input_stream(self.key(rel)) as src, tmp.open("wb") as fh:
            while block := src.read(CHUNK):
                fh.write(block)

    def delete(self, rels: list[str]) -> None:
        for rel in rels:
            self.fs.delete_file(self.key(rel))


def working_copy(url: str, cache_root: Path) -> Path:
    """The local working copy of ``url`` under ``cache_root`` (created and bound on first use).

    The store carries an identity (``.flowhawk-store.json``, created by the first user). A working copy made for
    another identity (the bucket was emptied or recreated since) is stale: it is discarded, so that nothing of
    the old store is read, or pushed into the new one, from it."""
    store = ObjectStore(url)  # fails here, with the URL, when it is not usable
    ident = _store_identity(store)
    folder = Path(cache_root).expanduser().resolve() / hashlib.sha256(store.url.encode()).hexdigest()[:16]
    binding = folder / REMOTE_FILE
    if binding.is_file() and json.loads(binding.read_text(encoding="utf-8")).get("store_id") != ident:
        log.warning("%s: working copy %s belongs to an earlier store at this URL; discarded", store.url, folder)
        shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if not binding.is_file():
        atomic_write_json(binding, {"url": store.url, "store_id": ident})
    return folder


def _store_identity(store: ObjectStore) -> str:
    try:
        return json.loads(store.read_bytes(STORE_ID))["id"]
    except FileNotFoundError:
        store.write_bytes(STORE_ID, json.dumps({"id": uuid.uuid4().hex}).encode())
        return json.loads(store.read_bytes(STORE_ID))["id"]  # two first users at once: the last PUT won


class Mirror:
    """A local folder and the object-store prefix it mirrors. Units are sub-folders with a marker file."""

    def __init__(self, local: Path, store: ObjectStore) -> None:
        self.local, self.store = Path(local), store

    @classmethod
    def of(cls, local: Path | str) -> Mirror | None:
        """The mirror of ``local`` when it (or a parent) is a bound working copy, else None (a plain folder)."""
        local = Path(local).resolve()
        for folder in (local, *local.parents):
            if (folder / REMOTE_FILE).is_file():
                url = json.loads((folder / REMOTE_FILE).read_text(encoding="utf-8"))["url"]
                rel = local.relative_to(folder).as_posix()
                return cls(local, ObjectStore(url).child("" if rel == "." else rel))
        return None

    def committed(self, rel: str, marker: str) -> dict[str, list[StoreEntry]]:
        """Units below ``rel`` whose marker exists: unit name -> its objects."""
        return {name: objs for name, objs in self._units(rel).items() if self._has_marker(rel, name, objs, marker)}

    @staticmethod
    def _has_marker(rel: str, name: str, objs: list[StoreEntry], marker: str) -> bool:
        want = "/".join(p for p in (rel.strip("/"), name, marker) if p)
        return any(o.rel == want for o in objs)

    def _units(self, rel: str) -> dict[str, list[StoreEntry]]:
        units: dict[str, list[StoreEntry]] = {}
        prefix = f"{rel.strip('/')}/" if rel.strip("/") else ""
        for entry in self.store.list(rel):
            parts = entry.rel[len(prefix):].split("/")
            if len(parts) >= 2 and not parts[0].startswith("."):
                units.setdefault(parts[0], []).append(entry)
        return units

    def push(self, rel: str, marker: str) -> None:
        """Upload the local unit ``rel``: every file but the marker, then the marker (the commit)."""
        folder = self.local / rel
        files = sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".tmp-"))
        for path in [p for p in files if p.name != marker] + [folder / marker]:
            self.store.upload(path, f"{rel}/{path.relative_to(folder).as_posix()}")

    def pull(self, rel: str, marker: str, refresh: bool = False) -> bool:
        """Download the committed unit ``rel`` into the working copy (temp folder, then rename); False when the
        store has no committed unit there. A unit already local is kept, unless ``refresh`` and its marker
        differs from the store's (a unit replaced as a whole, e.g. a report written again)."""
        final = self.local / rel
        if self._current(rel, marker, refresh):
            return True
        lock = self.local / PULL_LOCKS / f"{hashlib.sha256(rel.encode()).hexdigest()[:16]}.lock"
        with exclusive_lock(lock):  # one pull of a unit at a time, across the threads and processes sharing the copy
            if self._current(rel, marker, refresh):
                return True  # pulled by another while this one waited: swapping it again would pull it from
            return self._download(rel, marker, final)  # under a reader's feet (a Dask worker's other task)

    def _current(self, rel: str, marker: str, refresh: bool) -> bool:
        """The unit is local, and (with ``refresh``) its marker is the store's."""
        return (self.local / rel / marker).is_file() and not (refresh and self._marker_changed(rel, marker))

    def _download(self, rel: str, marker: str, final: Path) -> bool:
        """``pull``'s download: the unit's files into a temp folder, the marker last, then swapped in."""
        try:
            marker_bytes = self.store.read_bytes(f"{rel}/{marker}")
        except FileNotFoundError:
            return False
        tmp = tmp_sibling(final)
        try:
            for entry in self.store.list(rel):
                inner = entry.rel[len(rel.strip("/")) + 1:]
                if inner != marker:
                    (tmp / inner).parent.mkdir(parents=True, exist_ok=True)
                    self.store.download(entry.rel, tmp / inner)
            tmp.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(tmp / marker, marker_bytes)
            swap_dir(tmp, final)  # a unit replaced as a whole: readers see the old one or the new one
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return True

    def _marker_changed(self, rel: str, marker: str) -> bool:
        try:
            return self.store.read_bytes(f"{rel}/{marker}") != (self.local / rel / marker).read_bytes()
        except FileNotFoundError:
            return False

    def push_file(self, rel: str) -> None:
        self.store.upload(self.local / rel, rel)

    def pull_file(self, rel: str) -> bool:
        """Replace the local file with the store's copy (atomically); False when the store has none."""
        try:
            data = self.store.read_bytes(rel)
        except FileNotFoundError:
            return False
        (self.local / rel).parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(self.local / rel, data)
        return True

    def clean_uncommitted(self, rel: str, marker: str, older_than_s: float = STALE_UPLOAD_S) -> int:
        """Delete units below ``rel`` without a marker whose newest object is older than ``older_than_s``
        (leftovers of killed pushes); returns how many units."""
        cutoff, removed = time.time() - older_than_s, 0
        for name, objs in self._units(rel).items():
            if not self._has_marker(rel, name, objs, marker) and max(o.mtime for o in objs) < cutoff:
                self.store.delete([o.rel for o in objs])
                removed += 1
        return removed


def resolve_location(location: str | Path, cache_root: Path) -> Path:
    """The folder flowhawk works in for ``location``: the working copy of an ``s3://`` URL (under
    ``cache_root``), or the local folder made absolute."""
    if is_url(str(location)):
        return working_copy(str(location), cache_root)
    if "://" in str(location):
        raise ValueError(f"{location}: unsupported URL scheme (supported: {', '.join(SCHEMES)}, or a local folder)")
    return Path(location).expanduser().resolve()
