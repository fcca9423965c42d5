"""Custom CPU kernels (MindSpore "aot" Custom ops): loaded from a cache folder, compiled with g++ when absent.

``bilstm.cc``: a fused bidirectional LSTM layer (forward + backward); ``convpool.cc``: temporal
convolution + ReLU + mask + max pooling (forward + backward). Their GEMMs call the oneDNN library
that ships inside the MindSpore wheel. Compiling and the cache layout are in ``build.py``.

``kernel_library()`` (what the network layers call) loads, from the active cache, a ``-march=native``
build for this CPU, else a portable ``x86-64-v2`` one; with neither, it compiles a native build (a few
seconds, logged with its duration) and, when that is impossible (no g++), logs ONE warning and returns
None: the layers then run plain MindSpore ops. The active cache is ``~/.cache/flowhawk`` unless the caller
(the CLI, the flows, the tests) sets one with ``use_kernel_cache`` (from ``cache_root_from_env``).
"""

from __future__ import annotations

import ctypes
import logging
import threading
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from flowhawk.model.kernels.build import (
    KernelBuild,
    KernelBuildError,
    KernelCache,
    build_kernels,
    cache_root_from_env,
    find_kernels,
    kernel_status,
)

__all__ = ["SLOWDOWN", "KernelBuild", "KernelBuildError", "KernelCache", "active_cache", "build_kernels",
           "cache_root_from_env", "find_kernels", "kernel_build", "kernel_library", "kernel_stats", "kernel_status",
           "kernel_threads", "set_kernel_threads", "use_kernel_cache"]

log = logging.getLogger(__name__)
# benchmarks/results/net.md, run A (B=512, T=16): ms_unrolled (the fallback) vs ms_fused, windows/s
SLOWDOWN = ("training 2.6x and scoring 3.7x slower than with the fused kernels (benchmarks/results/net.md, "
            "run A: 3,050 vs 7,904 training windows/s, 6,102 vs 22,611 scoring windows/s)")


@dataclass
class _Active:
    """Process-wide: the cache set by ``use_kernel_cache`` and the compile ``kernel_library`` did, if any."""

    cache: KernelCache | None = None
    build: KernelBuild | None = None


_ACTIVE = _Active()
_THREADS = [1]  # what flowhawk_set_threads last returned (the library's own default is 1)
_LOCK = threading.Lock()  # two threads building networks at once: one compile, one warning


def use_kernel_cache(cache: KernelCache) -> None:
    """Make ``cache`` the folder ``kernel_library`` loads from (and builds into) in this process."""
    if not isinstance(cache, KernelCache):
        raise TypeError(f"use_kernel_cache needs a KernelCache, got {type(cache).__name__}")
    _ACTIVE.cache = cache


def active_cache() -> KernelCache:
    return _ACTIVE.cache or KernelCache(Path.home() / ".cache" / "flowhawk")


def kernel_build() -> KernelBuild | None:
    """The compile this process did for ``kernel_library`` (its duration), or None when it loaded a cached one."""
    return _ACTIVE.build


def kernel_library() -> Path | None:
    """The kernel library to load, compiling it if needed; None (with one warning) when impossible here."""
    with _LOCK:
        return _load_or_build(active_cache())


@lru_cache(maxsize=8)
def _load_or_build(cache: KernelCache) -> Path | None:
    """Once per cache folder and process (so one compile, or one warning)."""
    found = find_kernels(cache)
    if found is not None:
        log.debug("fused kernels: %s", found)
        return found
    try:
        build = build_kernels(cache, "native")
    except KernelBuildError as exc:
        log.warning("fused C++ kernels unavailable: %s, and nothing usable for this CPU in %s. Running plain "
                    "MindSpore ops instead: %s. Fix: install g++ and run `flowhawk kernels build` (`flowhawk kernels "
                    "status` shows the cache).", exc, cache.directory, SLOWDOWN)
        return None
    _ACTIVE.build = build
    log.info("compiled the fused C++ kernels for this CPU in %.1f s into %s (once per CPU and cache; "
             "`flowhawk kernels build` does it ahead of time)", build.seconds, build.path)
    return build.path


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
        _THREADS[0] = int(ctypes.CDLL(str(lib)).flowhawk_set_threads(int(n)))


def kernel_threads() -> int:
    """The thread count last given to the fused kernels (1 until set)."""
    return _THREADS[0]
