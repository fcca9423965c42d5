"""The wheel: one top-level package, ``flowhawk`` (no generic model/flows/lake/extractors in site-packages),
with the kernel sources and the nDPI protocol table inside. Built exactly as documented (``pip wheel``, with
build isolation) from a copy of the working tree, so the tree itself gets no build/ or egg-info."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA_FILES = {"flowhawk/model/kernels/bilstm.cc", "flowhawk/model/kernels/convpool.cc",
              "flowhawk/model/kernels/common.h", "flowhawk/extractors/ndpi_protocols.json"}
_IGNORE = shutil.ignore_patterns(".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".*_cache",
                                 "flowhawk-data")


def _pip(*args: str) -> None:
    proc = subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check", *args], capture_output=True,
                          text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]


@pytest.mark.slow  # pip builds the wheel in an isolated environment (~20 s)
def test_wheel_installs_one_top_level_package_with_its_data_files(tmp_path: Path) -> None:
    src = shutil.copytree(ROOT, tmp_path / "src", ignore=_IGNORE)
    _pip("wheel", "--no-deps", "-q", str(src), "-w", str(tmp_path / "wheel"))
    [wheel] = (tmp_path / "wheel").glob("flowhawk-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        dist_info = next(n.split("/")[0] for n in names if n.endswith(".dist-info/RECORD"))
        top_level = zf.read(f"{dist_info}/top_level.txt").decode().split()
    assert top_level == ["flowhawk"]
    assert {n.split("/")[0] for n in names} == {"flowhawk", dist_info}
    assert set(names) >= DATA_FILES, DATA_FILES - set(names)
    assert "flowhawk/model/kernels/build.py" in names and "flowhawk/cli/kernels.py" in names
    # installed, the same: one importable top-level name; the kernel sources are where the code looks for them
    site = tmp_path / "site"
    _pip("install", "--no-deps", "-q", "--target", str(site), str(wheel))
    assert sorted(p.name for p in site.iterdir() if p.name not in ("bin", dist_info)) == ["flowhawk"]
    probe = ("import sys; sys.path.insert(0, sys.argv[1]); import flowhawk.model.kernels.build as b; "
             "print(all(p.is_file() for p in (*b.SOURCES, *b.HEADERS)), b.KERNEL_DIR)")
    out = subprocess.run([sys.executable, "-S", "-c", probe, str(site)], capture_output=True, text=True, timeout=60,
                         check=True).stdout.split()
    assert out == ["True", str(site / "flowhawk" / "model" / "kernels")]
