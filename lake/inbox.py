"""An inbox folder that several processes can drain at once without taking the same file twice.

Layout::

    <inbox>/capture.pcap               new files (a sidecar <capture>.labels.csv or <stem>.labels.csv
    <inbox>/capture.labels.csv         travels with its capture; so does <capture>.capture.json, the
                                       packet counts and drops of a live capture: lake.capture)
    <inbox>/processing/<claim_id>/     files claimed by one run; .lock is flock'ed while the run lives
    <inbox>/done/<claim_id>/           processed files, with _outcome.json
    <inbox>/quarantine/<claim_id>/     bad files, each beside <name>.reason.txt

A claim is made by renaming files into the claim folder (``rename`` is atomic: of two runs, exactly one gets
each file). The claim folder holds an exclusive ``flock`` for the life of the owning process; the kernel drops
it when the process dies (even by SIGKILL), so a later run recognises the folder as abandoned and resumes it.
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import shutil
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from flowhawk.common.files import atomic_write_json, atomic_write_text, try_lock
from flowhawk.lake.inputs import not_regular

log = logging.getLogger(__name__)
LABELS_SUFFIX = ".labels.csv"
CAPTURE_STATS_SUFFIX = ".capture.json"
_SIDECARS = (LABELS_SUFFIX, CAPTURE_STATS_SUFFIX)
_PARTIAL_SUFFIXES = (".part", ".partial", ".tmp", ".crdownload", ".filepart")
_LOCK = ".lock"
_RESERVED = ("processing", "done", "quarantine")
_DEAD_AFTER_S = 60.0
CLAIM_ID_RE = re.compile(r"^c-\d{8}t\d{6}-[0-9a-f]{6}$")


class InboxError(RuntimeError):
    """The inbox itself is unusable (one line naming the folder and why)."""


@dataclass(frozen=True)
class InboxConfig:
    """``settle_seconds``: files modified more recently are left for a later run (they may still be copied
    in). ``max_files``: captures per claim (the rest wait for the next claim)."""

    root: Path
    settle_seconds: float = 5.0
    max_files: int = 100

    def __post_init__(self) -> None:
        if not isinstance(self.settle_seconds, (int, float)) or not 0 <= self.settle_seconds <= 86_400:
            raise ValueError(f"InboxConfig.settle_seconds must be in [0, 86400], got {self.settle_seconds!r}")
        if not isinstance(self.max_files, int) or not 1 <= self.max_files <= 100_000:
            raise ValueError(f"InboxConfig.max_files must be an integer in [1, 100000], got {self.max_files!r}")
        object.__setattr__(self, "root", Path(self.root))


@dataclass
class Claim:
    """Files one run holds. ``captures``: paths inside the claim folder; ``labels``: capture name -> sidecar."""

    claim_id: str
    directory: Path
    captures: list[Path]
    labels: dict[str, Path] = field(default_factory=dict)
    stats: dict[str, Path] = field(default_factory=dict)  # capture name -> its .capture.json (live captures)
    resumed: bool = False
    refused: dict[str, str] = field(default_factory=dict)  # entry name -> why it is not a capture (a link...)
    _fd: int | None = field(default=None, repr=False)

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None


def new_claim_id() -> str:
    """``c-YYYYMMDDtHHMMSS-xxxxxx``: sortable, lowercase letters, digits and dashes only."""
    return f"c-{datetime.now(timezone.utc).strftime('%Y%m%dt%H%M%S')}-{secrets.token_hex(3)}"


class Inbox:
    def __init__(self, config: InboxConfig) -> None:
        self.config = config
        self.root = config.root
        self.processing_dir = self.root / "processing"
        self.done_dir = self.root / "done"
        self.quarantine_dir = self.root / "quarantine"

    # --- discovery ---------------------------------------------------------------------------------
    def pending(self) -> list[Path]:
        """Entries ready to claim (by name): settled, not hidden, not partial, not sidecars. Links, FIFOs,
        devices and folders are included (never followed or opened): the claim refuses them with a reason."""
        if not self.root.is_dir():
            return []
        now, out = time.time(), []
        for entry in sorted(self.root.iterdir()):
            name = entry.name
            if (name.startswith(".") or name in _RESERVED or name.lower().endswith(_PARTIAL_SUFFIXES)
                    or (name.endswith(_SIDECARS) and not entry.is_symlink())):
                continue
            try:
                st = entry.lstat()
            except FileNotFoundError:
                continue  # taken by a concurrent run
            if now - st.st_mtime >= self.config.settle_seconds:
                out.append(entry)
        return out

    @staticmethod
    def sidecar(capture: Path) -> Path | None:
        """``<name>.labels.csv`` or ``<stem>.labels.csv`` beside ``capture``, when present."""
        for candidate in (capture.with_name(capture.name + LABELS_SUFFIX),
                          capture.with_name(capture.stem + LABELS_SUFFIX)):
            if candidate.is_file() and not candidate.is_symlink():  # a linked sidecar is never read
                return candidate
        return None

    # --- claiming ----------------------------------------------------------------------------------
    def claim(self) -> list[Claim]:
        """Abandoned claims (their process died) first, then one new claim of pending files if any."""
        for folder in (self.processing_dir, self.done_dir, self.quarantine_dir):
            if folder.is_symlink():  # an inbox writer could point it anywhere: the run would write there
                raise InboxError(f"{folder}: is a symbolic link; the inbox's own folders must be real folders")
        self.processing_dir.mkdir(parents=True, exist_ok=True)
        claims = self._resume_abandoned()
        new = self._claim_new()
        return [*claims, new] if new else claims

    def _resume_abandoned(self) -> list[Claim]:
        claims = []
        for directory in sorted(self.processing_dir.iterdir()):
            if directory.name.startswith(".") or not directory.is_dir():
                if directory.name.startswith((".claim-", ".finished-")):
                    self._drop_dead(directory)
                continue
            if not CLAIM_ID_RE.match(directory.name):  # not made by a run: its name would become a report id
                log.warning("%s: not a claim folder (name not c-<time>-<hex>); left alone", directory)
                continue
            fd = try_lock(directory / _LOCK)
            if fd is None:
                continue  # a live run holds it
            claim = self._load_claim(directory, fd)
            if claim.captures:
                log.info("resuming abandoned claim %s (%d files)", claim.claim_id, len(claim.captures))
                claims.append(claim)
            else:
                self._remove_claim_dir(claim)
        return claims

    def _drop_dead(self, directory: Path) -> None:
        """Remove a dead run's ``.claim-*`` folder (always empty: files move in after it is renamed) or
        ``.finished-*`` folder (its files were already moved out)."""
        try:
            if time.time() - directory.stat().st_mtime < _DEAD_AFTER_S:
                return  # may be a live run between its mkdir and its lock
        except FileNotFoundError:
            return
        fd = try_lock(directory / _LOCK)
        if fd is not None:
            shutil.rmtree(directory, ignore_errors=True)
            os.close(fd)

    def _load_claim(self, directory: Path, fd: int) -> Claim:
        entries = sorted(p for p in directory.iterdir() if not p.name.startswith("."))
        claim = Claim(directory.name, directory, [], {}, resumed=True, _fd=fd)
        for entry in entries:
            if not entry.name.endswith(_SIDECARS) or entry.is_symlink():
                self._take(claim, entry)
        return claim

    def _take(self, claim: Claim, entry: Path) -> None:
        """Record an entry of the claim folder: a capture (with its sidecars), or refused with its reason."""
        try:
            reason = not_regular(entry, entry.lstat())
        except FileNotFoundError:
            return
        if (sidecar := self.sidecar(entry)) is not None:
            claim.labels[entry.name] = sidecar
        if (stats := _stats_sidecar(entry)).is_file() and not stats.is_symlink():
            claim.stats[entry.name] = stats
        if reason:
            claim.refused[entry.name] = reason
            log.warning("%s: %s (refused)", entry, reason)
        else:
            claim.captures.append(entry)

    def _claim_new(self) -> Claim | None:
        pending = self.pending()[: self.config.max_files]
        if not pending:
            return None
        claim_id = new_claim_id()
        staging = self.processing_dir / f".claim-{claim_id}"
        staging.mkdir()
        fd = try_lock(staging / _LOCK)
        if fd is None:  # cannot happen unless someone else meddles with our fresh folder
            raise RuntimeError(f"{staging}: could not lock a fresh claim folder")
        directory = self.processing_dir / claim_id
        os.rename(staging, directory)
        claim = Claim(claim_id, directory, [], {}, resumed=False, _fd=fd)
        for capture in pending:
            sidecar = self.sidecar(capture)
            if not _move(capture, directory / capture.name):
                continue  # a concurrent run took it first
            if sidecar is not None:
                _move(sidecar, directory / sidecar.name)
            _move(_stats_sidecar(capture), _stats_sidecar(directory / capture.name))
            self._take(claim, directory / capture.name)
        if claim.refused and not claim.captures:  # nothing to ingest: file the refused entries away now
            self.finish(claim, {})
            return None
        if not claim.captures:
            self._remove_claim_dir(claim)
            return None
        log.info("claimed %d file(s) as %s", len(claim.captures), claim_id)
        return claim

    # --- finishing ---------------------------------------------------------------------------------
    def finish(self, claim: Claim, outcomes: dict[str, dict]) -> dict:
        """Move each capture (and its sidecar) to ``done/<claim>/`` or, when its outcome's ``status`` is
        ``quarantined``, to ``quarantine/<claim>/`` beside a reason file; then drop the claim. Returns the
        outcome record (also written to ``done/<claim>/_outcome.json``)."""
        done, bad = self.done_dir / claim.claim_id, self.quarantine_dir / claim.claim_id
        record = {"claim_id": claim.claim_id, "finished": datetime.now(timezone.utc).isoformat(), "files": {}}
        for name, why in claim.refused.items():
            bad.mkdir(parents=True, exist_ok=True)
            _move(claim.directory / name, bad / name)
            for sidecar in (claim.labels.get(name), claim.stats.get(name)):
                if sidecar is not None:
                    _move(sidecar, bad / sidecar.name)
            atomic_write_text(bad / f"{name}.reason.txt", f"{why}\n")
            record["files"][name] = {"status": "quarantined", "reason": why, "moved_to": str(bad / name)}
        for capture in claim.captures:
            outcome = outcomes.get(capture.name, {"status": "unknown"})
            target = bad if outcome.get("status") == "quarantined" else done
            target.mkdir(parents=True, exist_ok=True)
            _move(capture, target / capture.name)
            for sidecar in (claim.labels.get(capture.name), claim.stats.get(capture.name)):
                if sidecar is not None:
                    _move(sidecar, target / sidecar.name)
            if target is bad:
                atomic_write_text(bad / f"{capture.name}.reason.txt", f"{outcome.get('reason') or 'unknown'}\n")
            record["files"][capture.name] = {**outcome, "moved_to": str(target / capture.name)}
        atomic_write_json(done / "_outcome.json", record)
        self._remove_claim_dir(claim)
        return record

    def _remove_claim_dir(self, claim: Claim) -> None:
        """Hide the folder first (so a run that locks it after us finds nothing), then delete, then unlock."""
        hidden = claim.directory.with_name(f".finished-{claim.claim_id}")
        try:
            os.rename(claim.directory, hidden)
        except FileNotFoundError:
            hidden = claim.directory
        shutil.rmtree(hidden, ignore_errors=True)
        claim.release()


def _stats_sidecar(capture: Path) -> Path:
    return capture.with_name(capture.name + CAPTURE_STATS_SUFFIX)


def read_capture_stats(claim: Claim) -> dict[str, dict]:
    """The live-capture sidecars of ``claim``: capture name -> packets, drops... (lake.capture)."""
    return {name: json.loads(path.read_text()) for name, path in claim.stats.items() if path.is_file()}


def capture_totals(stats: dict[str, dict]) -> dict:
    """Packets captured and lost over the live captures of a batch (``read_capture_stats``), per file too."""
    keys = ("packets", "kernel_dropped", "interface_dropped", "discarded_low_disk")
    return {**{k: sum(int(s.get(k) or 0) for s in stats.values()) for k in keys}, "files": stats}


def _move(src: Path, dst: Path) -> bool:
    """Atomic rename; False when ``src`` is gone (another run took it). Same filesystem only."""
    try:
        os.rename(src, dst)
    except FileNotFoundError:
        return False
    return True


def read_outcome(inbox_root: Path, claim_id: str) -> dict:
    return json.loads((Path(inbox_root) / "done" / claim_id / "_outcome.json").read_text())
