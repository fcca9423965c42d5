"""The fused C++ kernels' cache: where it is, building (native and portable), status, loading without a
compiler, and the one warning when nothing usable exists and g++ is missing. Real g++, real MindSpore; the
"no compiler" cases run in a subprocess whose PATH holds no g++."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from flowhawk.model.kernels import build as kbuild
from flowhawk.model.kernels import use_kernel_cache
from flowhawk.model.kernels.build import KernelBuildError, KernelCache, build_kernels, cache_root_from_env

ROOT = Path(__file__).resolve().parents[1]
needs_gxx = pytest.mark.skipif(kbuild.compiler() is None, reason="g++ is not installed")

# Builds a cnn_bilstm network with impl="auto" (what training does) and compares the fused BiLSTM with the
# unrolled one on the same weights; prints what it loaded as JSON.
PROBE = """
import json, logging, os, sys
import numpy as np
logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
import mindspore as ms
from mindspore import Tensor
from flowhawk.model.kernels import KernelCache, cache_root_from_env, kernel_build, kernel_library, use_kernel_cache
from flowhawk.model.config import ModelConfig
from flowhawk.model.layers import BiLSTM
from flowhawk.model.network import build_network, make_predict
use_kernel_cache(KernelCache(cache_root_from_env(os.environ)))
cfg = ModelConfig(n_features=4, window=6, conv_channels=4, hidden=4)
rng = np.random.default_rng(0)
x, mask = rng.normal(size=(3, 6, 4)).astype(np.float32), np.ones((3, 6), np.float32)
logits = make_predict(build_network(cfg))(Tensor(x), Tensor(mask)).asnumpy()
lib = kernel_library()
same = None
if lib is not None:
    fused, unrolled = BiLSTM(4, 8, 1, "fused"), BiLSTM(4, 8, 1, "unrolled")
    ms.load_param_into_net(fused, {p.name: p for p in unrolled.get_parameters()}, strict_load=True)
    same = bool(np.allclose(fused(Tensor(x), Tensor(mask)).asnumpy(), unrolled(Tensor(x), Tensor(mask)).asnumpy(),
                            atol=1e-5))
build = kernel_build()
print(json.dumps({"lib": str(lib) if lib else None, "same": same, "finite": bool(np.isfinite(logits).all()),
                  "build_seconds": build.seconds if build else None}))
"""


def _run(code: str, cache: Path, without_gxx: bool, tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "FLOWHAWK_CACHE": str(cache), "PYTHONPATH": str(ROOT)}
    if without_gxx:
        empty = tmp_path / "empty-path"
        empty.mkdir(exist_ok=True)
        env["PATH"] = str(empty)  # no g++ (nor anything else): the interpreter is called by absolute path
    cmd = [sys.executable, "-c", code] if code else [sys.executable, "-m", "flowhawk.cli", *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, check=False)


@pytest.fixture
def cli_in(monkeypatch: pytest.MonkeyPatch, kernel_cache: KernelCache):
    """Run ``flowhawk`` in-process with FLOWHAWK_CACHE=<folder>; the session's kernel cache is restored after."""
    from flowhawk.cli.main import main

    def run(cache: Path, *argv: str) -> int:
        monkeypatch.setenv("FLOWHAWK_CACHE", str(cache))
        return main(list(argv))

    yield run
    use_kernel_cache(kernel_cache)


def test_cache_folder_resolution_order(tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert cache_root_from_env({}, home) == home / ".cache" / "flowhawk"
    assert cache_root_from_env({"XDG_CACHE_HOME": "/x", "FLOWHAWK_CACHE": ""}, home) == Path("/x/flowhawk")
    assert cache_root_from_env({"XDG_CACHE_HOME": "/x", "FLOWHAWK_CACHE": "/f"}, home) == Path("/f")
    assert KernelCache(Path("/f")).directory == Path("/f/kernels")
    with pytest.raises(ValueError, match=r"KernelCache\.root"):
        KernelCache("")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="variant"):
        build_kernels(KernelCache(tmp_path), "fastest")


@needs_gxx
def test_build_failure_names_the_cause_and_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """g++ (real) rejects a flag: KernelBuildError with its message, and no partial library in the cache."""
    monkeypatch.setattr(kbuild, "BASE_FLAGS", (*kbuild.BASE_FLAGS, "-fno-such-flag-flowhawk"))
    with pytest.raises(KernelBuildError, match=r"g\+\+ failed.*no-such-flag"):
        build_kernels(KernelCache(tmp_path), "portable")
    assert list((tmp_path / "kernels").iterdir()) == []


def test_status_of_an_empty_cache_says_what_would_run(tmp_path: Path, cli_in, capsys) -> None:
    assert cli_in(tmp_path / "cache", "kernels", "status") == 1
    out = capsys.readouterr().out
    assert f"cache: {tmp_path / 'cache' / 'kernels'}" in out and "(no compiled kernels)" in out
    assert "loads: nothing" in out and "flowhawk kernels build" in out
    assert cli_in(tmp_path / "cache", "kernels", "status", "--json") == 1
    assert json.loads(capsys.readouterr().out)["libraries"] == []


