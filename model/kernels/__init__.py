"""Custom CPU kernels (MindSpore "aot" Custom ops), compiled with g++ on first use.

``bilstm.cc``: a fused bidirectional LSTM layer (forward + backward); ``convpool.cc``: temporal
convolution + ReLU + mask + max pooling (forward + backward). Their GEMMs call the oneDNN library
that ships inside the MindSpore wheel. The shared object is built once per source /
compiler-flag / CPU combination into a cache folder (temp name, then os.replace: never half-written)
and reused. When no compiler or no oneDNN is available, ``bilstm_ops()`` returns None and callers
fall back to the pure-MindSpore unrolled recurrence.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import tempfile
from functools import lru_cache
from pathlib import Path

log = logging.getLogger(__name__)
KERNEL_DIR = Path(__file__).parent
SOURCES = (KERNEL_DIR / "bilstm.cc", KERNEL_DIR / "convpool.cc")
HEADERS = (KERNEL_DIR / "common.h",)
CXXFLAGS = ["-std=c++17", "-O3", "-march=native", "-ffast-math", "-fPIC", "--shared",
            "-D_GLIBCXX_USE_CXX11_ABI=0", "-pthread"]


def _mindspore_lib() -> Path | None:
    import mindspore

    lib = Path(mindspore.__file__).parent / "lib" / "libdnnl.so.3"
    return lib if lib.exists() else None


def _cpu_signature() -> str:
    try:
        flags = next((ln for ln in Path("/proc/cpuinfo").read_text().splitlines() if ln.startswith("flags")), "")
    except OSError:
        flags = ""
    return platform.machine() + flags


def default_cache_dir() -> Path:
    return Path.home() / ".cache" / "flowhawk" / "kernels"


def build_kernels(cache_dir: Path | None = None) -> Path:
    """Compile the kernels (if not cached) into one .so and return its path; RuntimeError on failure."""
    dnnl = _mindspore_lib()
    cxx = shutil.which("g++")
    if dnnl is None or cxx is None:
        raise RuntimeError(f"cannot build the fused BiLSTM kernel: g++={cxx}, MindSpore oneDNN={dnnl}")
    key = hashlib.sha256(b"".join(src.read_bytes() for src in (*SOURCES, *HEADERS)) + " ".join(CXXFLAGS).encode()
                         + str(dnnl).encode() + _cpu_signature().encode()).hexdigest()[:16]
    cache = cache_dir or default_cache_dir()
    out = cache / f"flowhawk-kernels-{key}.so"
    if out.exists():
        return out
    cache.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".so.tmp", dir=cache)
    os.close(fd)
    cmd = [cxx, *CXXFLAGS, f"-I{KERNEL_DIR}", "-o", tmp, *map(str, SOURCES), str(dnnl), f"-Wl,-rpath,{dnnl.parent}"]
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
        if res.returncode != 0:
            raise RuntimeError(f"g++ failed building the kernels: {res.stderr.strip()[-500:]}")
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    log.info("built fused kernels %s", out)
    return out


@lru_cache(maxsize=1)
def kernel_library() -> Path | None:
    """The compiled kernel library, or None (logged) when it cannot be built on this machine."""
    try:
        return build_kernels()
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        log.warning("fused kernels unavailable, using plain MindSpore ops instead: %s", exc)
        return None


def kernel_stats() -> dict[str, tuple[int, float]]:
    """{kernel: (calls, total seconds)} spent inside the fused kernels in this process (profiling)."""
    lib = kernel_library()
    if lib is None:
        return {}
    fn = ctypes.CDLL(str(lib)).flowhawk_kernel_stats
    fn.restype = ctypes.c_int64
    names = ("lstm_fwd", "lstm_bwd", "conv_fwd", "conv_bwd")
    return {n: (int(fn(2 * i)), fn(2 * i + 1) / 1e9) for i, n in enumerate(names)}


def set_kernel_threads(n: int) -> None:
    """Threads the fused kernels may use (2 = one per LSTM direction)."""
    lib = kernel_library()
    if lib is not None:
        ctypes.CDLL(str(lib)).flowhawk_set_threads(int(n))
