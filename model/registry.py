"""Versioned model registry: immutable version folders and an atomically switched ``current`` pointer.

Layout::

    <models>/v0001/weights.ckpt      network parameters (TrainedModel.save)
                  /features.json     fitted FeaturePipeline
                  /model.json        ModelConfig + TrainConfig (resolved), threshold, class names, metrics
                  /model.mindir      MindIR export (fixed-size example input), when the export worked
                  /data.json         training data: lake batches, files, row counts, sha256
                  /manifest.json     written last: status, reason, parent, export result, every file's size
                                     and sha256
    <models>/current.json            {"current": version, "stack": [...], "events": [...]}
    <models>/.tmp-*                  a save in progress (or killed): never listed, never loaded; leftovers
                                     older than an hour are removed by the next save

A novelty model (``model.novelty_store.TrainedNovelty``) is stored the same way; its ``model.json`` holds
``kind: "novelty"``, NoveltyConfig and calibration instead of the two configs. ``manifest.json`` records every
version's ``kind`` ("supervised" / "novelty"; versions saved before kinds existed load as supervised).

A version is written into a ``.tmp-`` folder and renamed into place when complete, so it is whole or absent.
Versions are never modified afterwards; promotion state lives in ``current.json`` (replaced atomically,
under a lock), whose ``stack`` is the promotion history that ``rollback`` walks back.

On an object store (``--models s3://...``: a working copy bound to the URL, ``common.objectstore``) versions are
pushed after they are complete locally, ``manifest.json`` last (the commit marker); versions are listed from the
store and pulled on first use; ``current.json`` is one object, replaced by one PUT. The promotion lock is local:
promote from one place at a time (concurrent promotions from two machines: the last PUT wins).

Everything that can go wrong with a stored version (missing, truncated, garbled, incompatible) is reported as
one ``RegistryError`` naming the version folder and the reason, before MindSpore is ever asked to read it.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import mindspore as ms
import numpy as np

from flowhawk.common.files import atomic_write_json, exclusive_lock, replace_dir, sha256_file
from flowhawk.common.objectstore import Mirror
from flowhawk.extractors.schema import COLUMN_NAMES, READABLE_SCHEMA_VERSIONS, SCHEMA_VERSION
from flowhawk.lake.store import Lake
from flowhawk.model.config import ModelConfig, TrainConfig
from flowhawk.model.features import FeaturePipeline
from flowhawk.model.host_features import HOST_FEATURES
from flowhawk.model.novelty_store import TrainedNovelty, check_meta
from flowhawk.model.trained import TrainedModel

log = logging.getLogger(__name__)

FORMAT = 1
MANIFEST = "manifest.json"
DATA_FILE = "data.json"
MINDIR_FILE = "model.mindir"
POINTER = "current.json"
LOCK = ".lock"
TMP_PREFIX = ".tmp-"
STATUSES = ("candidate", "promoted")
STALE_TMP_S = 3600.0
VERSION_RE = re.compile(r"^v(\d{4,})$")
SUPERVISED = "supervised"  # a manifest without "kind" (saved before novelty models existed) is supervised


class RegistryError(Exception):
    """A registry problem. ``str()`` is one line naming the version folder (or file) and the reason."""

    def __init__(self, path: Path | str, reason: str) -> None:
        self.path = Path(path)
        self.reason = " ".join(str(reason).split())
        super().__init__(f"{self.path}: {self.reason}")

    def __reduce__(self) -> tuple[type, tuple[Path, str]]:
        """Pickled as its two arguments: a Dask worker sends it to the client, which rebuilds it (the default
        rebuild passes only the message and failed, hiding the error behind a TypeError)."""
        return type(self), (self.path, self.reason)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _first_line(exc: BaseException) -> str:
    """The first meaningful line of an exception (MindSpore appends C++ stacks), at most 300 chars."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip() and not set(ln.strip()) <= set("-=")]
    text = lines[0] if lines else type(exc).__name__
    return f"{type(exc).__name__}: {text[:300]}"


