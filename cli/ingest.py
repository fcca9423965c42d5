"""``flowhawk ingest``: files into the lake as one batch, with a progress bar and a closing summary."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from flowhawk.cli.paths import add_path_options, resolve_path
from flowhawk.extractors.base import SOURCES


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "ingest",
        help="ingest captures, Zeek conn logs or NF CSVs into the lake",
        description="Ingest pcap/pcapng captures, Zeek conn logs (TSV, JSON, gzip, IoT-23) or NF dataset CSVs "
        "into <lake>/flows/batch=<id>/ as one atomic batch. Formats are detected from content. Bad files are "
        "copied to <lake>/quarantine/ with a reason file (the originals stay where they are); the rest land. "
        "Symbolic links, FIFOs, devices and other non-regular files are refused, never read. Content already in "
        "the lake is skipped. "
        "Exit code: 0 all good, 1 some files quarantined, 2 usage error, 3 the lake could not be written (disk "
        "full, read-only): nothing was added.",
    )
    p.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="input files (directories: every file in them)")
    add_path_options(p, "lake")
    p.add_argument("--batch", dest="batch_id", help="batch id (default: derived from the files' contents)")
    p.add_argument("--labels", type=Path, help="labels CSV (src_ip[,dst_ip],label,start_epoch,end_epoch)")
    p.add_argument("--source", choices=SOURCES, default="auto", help="input kind (default: detect from content)")
    p.add_argument("--move-bad", action="store_true", help="move bad files into quarantine instead of copying them")
    p.add_argument("--keep-bad", action="store_true", help=argparse.SUPPRESS)  # the default now; still accepted
    p.add_argument("--nfstream-defaults", action="store_true",
                   help="pcap: nfstream's own defaults instead of NF accounting (IP bytes, 120 s active timeout)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def expand(paths: list[Path]) -> list[Path]:
    """A directory given (not through a link) becomes every entry under it (sorted, hidden ones skipped,
    links not followed: they are listed, and refused by the ingest with a reason); anything else stays."""
    out: list[Path] = []
    for path in paths:
        if path.is_dir() and not path.is_symlink():
            found = []
            for folder, dirs, files in os.walk(path):
                dirs[:] = [d for d in dirs if not d.startswith(".")]
                linked = [d for d in dirs if os.path.islink(os.path.join(folder, d))]
                found += [Path(folder, name) for name in (*files, *linked) if not name.startswith(".")]
            out += sorted(found)
        else:
            out.append(path)
    return out


def _bar(result, done: int, total: int) -> None:
    width = 30
    filled = int(width * done / max(total, 1))
    status = result.status if result.status != "ingested" else f"{result.flows:,} flows"
    sys.stderr.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} {result.path.name[:40]}: {status}"
                     + " " * 10)
    if done == total:
        sys.stderr.write("\n")
    sys.stderr.flush()


def run(args: argparse.Namespace) -> int:
    from flowhawk.extractors.base import BadInputError
    from flowhawk.lake.ingest import IngestConfig, ingest_paths

    try:
        config = IngestConfig(lake=resolve_path(args, "lake"), batch_id=args.batch_id, labels=args.labels,
                              source=args.source, quarantine="move" if args.move_bad else "copy",
                              nf_compatible=not args.nfstream_defaults)
        summary = ingest_paths(expand(args.paths), config, progress=None if args.no_progress else _bar)
    except (ValueError, BadInputError, FileExistsError) as exc:
        print(f"flowhawk ingest: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # the lake's disk, not an input: full, read-only, gone. Nothing partial is left.
        print(f"\nflowhawk ingest: cannot write to the lake {args.lake}: {exc.strerror or exc}"
              f"{f' ({exc.filename})' if exc.filename else ''}; nothing was added", file=sys.stderr)
        return 3
    for f in summary.files:
        if f.status == "quarantined":
            print(f"QUARANTINED {f.path}: {f.reason}", file=sys.stderr)
        for note in f.notes:
            print(f"NOTE {f.path}: {note}", file=sys.stderr)
        if f.labelled:
            print(f"labels {f.path.name}: " + ", ".join(f"{k}={v:,}" for k, v in sorted(f.labelled.items())))
    print(summary.line())
    return 0 if summary.ok else 1