@pytest.mark.slow  # compiles (~5 s) and starts MindSpore in a subprocess
@needs_gxx
def test_portable_build_status_and_loading_without_a_compiler(tmp_path: Path, cli_in, capsys) -> None:
    cache = tmp_path / "cache"
    assert cli_in(cache, "kernels", "build", "--portable") == 0
    assert "compiled the portable kernels in" in capsys.readouterr().out
    assert cli_in(cache, "kernels", "build", "--portable") == 0
    assert "already compiled (portable)" in capsys.readouterr().out
    [lib] = sorted((cache / "kernels").glob("*.so"))
    meta = json.loads(lib.with_suffix(".json").read_text())
    assert lib.name.startswith("portable-") and meta["march"] == "x86-64-v2" and "-march=x86-64-v2" in meta["flags"]
    assert cli_in(cache, "kernels", "status") == 0
    out = capsys.readouterr().out
    assert f"{lib.name}: portable, -march=x86-64-v2" in out and "usable here: yes" in out
    assert f"loads: {lib.name}" in out
    # a process with no g++ on PATH loads it (nothing to compile) and it computes what plain MindSpore does
    proc = _run(PROBE, cache, True, tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    probe = json.loads(proc.stdout.strip().splitlines()[-1])
    assert probe == {"lib": str(lib), "same": True, "finite": True, "build_seconds": None}
    assert "WARNING flowhawk" not in proc.stderr


@pytest.mark.slow  # compiles (~5 s) in a subprocess that starts MindSpore
@needs_gxx
def test_first_network_compiles_natively_reports_the_time_and_native_wins(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    proc = _run(PROBE, cache, False, tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    probe = json.loads(proc.stdout.strip().splitlines()[-1])
    assert probe["same"] is True and probe["build_seconds"] > 0
    assert Path(probe["lib"]).parent == cache / "kernels" and Path(probe["lib"]).name.startswith("native-")
    assert proc.stderr.count("compiled the fused C++ kernels for this CPU in") == 1
    portable = build_kernels(KernelCache(cache), "portable")
    assert kbuild.find_kernels(KernelCache(cache)) == Path(probe["lib"]) != portable.path  # native preferred
    entries = {e.path.name: e for e in kbuild.kernel_status(KernelCache(cache))}
    assert entries[Path(probe["lib"]).name].why == "built for this CPU" and all(e.usable for e in entries.values())


@pytest.mark.slow  # starts MindSpore in a subprocess
def test_no_compiler_and_empty_cache_warns_once_and_runs_plain_mindspore(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    proc = _run(PROBE, cache, True, tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == {"lib": None, "same": None, "finite": True,
                                                                "build_seconds": None}
    warnings = [ln for ln in proc.stderr.splitlines() if ln.startswith("WARNING flowhawk")]
    assert len(warnings) == 1, proc.stderr[-2000:]  # the network asks twice (conv+pool, BiLSTM): one warning
    assert "no C++ compiler" in warnings[0] and "training 2.6x and scoring 3.7x slower" in warnings[0]
    assert "flowhawk kernels build" in warnings[0] and str(cache / "kernels") in warnings[0]
    status = _run("", cache, True, tmp_path, "kernels", "status")
    assert status.returncode == 1, status.stdout + status.stderr
    assert "loads: nothing usable and no g++: plain MindSpore ops run, training 2.6x" in status.stdout
    build = _run("", cache, True, tmp_path, "kernels", "build")
    assert build.returncode == 1
    assert build.stderr.strip().splitlines()[-1] == "flowhawk kernels build: no C++ compiler: g++ is not on PATH"


@pytest.mark.slow  # collects the whole suite in a subprocess (~10 s of CPU)
def test_collecting_the_tests_compiles_nothing(tmp_path: Path) -> None:
    """Collection imports every test module; none may build the kernels (they build when a test needs them)."""
    cache, home = tmp_path / "cache", tmp_path / "home"  # the session's cache, and the default before it is set
    env = {k: v for k, v in os.environ.items() if k != "XDG_CACHE_HOME"} | {"FLOWHAWK_CACHE": str(cache),
                                                                           "HOME": str(home)}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "--collect-only", "-p", "no:cacheprovider",
                           str(ROOT / "tests")], env=env, cwd=ROOT, capture_output=True, text=True, timeout=600,
                          check=False)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert " tests collected" in proc.stdout
    assert not cache.exists() and not (home / ".cache" / "flowhawk").exists(), sorted(tmp_path.rglob("*.so"))


@pytest.mark.slow  # compiles (~5 s) in a subprocess
def test_loading_the_kernels_keeps_subnormal_floats(tmp_path: Path) -> None:
    """The kernels are compiled with -ffast-math but linked without it: loading them must not switch the process
    to flush-to-zero (GCC 12 linked crtfastmath.o, and numpy in the same process then lost subnormals)."""
    code = ("import ctypes, numpy as np; from flowhawk.model.kernels import build as b; "
            "lib = b.build_kernels(b.KernelCache(__import__('pathlib').Path(__import__('sys').argv[1]))).path; "
            "ctypes.CDLL(str(lib)); x = np.array([5e-324]); print(bool((x * 1.0)[0] > 0), bool(x[0] / 2 >= 0))")
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path / "cache")], capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split()[0] == "True", "loading the kernels set flush-to-zero / denormals-are-zero"
