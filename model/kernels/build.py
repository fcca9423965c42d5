"""Compiling the fused kernels into a cache folder, and what that folder holds.

Two variants, side by side in ``<cache root>/kernels/``:

* ``native-<key>.so``: ``-march=native``; the key covers the sources, the flags, MindSpore's oneDNN and this
  CPU's feature flags, so another CPU never loads it.
* ``portable-<key>.so``: ``-march=x86-64-v2`` (any x86-64 CPU since ~2009); for images that move between
  machines. The key covers the sources, the flags and oneDNN only.

Each library has a ``<same name>.json`` beside it (variant, flags, CPU, compiler, build time), written after
the library. The library is compiled under a temporary name and renamed into place: never half-written.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path

from flowhawk.common.files import atomic_write_json, remove_stale_temps, tmp_sibling

KERNEL_DIR = Path(__file__).parent
SOURCES = (KERNEL_DIR / "bilstm.cc", KERNEL_DIR / "convpool.cc")
HEADERS = (KERNEL_DIR / "common.h",)
BASE_FLAGS = ("-std=c++17", "-O3", "-ffast-math", "-fPIC", "-D_GLIBCXX_USE_CXX11_ABI=0", "-pthread")
# Linked in a separate step WITHOUT -ffast-math: GCC < 13 links crtfastmath.o into a -ffast-math shared library,
# whose constructor sets flush-to-zero / denormals-are-zero for the whole process when it is loaded (numpy and
# everything else in the process would then lose subnormal floats).
LINK_FLAGS = ("-shared", "-fPIC", "-pthread")
VARIANTS = {"native": "native", "portable": "x86-64-v2"}  # variant -> -march
# x86-64-v2 = CMPXCHG16B, LAHF/SAHF, POPCNT, SSE3 ("pni" in /proc/cpuinfo), SSSE3, SSE4.1, SSE4.2
X86_64_V2 = frozenset({"cx16", "lahf_lm", "popcnt", "pni", "ssse3", "sse4_1", "sse4_2"})
BUILD_TIMEOUT_S = 600


class KernelBuildError(RuntimeError):
    """The kernels cannot be compiled here (no compiler, no oneDNN, or the compiler failed)."""


@dataclass(frozen=True)
class KernelCache:
    """flowhawk's cache folder (``root``, made absolute); compiled kernels live in ``root/kernels``."""

    root: Path

    def __post_init__(self) -> None:
        if not isinstance(self.root, (str, os.PathLike)) or not str(self.root):
            raise ValueError(f"KernelCache.root must be a non-empty path, got {self.root!r}")
        object.__setattr__(self, "root", Path(self.root).expanduser().absolute())  # MindSpore loads it by path

    @property
    def directory(self) -> Path:
        return self.root / "kernels"


def cache_root_from_env(env: Mapping[str, str], home: Path | None = None) -> Path:
    """FLOWHAWK_CACHE, else $XDG_CACHE_HOME/flowhawk, else ~/.cache/flowhawk (empty values count as unset)."""
    if env.get("FLOWHAWK_CACHE"):
        return Path(env["FLOWHAWK_CACHE"]).expanduser()
    if env.get("XDG_CACHE_HOME"):
        return Path(env["XDG_CACHE_HOME"]).expanduser() / "flowhawk"
    return (home or Path.home()) / ".cache" / "flowhawk"


@dataclass(frozen=True)
class CpuInfo:
    machine: str
    model: str
    flags: frozenset[str]

    @property
    def key(self) -> str:
        return hashlib.sha256(f"{self.machine} {' '.join(sorted(self.flags))}".encode()).hexdigest()[:16]

    def missing_for(self, variant: str) -> list[str]:
        """Features this CPU lacks for ``variant`` (empty: it can run it)."""
        if variant == "native":
            return []
        if self.machine not in ("x86_64", "AMD64"):
            return [f"an x86-64 CPU (this is {self.machine})"]
        return sorted(X86_64_V2 - self.flags)


@lru_cache(maxsize=1)
def cpu_info() -> CpuInfo:
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        lines = []
    flags = next((ln.split(":", 1)[1] for ln in lines if ln.startswith("flags")), "")
    model = next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name")), "unknown CPU")
    return CpuInfo(platform.machine(), model, frozenset(flags.split()))


def onednn_library() -> Path | None:
    """The oneDNN shared library inside the MindSpore wheel (the kernels' GEMMs call it)."""
    import mindspore

    lib = Path(mindspore.__file__).parent / "lib" / "libdnnl.so.3"
    return lib if lib.exists() else None


def compiler() -> str | None:
    return shutil.which("g++")


def flags_for(variant: str) -> list[str]:
    if variant not in VARIANTS:
        raise ValueError(f"kernel variant must be one of {list(VARIANTS)}, got {variant!r}")
    return [*BASE_FLAGS, f"-march={VARIANTS[variant]}"]


def library_name(variant: str, dnnl: Path, cpu: CpuInfo) -> str:
    """``<variant>-<key>.so``: the key changes with the sources, the flags, oneDNN and (native) the CPU."""
    digest = hashlib.sha256()
    for src in (*SOURCES, *HEADERS):
        digest.update(src.read_bytes())
    digest.update(" ".join([*flags_for(variant), "|link", *LINK_FLAGS]).encode() + str(dnnl).encode())
    if variant == "native":
        digest.update(cpu.key.encode())
    return f"{variant}-{digest.hexdigest()[:16]}.so"


