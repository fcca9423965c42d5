"""Model registry: save/load round trip, atomic pointer, interrupted saves, rollback, corrupt versions.

One tiny real MindSpore model is trained once per session (conftest ``tiny_model``) on flows the tests synthesise,
ingested into a real lake through the NF CSV path (``tiny_lake``); every registry test saves copies of it (those
tests are ``slow``: they train it when they run first).
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from flowhawk.model.registry import MANIFEST, POINTER, Registry, RegistryError, data_manifest


@pytest.fixture
def base(tiny_lake: Path, tiny_model) -> tuple[Path, object]:
    """(lake root holding batch b1, the tiny model trained on it): the session fixtures of conftest.py."""
    return tiny_lake, tiny_model


def one_line(exc: pytest.ExceptionInfo) -> str:
    text = str(exc.value)
    assert "\n" not in text and "Traceback" not in text, text
    return text


@pytest.mark.slow  # trains the session's tiny model on first use
def test_round_trip_scores_identical(base, tmp_path):
    from flowhawk.lake.store import Lake
    from flowhawk.model.scoring import score_frame

    lake_root, trained = base
    reg = Registry(tmp_path / "models")
    version = reg.save(trained, data=data_manifest(Lake(lake_root), ["b1"]))
    assert version == "v0001" and reg.versions() == ["v0001"]
    assert not [p for p in reg.root.iterdir() if p.name.startswith(".tmp-")]
    shown = reg.show(version)
    export = shown["manifest"]["export"]
    assert export["ok"] and (reg.path(version) / "model.mindir").stat().st_size > 0, export
    batch = shown["data"]["batches"][0]
    assert batch["batch_id"] == "b1" and batch["rows"] == 500 and len(batch["files"][0]["sha256"]) == 64
    assert shown["train_config"]["epochs"] == 2 and shown["model_config"]["hidden"] == 8
    frame = Lake(lake_root).read_flows(["b1"])
    before = score_frame(trained, frame)
    after = score_frame(reg.load(version), frame)
    np.testing.assert_array_equal(before["score"].to_numpy(), after["score"].to_numpy())
    assert (before["predicted_class"] == after["predicted_class"]).all()


@pytest.mark.slow  # trains the session's tiny model on first use
def test_promote_pointer_is_always_valid_json(base, tmp_path):
    reg = Registry(tmp_path / "models")
    versions = [reg.save(base[1], export=False) for _ in range(2)]
    assert reg.current() is None
    stop, seen, bad = threading.Event(), set(), []

    def reader() -> None:
        while not stop.is_set():
            try:
                seen.add(json.loads((reg.root / POINTER).read_text())["current"])
            except FileNotFoundError:
                seen.add(None)
            except json.JSONDecodeError as exc:
                bad.append(str(exc))

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for i in range(60):
            reg.promote(versions[i % 2])
    finally:
        stop.set()
        thread.join()
    assert not bad, bad[:3]
    assert seen <= {None, *versions}
    assert reg.current() == versions[1]
    assert not [p for p in reg.root.iterdir() if p.name.startswith(".tmp-")]


@pytest.mark.slow  # trains the session's tiny model on first use
def test_interrupted_save_leaves_no_visible_version(base, tmp_path, monkeypatch):
    import flowhawk.model.registry as registry_module

    reg = Registry(tmp_path / "models")
    good = reg.save(base[1], export=False)
    reg.promote(good)

    def killed(*args, **kwargs):
        raise KeyboardInterrupt  # like Ctrl-C in the middle of writing the version
    monkeypatch.setattr(registry_module, "_export_mindir", killed)
    with pytest.raises(KeyboardInterrupt):
        reg.save(base[1])
    assert reg.versions() == [good]
    assert not [p for p in reg.root.iterdir() if p.name.startswith(".tmp-")]
    # a writer killed hard (no cleanup) leaves only a hidden temp folder: never listed, never loaded
    base[1].save(reg.root / ".tmp-save-killed")
    assert reg.versions() == [good] and [r["version"] for r in reg.list()] == [good]
    assert reg.current() == good
    assert reg.cleanup() == 0  # young: may be a save in progress
    old = time.time() - 2 * 3600
    os.utime(reg.root / ".tmp-save-killed", (old, old))
    assert reg.cleanup() == 1 and not (reg.root / ".tmp-save-killed").exists()


@pytest.mark.slow  # trains the session's tiny model on first use
def test_rollback_walks_back_the_promotion_history(base, tmp_path):
    reg = Registry(tmp_path / "models")
    v1, v2, v3 = (reg.save(base[1], export=False) for _ in range(3))
    with pytest.raises(RegistryError, match="no current model"):
        reg.load()
    for v in (v1, v2, v3):
        reg.promote(v, reason=f"promote {v}")
    assert reg.rollback() == v2 and reg.current() == v2
    assert reg.rollback() == v1 and reg.current() == v1
    with pytest.raises(RegistryError) as exc:
        reg.rollback()
    assert "no previous version" in one_line(exc)
    assert [e["action"] for e in reg.history()] == ["promote"] * 3 + ["rollback"] * 2
    statuses = {r["version"]: r["status"] for r in reg.list()}
    assert statuses == {v1: "current", v2: "promoted", v3: "promoted"}


@pytest.mark.slow  # trains the session's tiny model on first use
def test_candidate_is_listed_with_its_reason(base, tmp_path):
    reg = Registry(tmp_path / "models")
    version = reg.save(base[1], status="candidate", reason="rejected: f1 0.5 vs 0.9", export=False)
    (row,) = reg.list()
    assert row["version"] == version and row["status"] == "candidate" and row["reason"].startswith("rejected")
    with pytest.raises(ValueError, match="status"):
        reg.save(base[1], status="maybe", export=False)


def _rewrite(version_dir: Path, name: str, edit) -> None:
    """Edit a JSON file of a version and re-sign it in the manifest: a consistent version that this
    flowhawk cannot read (as if written by another release)."""
    import hashlib

    path = version_dir / name
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))
    if name == MANIFEST:
        return
    manifest = json.loads((version_dir / MANIFEST).read_text())
    manifest["files"][name] = {"bytes": path.stat().st_size, "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
    (version_dir / MANIFEST).write_text(json.dumps(manifest))


def _set_model_config(key: str, value: object):
    return lambda meta: meta["model_config"].__setitem__(key, value)


@pytest.mark.slow  # trains the session's tiny model on first use
@pytest.mark.parametrize(("damage", "expected"), [
    ("truncate_weights", r"weights\.ckpt is \d+ bytes, the manifest says \d+ \(truncated\)"),
    ("garble_features", "features.json is not valid JSON"),
    ("garble_manifest", "manifest.json is not valid JSON"),
    ("remove_weights", "weights.ckpt is missing"),
    ("unknown_config_key", r"incompatible: ValueError: ModelConfig: unknown key\(s\) \['attention_heads'\]"),
    ("unknown_arch", "incompatible: ValueError: ModelConfig.arch must be one of"),
    ("feature_mismatch", "features.json yields .* features, the network expects 7"),
    ("schema_version", "flow schema version 99"),
])
def test_damaged_version_is_one_line_registry_error(base, tmp_path, damage, expected):
    reg = Registry(tmp_path / "models")
    version = reg.save(base[1], export=False)
    where = reg.path(version)
    if damage == "truncate_weights":
        data = (where / "weights.ckpt").read_bytes()
        (where / "weights.ckpt").chmod(0o600)
        (where / "weights.ckpt").write_bytes(data[: len(data) // 2])
    elif damage.startswith("garble_"):
        name = "features.json" if damage == "garble_features" else MANIFEST
        text = (where / name).read_text()
        (where / name).write_text(text[:-10] + "#" * 10)  # same size: only the parse can tell
    elif damage == "remove_weights":
        (where / "weights.ckpt").unlink()
    elif damage == "unknown_config_key":
        _rewrite(where, "model.json", _set_model_config("attention_heads", 4))
    elif damage == "unknown_arch":
        _rewrite(where, "model.json", _set_model_config("arch", "transformer"))
    elif damage == "feature_mismatch":
        _rewrite(where, "model.json", _set_model_config("n_features", 7))
    elif damage == "schema_version":
        _rewrite(where, MANIFEST, lambda m: m.__setitem__("schema_version", 99))
    with pytest.raises(RegistryError) as exc:
        reg.load(version)
    text = one_line(exc)
    assert text.startswith(f"{where}: "), text
    assert exc.match(expected)
    with pytest.raises(RegistryError):
        reg.promote(version)
    (row,) = reg.list()
    assert row["status"] == "broken" and row["reason"] == exc.value.reason


def test_bad_version_names_and_missing_versions(tmp_path):
    reg = Registry(tmp_path / "models")
    assert reg.list() == [] and reg.current() is None
    with pytest.raises(RegistryError, match="no such model version"):
        reg.load("v0042")
    with pytest.raises(RegistryError, match="not a version name"):
        reg.load("../etc")
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / POINTER).write_text("{not json")
    with pytest.raises(RegistryError, match=r"current\.json is not valid JSON"):
        reg.current()


@pytest.mark.slow  # trains the session's tiny model on first use
def test_cli_models_commands(base, tmp_path, capsys):
    from flowhawk.cli.main import main

    models = str(tmp_path / "models")
    reg = Registry(models)
    v1 = reg.save(base[1], export=False)
    v2 = reg.save(base[1], status="candidate", reason="rejected: test", export=False)
    assert main(["models", "promote", v1, "--models", models]) == 0
    assert main(["models", "promote", v2, "--models", models]) == 0
    assert main(["models", "rollback", "--models", models]) == 0 and reg.current() == v1
    capsys.readouterr()
    assert main(["models", "list", "--models", models]) == 0
    listing = capsys.readouterr().out
    assert v1 in listing and "current" in listing and "rejected: test" in listing
    assert main(["models", "show", v2, "--models", models]) == 0
    shown = capsys.readouterr().out
    assert "rejected: test" in shown and "train config" in shown and "test metrics" in shown
    (reg.path(v2) / "model.json").write_text("{")
    assert main(["models", "promote", v2, "--models", models]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"flowhawk models promote: {reg.path(v2)}: model.json is not valid JSON "
                   "(Expecting property name enclosed in double quotes: line 1 column 2 (char 1))"]
    assert reg.current() == v1


@pytest.mark.parametrize("command", ["train", "evaluate", "refresh", "models", "models list", "models show",
                                     "models promote", "models rollback"])
def test_cli_help(command, capsys):
    from flowhawk.cli.main import main

    with pytest.raises(SystemExit) as exc:
        main([*command.split(), "--help"])
    out = capsys.readouterr().out
    assert exc.value.code == 0
    assert ("list" in out and "rollback" in out) if command == "models" else "--models" in out


@pytest.mark.slow  # trains the session's tiny model on first use
def test_failed_mindir_export_is_recorded_not_raised(base, tmp_path, monkeypatch):
    import mindspore

    def refuse(*args, **kwargs):
        raise RuntimeError("For 'export', the operator Foo is not supported\n----\n- C++ Call Stack: ...")
    monkeypatch.setattr(mindspore, "export", refuse)
    reg = Registry(tmp_path / "models")
    version = reg.save(base[1])
    export = reg.manifest(version)["export"]
    assert export == {"ok": False, "arch": "cnn_bilstm",
                      "error": "RuntimeError: For 'export', the operator Foo is not supported"}
    assert not (reg.path(version) / "model.mindir").exists()
    reg.load(version)  # the version itself is fine


@pytest.mark.slow  # trains the session's tiny model on first use
def test_model_saved_under_flow_schema_1_still_loads(base, tmp_path):
    """Schema 2 only added community_id (no model feature reads it): models of schema 1 stay loadable."""
    reg = Registry(tmp_path / "models")
    version = reg.save(base[1], export=False)
    _rewrite(reg.path(version), MANIFEST, lambda m: m.__setitem__("schema_version", 1))
    assert reg.load(version).class_names == base[1].class_names


@pytest.mark.slow  # trains the session's tiny model on first use
def test_manifest_records_kind_and_old_manifests_load_as_supervised(base, tmp_path):
    from flowhawk.model.trained import TrainedModel

    _, trained = base
    reg = Registry(tmp_path / "models")
    version = reg.save(trained, export=False)
    assert reg.manifest(version)["kind"] == "supervised" and reg.list()[0]["kind"] == "supervised"
    _rewrite(reg.path(version), MANIFEST, lambda m: m.pop("kind"))  # as saved before kinds existed
    assert "kind" not in json.loads((reg.path(version) / MANIFEST).read_text())
    assert isinstance(reg.load(version), TrainedModel) and reg.list()[0]["kind"] == "supervised"
