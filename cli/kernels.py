"""``flowhawk kernels build|status``: compile the fused C++ kernels ahead of time, and show what is compiled.

The cache folder is $FLOWHAWK_CACHE, else $XDG_CACHE_HOME/flowhawk, else ~/.cache/flowhawk (kernels in its
``kernels/`` subfolder); every flowhawk command loads the kernels from there.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping

from flowhawk.model.kernels import KernelCache, cache_root_from_env

ENV_HELP = "cache folder: $FLOWHAWK_CACHE, else $XDG_CACHE_HOME/flowhawk, else ~/.cache/flowhawk"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("kernels", help="compile the fused C++ kernels ahead of time / show what is compiled",
                       description="The detector's fused C++ kernels (BiLSTM, conv+pool) are compiled with g++ "
                       "once per CPU into a cache folder. " + ENV_HELP + ".")
    ksub = p.add_subparsers(dest="kernels_command", metavar="ACTION", required=True)
    build = ksub.add_parser("build", help="compile the kernels into the cache folder (no-op when already there)",
                            description="Compile the kernels with -march=native for this CPU (default) or, with "
                            "--portable, with -march=x86-64-v2 for images that move between machines. Loading "
                            "prefers a native build for the running CPU, then a portable one. " + ENV_HELP + ".")
    build.add_argument("--portable", action="store_true", help="build -march=x86-64-v2 (any x86-64 CPU since "
                       "~2009) instead of -march=native")
    build.add_argument("--force", action="store_true", help="compile again even when the library is cached")
    build.set_defaults(func=run_build)
    status = ksub.add_parser("status", help="what is compiled, where, for which CPU, and whether this CPU can use it",
                             description="List the compiled kernel libraries in the cache folder. Exit code 0 when "
                             "one is usable on this CPU, 1 when the plain-MindSpore path would run. " + ENV_HELP + ".")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.set_defaults(func=run_status)


def cache_from_env(env: Mapping[str, str]) -> KernelCache:
    return KernelCache(cache_root_from_env(env))


def run_build(args: argparse.Namespace) -> int:
    from flowhawk.model.kernels import KernelBuildError, build_kernels

    cache = cache_from_env(os.environ)
    variant = "portable" if args.portable else "native"
    try:
        build = build_kernels(cache, variant, force=args.force)
    except KernelBuildError as exc:
        print(f"flowhawk kernels build: {exc}", file=sys.stderr)
        return 1
    if build.compiled:
        print(f"compiled the {variant} kernels in {build.seconds:.1f} s: {build.path}")
    else:
        print(f"already compiled ({variant}): {build.path} (--force compiles again)")
    return 0


def run_status(args: argparse.Namespace) -> int:
    from flowhawk.model.kernels import SLOWDOWN, find_kernels, kernel_status
    from flowhawk.model.kernels.build import compiler, cpu_info

    cache = cache_from_env(os.environ)
    entries, loads, cpu, cxx = kernel_status(cache), find_kernels(cache), cpu_info(), compiler()
    if args.json:
        print(json.dumps({"cache": str(cache.directory), "loads": str(loads) if loads else None,
                          "cpu": {"machine": cpu.machine, "model": cpu.model, "key": cpu.key,
                                  "x86_64_v2": not cpu.missing_for("portable")},
                          "compiler": cxx, "libraries": [e.to_dict() for e in entries]}, indent=2))
        return 0 if loads else 1
    v2 = cpu.missing_for("portable")
    print(f"cache: {cache.directory}")
    print(f"this CPU: {cpu.machine}, {cpu.model} (key {cpu.key}); x86-64-v2: "
          + ("yes" if not v2 else "no, lacks " + ", ".join(v2)))
    print(f"compiler: {cxx or 'none (g++ not on PATH)'}")
    for e in entries:
        m = e.meta
        built = (f"{m.get('variant')}, -march={m.get('march')}, built {m.get('built_at')} in "
                 f"{m.get('build_seconds')} s by {m.get('compiler')} on {m.get('cpu_model')}") if m else "no record"
        print(f"  {e.path.name}: {built}; usable here: {'yes' if e.usable else 'no'} ({e.why})")
    if not entries:
        print("  (no compiled kernels)")
    if loads:
        print(f"loads: {loads.name}")
        return 0
    if cxx:
        print("loads: nothing compiled for this CPU yet; the first network built compiles it (a few seconds), "
              "or run `flowhawk kernels build` now")
    else:
        print(f"loads: nothing usable and no g++: plain MindSpore ops run, {SLOWDOWN}. Fix: install g++ and run "
              "`flowhawk kernels build`")
    return 1