def _read_json(path: Path, where: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise RegistryError(where, f"{path.name} is missing") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RegistryError(where, f"{path.name} is not valid JSON ({exc})") from None


def data_manifest(lake: Lake, batches: list[str], **extra: Any) -> dict[str, Any]:
    """What a model was trained on: per batch its files (name, sha256, rows) from the lake's manifests."""
    entries = []
    for batch_id in batches:
        manifest = lake.batch_manifest(batch_id)
        entries.append({
            "batch_id": batch_id, "created": manifest.get("created"), "rows": manifest.get("rows"),
            "schema_version": manifest.get("schema_version"),
            "files": [{k: f.get(k) for k in ("name", "sha256", "rows", "part")} for f in manifest["files"]],
        })
    return {"lake": lake.location if lake.mirror else str(Path(lake.root).resolve()), "batches": entries,
            "rows": sum(e["rows"] or 0 for e in entries), **extra}


def headline(metrics: dict[str, Any]) -> dict[str, Any]:
    """The few numbers shown in listings: the test-set metrics of ``ours`` when present, else top level."""
    scope: Any = metrics
    for key in ("test", "ours"):
        if isinstance(scope, dict) and isinstance(scope.get(key), dict):
            scope = scope[key]
    if not isinstance(scope, dict):
        return {}
    return {k: scope[k] for k in ("f1", "macro_f1", "precision", "recall", "auc", "accuracy") if k in scope}


class Registry:
    """Model versions under ``root`` (created on first save)."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        self.mirror = Mirror.of(self.root)

    @property
    def location(self) -> str:
        """The registry as a user names it: the object-store URL, or the folder."""
        return self.mirror.store.url if self.mirror is not None else str(self.root)

    # --- naming ----------------------------------------------------------------------------------------
    def path(self, version: str) -> Path:
        if not isinstance(version, str) or not VERSION_RE.match(version):
            raise RegistryError(self.root / str(version), "not a version name (expected v0001, v0002, ...)")
        return self.root / version

    def versions(self) -> list[str]:
        """Visible (complete) versions, oldest first: on an object store, those committed there."""
        if self.mirror is not None:
            return sorted((v for v in self.mirror.committed("", MANIFEST) if VERSION_RE.match(v)),
                          key=lambda v: int(v[1:]))
        return self._local_versions()

    def _local_versions(self) -> list[str]:
        if not self.root.is_dir():
            return []
        found = [p.name for p in self.root.iterdir() if p.is_dir() and VERSION_RE.match(p.name)]
        return sorted(found, key=lambda v: int(v[1:]))

    # --- saving ------------------------------------------------------------------------------------------
    def cleanup(self, older_than_s: float = STALE_TMP_S) -> int:
        """Remove ``.tmp-`` leftovers of killed saves older than ``older_than_s`` (younger ones may belong to a
        save in progress); returns how many. Called by every ``save``."""
        if not self.root.is_dir():
            return 0
        cutoff, removed = time.time() - older_than_s, 0
        for entry in self.root.iterdir():
            if entry.name.startswith(TMP_PREFIX) and entry.is_dir() and entry.stat().st_mtime < cutoff:
                shutil.rmtree(entry, ignore_errors=True)
                removed += 1
        return removed

    def save(self, trained: TrainedModel, *, data: dict[str, Any] | None = None, status: str = "candidate",
             reason: str = "", parent: str | None = None, export: bool = True) -> str:
        """Write ``trained`` as a new version (temp folder, then rename); returns the version name.

        ``status``/``reason`` record why it was made (e.g. a refresh candidate that failed the guard);
        saving never changes ``current`` (see ``promote``).
        """
        if status not in STATUSES:
            raise ValueError(f"Registry.save status: must be one of {STATUSES}, got {status!r}")
        self.root.mkdir(parents=True, exist_ok=True)
        self.cleanup()
        tmp = self.root / f"{TMP_PREFIX}save-{uuid.uuid4().hex[:12]}"
        try:
            trained.save(tmp)
            export_result = _export_mindir(trained, tmp) if export else {"ok": False, "error": "not requested"}
            atomic_write_json(tmp / DATA_FILE, data or {})
            files = {p.name: {"bytes": p.stat().st_size, "sha256": sha256_file(p)}
                     for p in sorted(tmp.iterdir()) if p.is_file() and not p.name.startswith(".")}
            manifest = {
                "format": FORMAT, "created": _now(), "status": status, "reason": " ".join(reason.split()),
                "parent": parent, "schema_version": SCHEMA_VERSION, "arch": trained.model_config.arch,
                "task": trained.task, "class_names": list(trained.class_names), "threshold": trained.threshold,
                "headline": headline(trained.metrics), "export": export_result, "files": files,
                "data_rows": (data or {}).get("rows"), "kind": getattr(trained, "kind", SUPERVISED),
            }
            atomic_write_json(tmp / MANIFEST, manifest)
            version = self._place(tmp)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        log.info("registry: saved %s (%s%s)", version, status, f": {reason}" if reason else "")
        return version

    def _place(self, tmp: Path) -> str:
        """Rename the finished temp folder to the next free version name (retrying if another writer won)."""
        for _ in range(100):
            existing = sorted({*self.versions(), *self._local_versions()}, key=lambda v: int(v[1:]))
            number = int(existing[-1][1:]) + 1 if existing else 1
            try:
                replace_dir(tmp, self.root / f"v{number:04d}")
                if self.mirror is not None:  # files first, manifest.json (the commit marker) last
                    self.mirror.push(f"v{number:04d}", MANIFEST)
                return f"v{number:04d}"
            except (FileExistsError, OSError) as exc:
                if not (self.root / f"v{number:04d}").exists():
                    raise RegistryError(tmp, f"cannot rename into place: {exc}") from exc
        raise RegistryError(self.root, "could not allocate a version name after 100 attempts")

    # --- reading and checking ---------------------------------------------------------------------------
    def manifest(self, version: str) -> dict[str, Any]:
        """The version's manifest after checking every file against it (sizes, hashes, JSON, compatibility)."""
        where = self.path(version)
        if self.mirror is not None:
            self.mirror.pull(version, MANIFEST)
        if not where.is_dir():
            raise RegistryError(where, "no such model version")
        manifest = _read_json(where / MANIFEST, where)
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT or "files" not in manifest:
            raise RegistryError(where, f"{MANIFEST} is not a flowhawk registry manifest (format {FORMAT})")
        for name, meta in manifest["files"].items():
            path = where / name
            if not path.is_file():
                raise RegistryError(where, f"{name} is missing")
            if name.endswith(".json"):
                _read_json(path, where)
            size = path.stat().st_size
            if size != meta["bytes"]:
                raise RegistryError(where, f"{name} is {size} bytes, the manifest says {meta['bytes']} "
                                           f"({'truncated' if size < meta['bytes'] else 'modified'})")
            if sha256_file(path) != meta["sha256"]:
                raise RegistryError(where, f"{name} does not match its sha256 in the manifest (modified)")
        _check_compatible(where, manifest)
        return manifest

    def load(self, version: str | None = None) -> TrainedModel | TrainedNovelty:
        """Load ``version`` (the current one when None), checked first; every failure is a RegistryError."""
        version = version or self.require_current()
        kind = self.manifest(version).get("kind", SUPERVISED)
        where = self.path(version)
        try:
            if kind == "novelty":
                return TrainedNovelty.load(where)
            return TrainedModel.load(where)
        except Exception as exc:  # MindSpore / config errors: one line naming the version
            raise RegistryError(where, f"cannot load: {_first_line(exc)}") from None

    def list(self) -> list[dict[str, Any]]:
        """One summary per version (oldest first); broken versions are listed with their error."""
        state = self._pointer()
        promoted = {e["version"] for e in state["events"] if e["action"] in ("promote", "rollback")}
        rows = []
        for version in self.versions():
            row: dict[str, Any] = {"version": version, "current": version == state["current"]}
            try:
                manifest = self.manifest(version)
            except RegistryError as exc:
                rows.append({**row, "status": "broken", "reason": exc.reason})
                continue
            status = "current" if row["current"] else ("promoted" if version in promoted else manifest["status"])
            rows.append({**row, "status": status, "reason": manifest["reason"], "created": manifest["created"],
                         "arch": manifest["arch"], "task": manifest["task"], "parent": manifest["parent"],
                         "kind": manifest.get("kind", SUPERVISED),
                         "rows": manifest.get("data_rows"), **manifest["headline"]})
        return rows

    def show(self, version: str | None = None) -> dict[str, Any]:
        """Manifest, resolved configs, metrics and data manifest of one version (current when None)."""
        version = version or self.require_current()
        manifest = self.manifest(version)
        where = self.path(version)
        meta = _read_json(where / "model.json", where)
        return {"version": version, "current": version == self.current(), "manifest": manifest,
                "model_config": meta.get("model_config"), "train_config": meta.get("train_config"),
                "metrics": meta.get("metrics", {}), "data": _read_json(where / DATA_FILE, where)}

    def batches_new_to_current(self, candidates: list[str]) -> list[str]:
        """Those of ``candidates`` (lake batches) that neither the current model nor a refresh attempt from it
        has trained on (so a rejected refresh candidate is not retried on the same batches every run)."""
        current = self.require_current()
        tried = [current] + [r["version"] for r in self.list() if r.get("parent") == current]
        seen = {b["batch_id"] for v in tried for b in self.show(v)["data"].get("batches", [])}
        return [b for b in candidates if b not in seen]

    # --- the current pointer -------------------------------------------------------------------------
    def current(self) -> str | None:
        return self._pointer()["current"]

    def require_current(self) -> str:
        current = self.current()
        if current is None:
            raise RegistryError(self.root, "no current model (train one, or promote a version)")
        return current

    def history(self) -> list[dict[str, Any]]:
        """Promotion and rollback events, oldest first."""
        return list(self._pointer()["events"])

    def promote(self, version: str, reason: str = "") -> None:
        """Make ``version`` current (it is checked first). Promoting the current version is a no-op."""
        self.manifest(version)
        with exclusive_lock(self.root / LOCK):
            state = self._pointer()
            if state["current"] == version:
                return
            state["events"].append({"at": _now(), "action": "promote", "version": version,
                                    "previous": state["current"], "reason": " ".join(reason.split())})
            state["stack"].append(version)
            state["current"] = version
            self._write_pointer(state)
        log.info("registry: %s is now current", version)

    def rollback(self, reason: str = "") -> str:
        """Make the previously current version current again (walking back the promotion stack)."""
        with exclusive_lock(self.root / LOCK):
            state = self._pointer()
            if len(state["stack"]) < 2:
                raise RegistryError(self.root / POINTER, "no previous version to roll back to")
            dropped, target = state["stack"][-1], state["stack"][-2]
            self.manifest(target)
            state["stack"].pop()
            state["current"] = target
            state["events"].append({"at": _now(), "action": "rollback", "version": target,
                                    "previous": dropped, "reason": " ".join(reason.split())})
            self._write_pointer(state)
        log.info("registry: rolled back from %s to %s", dropped, target)
        return target

    def _write_pointer(self, state: dict[str, Any]) -> None:
        atomic_write_json(self.root / POINTER, state)
        if self.mirror is not None:
            self.mirror.push_file(POINTER)

    def _pointer(self) -> dict[str, Any]:
        path = self.root / POINTER
        if self.mirror is not None:
            self.mirror.pull_file(POINTER)
        if not path.exists():
            return {"format": FORMAT, "current": None, "stack": [], "events": []}
        state = _read_json(path, path)
        if not isinstance(state, dict) or not {"current", "stack", "events"} <= set(state):
            raise RegistryError(path, "not a registry pointer (needs current, stack, events)")
        return state


def _check_compatible(where: Path, manifest: dict[str, Any]) -> None:
    """Schema, configs and features must be readable by this code (no MindSpore needed)."""
    if manifest.get("schema_version") not in READABLE_SCHEMA_VERSIONS:
        raise RegistryError(where, f"flow schema version {manifest.get('schema_version')!r}, "
                                   f"this flowhawk reads {list(READABLE_SCHEMA_VERSIONS)}")
    meta = _read_json(where / "model.json", where)
    if manifest.get("kind", SUPERVISED) == "novelty":
        _check_novelty(where, meta)
        return
    try:
        model_config = ModelConfig.from_dict(meta["model_config"])
        train_config = TrainConfig.from_dict(meta["train_config"])
        pipeline = FeaturePipeline.from_json((where / "features.json").read_text())
    except (KeyError, TypeError, ValueError) as exc:
        raise RegistryError(where, f"incompatible: {_first_line(exc)}") from None
    computed = set(HOST_FEATURES) if train_config.host_features else set()
    unknown = sorted({s["name"] for s in pipeline.specs} - set(COLUMN_NAMES) - computed)
    if unknown:
        raise RegistryError(where, f"incompatible: features use column(s) not in the flow schema: {unknown}")
    if pipeline.n_features != model_config.n_features:
        raise RegistryError(where, f"incompatible: features.json yields {pipeline.n_features} features, "
                                   f"the network expects {model_config.n_features}")
    if len(meta.get("class_names", [])) != model_config.n_classes:
        raise RegistryError(where, f"incompatible: {len(meta.get('class_names', []))} class names for "
                                   f"{model_config.n_classes} network outputs")


def _check_novelty(where: Path, meta: dict[str, Any]) -> None:
    try:
        check_meta(meta, FeaturePipeline.from_json((where / "features.json").read_text()), where / "model.json")
    except (KeyError, TypeError, ValueError) as exc:
        raise RegistryError(where, f"incompatible: {_first_line(exc)}") from None


def _export_mindir(trained: TrainedModel, folder: Path) -> dict[str, Any]:
    """MindIR export with a fixed (1, window, n_features) example; failures are recorded, never raised."""
    cfg = trained.model_config
    try:
        x = ms.Tensor(np.zeros((1, cfg.window, cfg.n_features), np.float32))
        mask = ms.Tensor(np.ones((1, cfg.window), np.float32))
        trained.network.set_train(False)
        ms.export(trained.network, x, mask, file_name=str(folder / "model"), file_format="MINDIR")
        if not (folder / MINDIR_FILE).is_file():
            raise RuntimeError("mindspore.export wrote no model.mindir")
    except Exception as exc:
        (folder / MINDIR_FILE).unlink(missing_ok=True)
        log.warning("registry: MindIR export failed for arch %s: %s", cfg.arch, _first_line(exc))
        return {"ok": False, "error": _first_line(exc), "arch": cfg.arch}
    return {"ok": True, "file": MINDIR_FILE, "input_shapes": [[1, cfg.window, cfg.n_features], [1, cfg.window]],
            "inputs": ["x float32 (B, T, F)", "mask float32 (B, T)"]}
