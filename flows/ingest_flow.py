"""``ingest_batch``: captures into the lake, one mapped task per file (cached on content, retried on I/O)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from prefect import flow, get_run_logger, unmapped
from prefect.task_runners import ThreadPoolTaskRunner

from flowhawk.flows.params import DEFAULT_LAKE, Location, local_root
from flowhawk.flows.tasks import ingest_file, ingest_storage, lake_batches, quarantine_file

# nfstream runs its own meter process per capture: two files at a time keep both cores busy.
INGEST_WORKERS = 2


@flow(name="ingest-batch", persist_result=False, result_serializer="json",
      task_runner=ThreadPoolTaskRunner(max_workers=INGEST_WORKERS), log_prints=False)
def ingest_batch(files: list[Path], lake: Location = DEFAULT_LAKE, labels: dict[str, Path] | None = None,
                 source: Literal["auto", "pcap", "zeek", "nf-csv"] = "auto") -> list[dict[str, Any]]:
    """Ingest ``files`` (each into its own lake batch, named from its content). ``labels`` maps a file name to
    its labels CSV. Returns one record per file: status ingested / duplicate / quarantined, reason, flows,
    lake_batch. A file whose task failed (after retries for transient errors) is quarantined with the error.
    """
    location, lake = lake, local_root(lake)  # the tasks get the location as given (a Dask worker resolves it)
    logger = get_run_logger()
    files = [Path(f) for f in files]
    labels = {k: Path(v) for k, v in (labels or {}).items()}
    task = ingest_file.with_options(result_storage=ingest_storage(lake))
    results = _run(task, files, location, labels, source)
    present = set(lake_batches(lake))
    stale = [i for i, r in enumerate(results)
             if r["status"] in ("ingested", "duplicate") and r.get("lake_batch") not in present]
    if stale:  # a cached result whose lake batch has since been deleted: ingest again
        logger.warning("%d cached ingest result(s) point at missing lake batches; re-ingesting", len(stale))
        again = _run(task.with_options(refresh_cache=True), [files[i] for i in stale], location, labels, source)
        for i, result in zip(stale, again, strict=True):
            results[i] = result
    counts = {s: sum(r["status"] == s for r in results) for s in ("ingested", "duplicate", "quarantined")}
    logger.info("ingested %d file(s): %s, %d flows", len(files), counts,
                sum(r["flows"] for r in results if r["status"] == "ingested"))
    return results


def _run(task: Any, files: list[Path], lake: Location, labels: dict[str, Path], source: str) -> list[dict]:
    futures = task.map(files, lake=unmapped(lake), labels=[labels.get(f.name) for f in files],
                       source=unmapped(source))
    results = []
    for path, future in zip(files, futures, strict=True):
        future.wait()
        if future.state.is_completed():
            result = dict(future.result())
            result["file"], result["path"] = path.name, str(path)  # a cached result may name another file
            if future.state.name == "Cached" and result["status"] == "ingested":  # same bytes seen before
                result["status"] = "duplicate"
                result["reason"] = f"content already in batch {result['lake_batch']} (cached ingest)"
            results.append(result)
            continue
        exc = future.state.result(raise_on_failure=False)
        reason = " ".join(f"ingest failed: {type(exc).__name__}: {exc}".split())
        get_run_logger().error("%s: %s (quarantined)", path.name, reason)
        if path.exists():
            quarantine_file(lake, path, reason)
        results.append({"file": path.name, "path": str(path), "status": "quarantined", "reason": reason,
                        "flows": 0, "packets": 0, "sha256": None, "lake_batch": None})
    return results
