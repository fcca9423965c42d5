"""nDPI protocol ids for ``L7_PROTO``, pinned to the nDPI that the installed nfstream bundles.

nfstream reports a flow's application only as text (``application_name``, e.g. ``TLS.Google``); the NF
datasets carry it as the float ``master.app`` of nDPI ids (``91.126``). The name -> id table ships as
``ndpi_protocols.json`` next to this module, generated once from nfstream's own engine library
(``_lib_engine``, which links nDPI statically and exports its API) with::

    python -m extractors.ndpi_protocols          # rewrite the JSON from the installed nfstream
    python -m extractors.ndpi_protocols --check  # exit 1 if the JSON and the library disagree

``tests/test_pcap_to_flows.py`` runs the same comparison, so an nfstream upgrade that renumbers nDPI
protocols fails the tests instead of silently shifting ``L7_PROTO``. Reading the JSON needs no native code.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import logging
import math
import sys
from functools import lru_cache
from pathlib import Path

log = logging.getLogger(__name__)
TABLE_PATH = Path(__file__).with_name("ndpi_protocols.json")
UNKNOWN = "Unknown"


def read_engine_table() -> dict:
    """The protocol table of the nDPI inside the installed nfstream: versions and ``{name: id}``.

    Initialises a dissector exactly as nfstream's meters do (``setup_dissector``) and asks it, through
    ctypes on the same shared object, for every protocol id's name.
    """
    import _lib_engine
    import nfstream
    from nfstream.engine.engine import setup_dissector

    ffi, lib = _lib_engine.ffi, _lib_engine.lib
    dissector = setup_dissector(ffi, lib, 1)
    if dissector == ffi.NULL:
        raise RuntimeError("nfstream engine: nDPI dissector initialisation failed")
    try:
        so = ctypes.CDLL(_lib_engine.__file__)
        so.ndpi_get_num_protocols.restype = ctypes.c_uint
        so.ndpi_get_num_protocols.argtypes = [ctypes.c_void_p]
        so.ndpi_get_proto_name.restype = ctypes.c_char_p
        so.ndpi_get_proto_name.argtypes = [ctypes.c_void_p, ctypes.c_uint16]
        handle = int(ffi.cast("uintptr_t", dissector))
        count = so.ndpi_get_num_protocols(handle)
        names = {so.ndpi_get_proto_name(handle, i).decode("utf-8"): i for i in range(count)}
    finally:
        lib.dissector_cleanup(dissector)
    if len(names) != count:
        raise RuntimeError(f"nDPI reports {count} protocols but {len(names)} distinct names")
    return {
        "nfstream_version": nfstream.__version__,
        "ndpi_version": ffi.string(lib.engine_lib_ndpi_version()).decode("ascii"),
        "protocols": names,
    }


@lru_cache(maxsize=1)
def load_table() -> dict[str, int]:
    """``{nDPI protocol name: id}`` from the shipped JSON."""
    data = json.loads(TABLE_PATH.read_text(encoding="utf-8"))
    return {str(k): int(v) for k, v in data["protocols"].items()}


def table_versions() -> dict[str, str]:
    """The nfstream / nDPI versions the shipped JSON was generated from."""
    data = json.loads(TABLE_PATH.read_text(encoding="utf-8"))
    return {"nfstream_version": data["nfstream_version"], "ndpi_version": data["ndpi_version"]}


def l7_proto(application_name: str | None) -> float:
    """nDPI ``master.app`` as a float (``TLS.Google`` -> 91.126, ``DNS`` -> 5.0); NaN when unknown.

    NaN (null in the lake) for ``Unknown``, an empty or missing name, or a name not in the table. As in
    the NF datasets, the float cannot tell app id 10 from 100 after the dot (7.1 == 7.10 == 7.100); the
    exact application is kept as text in ``APPLICATION_NAME``.
    """
    if not application_name or application_name == UNKNOWN:
        return math.nan
    table = load_table()
    whole = table.get(application_name)
    if whole is not None:
        return float(whole)
    master, _, app = application_name.partition(".")
    master_id, app_id = table.get(master), table.get(app)
    if master_id is None or app_id is None:
        return math.nan
    if app_id == master_id or app_id == 0:
        return float(master_id)
    if master_id == 0:
        return float(app_id)
    return float(f"{master_id}.{app_id}")


def _main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--check", action="store_true", help="compare the JSON with the library, write nothing")
    args = parser.parse_args(argv)
    live = read_engine_table()
    if args.check:
        shipped = json.loads(TABLE_PATH.read_text(encoding="utf-8"))
        same = shipped == live
        logging.getLogger(__name__).info("%s: %s", TABLE_PATH, "matches" if same else "DIFFERS")
        return 0 if same else 1
    tmp = TABLE_PATH.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(live, indent=1, sort_keys=False) + "\n", encoding="utf-8")
    tmp.replace(TABLE_PATH)
    log.info("wrote %s: %d protocols, nDPI %s", TABLE_PATH, len(live["protocols"]), live["ndpi_version"])
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    sys.exit(_main())