@dataclass(frozen=True)
class KernelBuild:
    """A compiled library: where, which variant, and how long compiling took (0.0 when it was cached)."""

    path: Path
    variant: str
    seconds: float
    compiled: bool


def build_kernels(cache: KernelCache, variant: str = "native", force: bool = False) -> KernelBuild:
    """Compile ``variant`` into ``cache`` unless already there (or ``force``); KernelBuildError on failure."""
    flags = flags_for(variant)
    cpu, dnnl, cxx = cpu_info(), onednn_library(), compiler()
    if cxx is None:
        raise KernelBuildError("no C++ compiler: g++ is not on PATH")
    if dnnl is None:
        raise KernelBuildError("MindSpore's oneDNN library (mindspore/lib/libdnnl.so.3) is missing")
    if variant == "portable" and cpu.machine not in ("x86_64", "AMD64"):
        raise KernelBuildError(f"portable builds target x86-64-v2; this machine is {cpu.machine}")
    out = cache.directory / library_name(variant, dnnl, cpu)
    if out.exists() and not force:
        return KernelBuild(out, variant, 0.0, compiled=False)
    try:
        cache.directory.mkdir(parents=True, exist_ok=True)
        remove_stale_temps(cache.directory)
    except OSError as exc:
        raise KernelBuildError(f"cannot write the kernel cache {cache.directory}: {exc}") from exc
    tmp = tmp_sibling(out)
    objects = [tmp.with_name(f"{tmp.name}-{src.stem}.o") for src in SOURCES]
    commands = [[cxx, *flags, f"-I{KERNEL_DIR}", "-c", str(src), "-o", str(obj)]
                for src, obj in zip(SOURCES, objects, strict=True)]
    commands.append([cxx, *LINK_FLAGS, "-o", str(tmp), *map(str, objects), str(dnnl), f"-Wl,-rpath,{dnnl.parent}"])
    start = time.perf_counter()
    try:
        for cmd in commands:
            res = subprocess.run(cmd, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S, check=False)
            if res.returncode != 0:
                raise KernelBuildError(f"g++ failed building the kernels: {res.stderr.strip()[-500:]}")
        seconds = time.perf_counter() - start
        os.replace(tmp, out)
    except (OSError, subprocess.SubprocessError) as exc:
        raise KernelBuildError(f"building {out} failed: {exc}") from exc
    finally:
        for path in (tmp, *objects):
            path.unlink(missing_ok=True)
    _write_record(out, variant, flags, cpu, dnnl, cxx, seconds)
    return KernelBuild(out, variant, seconds, compiled=True)


def _write_record(out: Path, variant: str, flags: list[str], cpu: CpuInfo, dnnl: Path, cxx: str,
                  seconds: float) -> None:
    """The build record ``<library>.json`` that ``kernel_status`` reads."""
    atomic_write_json(out.with_suffix(".json"), {
        "variant": variant, "march": VARIANTS[variant], "flags": flags, "cpu_key": cpu.key, "cpu_model": cpu.model,
        "machine": cpu.machine, "onednn": str(dnnl), "compiler": _compiler_version(cxx),
        "built_at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "build_seconds": round(seconds, 2)})


def _compiler_version(cxx: str) -> str:
    try:
        res = subprocess.run([cxx, "--version"], capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.SubprocessError):
        return cxx
    return (res.stdout.splitlines() or [cxx])[0]


def find_kernels(cache: KernelCache) -> Path | None:
    """The library this CPU should load from ``cache``: a native build for it, else a portable one, else None."""
    dnnl, cpu = onednn_library(), cpu_info()
    if dnnl is None:
        return None
    for variant in VARIANTS:
        path = cache.directory / library_name(variant, dnnl, cpu)
        if path.is_file() and not cpu.missing_for(variant):
            return path
    return None


@dataclass(frozen=True)
class KernelEntry:
    """One library found in a cache folder, described for ``flowhawk kernels status``."""

    path: Path
    meta: dict[str, object]
    usable: bool
    why: str

    def to_dict(self) -> dict[str, object]:
        return {"path": str(self.path), "usable": self.usable, "why": self.why, **self.meta}


def kernel_status(cache: KernelCache) -> list[KernelEntry]:
    """Every library in ``cache`` with whether this CPU (and these sources / this MindSpore) can load it."""
    if not cache.directory.is_dir():
        return []
    dnnl, cpu = onednn_library(), cpu_info()
    expected = {library_name(v, dnnl, cpu): v for v in VARIANTS} if dnnl is not None else {}
    entries = []
    for path in sorted(cache.directory.glob("*.so")):
        meta = _read_meta(path.with_suffix(".json"))
        usable, why = _judge(expected.get(path.name), meta, cpu)
        entries.append(KernelEntry(path, meta, usable, why))
    return entries


def _judge(variant: str | None, meta: dict[str, object], cpu: CpuInfo) -> tuple[bool, str]:
    """(usable, why) for a library whose name matches ``variant`` of the current build (None: it does not)."""
    if variant is not None:
        missing = cpu.missing_for(variant)
        if missing:
            return False, "this CPU lacks " + ", ".join(missing)
        return True, "built for this CPU" if variant == "native" else "portable (x86-64-v2); this CPU runs it"
    if not meta:
        return False, "named by an older flowhawk (no build record); never loaded, safe to delete"
    if meta.get("variant") == "native" and meta.get("cpu_key") != cpu.key:
        return False, f"built for another CPU ({meta.get('cpu_model')})"
    return False, "stale: built from other kernel sources or another MindSpore install"


def _read_meta(path: Path) -> dict[str, object]:
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return meta if isinstance(meta, dict) else {}
