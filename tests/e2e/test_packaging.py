"""The package as pip builds it: an SPDX licence, the LICENSE file, no warnings."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_the_licence_is_an_spdx_expression_with_its_file() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["license"] == "MIT"
    assert project["license-files"] == ["LICENSE"]
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License\n")
    assert "filedock developers" in text.splitlines()[2]


def _source_tree(destination: Path) -> Path:
    """The project's files as a fresh clone has them: no venv, no caches, no builds."""
    ignored = shutil.ignore_patterns(
        ".git", ".venv", "__pycache__", "*.egg-info", "build", "dist", ".*_cache", "downloads"
    )
    return Path(shutil.copytree(ROOT, destination / "src", ignore=ignored))


@pytest.mark.slow
def test_pip_builds_the_wheel_without_a_warning(tmp_path: Path) -> None:
    source = _source_tree(tmp_path)
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-v", str(source), "-w", "dist"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    output = built.stdout + built.stderr
    if built.returncode and "No matching distribution found for setuptools" in output:
        pytest.skip("no package index to fetch the build backend from")
    assert built.returncode == 0, output
    # setuptools' deprecations (a {text = …} licence, classifiers) and its _Warning.
    noisy = [
        line
        for line in output.splitlines()
        if "deprecat" in line.lower() or "_Warning" in line or "SetuptoolsWarning" in line
    ]
    assert noisy == [], noisy
    [wheel] = (tmp_path / "dist").glob("filedock-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        [metadata] = [name for name in names if name.endswith(".dist-info/METADATA")]
        fields = archive.read(metadata).decode()
    assert "License-Expression: MIT" in fields.splitlines()
    assert "License-File: LICENSE" in fields.splitlines()
    assert any(name.endswith(".dist-info/licenses/LICENSE") for name in names)
    assert "filedock/server/page/status.html" in names  # the status page's data
