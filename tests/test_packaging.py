"""The release artefacts: the sdist and the wheel `make dist` builds, as PyPI would get them.

Built without build isolation, with the setuptools and wheel of the test venv (the
``test`` extra), so the test downloads nothing; `python -m build` makes the sdist
from the checkout and the wheel from that sdist, as a release does.
"""

from __future__ import annotations

import subprocess
import sys
import tarfile
import zipfile
from email.parser import HeaderParser
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

import sse_kit
from tests._live import REPO_ROOT

PACKAGE = REPO_ROOT / "sse_kit"
NAME = f"sse_kit-{sse_kit.__version__}"
# The package's own files besides its modules; static/ is served by create_blueprint.
PACKAGE_DATA = {"sse_kit/py.typed", "sse_kit/static/sse_kit.js"}
# setuptools < 77 puts the license beside METADATA, newer ones under licenses/ (PEP 639).
LICENSE_PATHS = {f"{NAME}.dist-info/LICENSE", f"{NAME}.dist-info/licenses/LICENSE"}


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory holding the freshly built sdist and wheel."""
    out = tmp_path_factory.mktemp("dist")
    build = subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(REPO_ROOT)],
        capture_output=True, text=True, timeout=100,
    )  # fmt: skip
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    return out


def _only(dist: Path, pattern: str) -> Path:
    found = sorted(dist.glob(pattern))
    assert len(found) == 1, f"expected one {pattern} in {dist}, got {found}"
    return found[0]


def _modules() -> set[str]:
    return {f"sse_kit/{p.name}" for p in PACKAGE.glob("*.py")}


def test_the_package_has_no_subpackage_setup_cfg_would_leave_out() -> None:
    """setup.cfg lists ``packages = sse_kit`` alone: a subpackage would not be shipped."""
    folders = {p.name for p in PACKAGE.iterdir() if p.is_dir()} - {"__pycache__"}
    assert folders == {"static"}


def test_the_wheel_holds_the_package_and_nothing_else(dist: Path) -> None:
    with zipfile.ZipFile(_only(dist, "*.whl")) as wheel:
        names = set(wheel.namelist())
    modules = _modules()
    assert "sse_kit/__init__.py" in modules and "sse_kit/_hub.py" in modules
    metadata = {f"{NAME}.dist-info/{n}" for n in ("METADATA", "WHEEL", "RECORD", "top_level.txt")}
    licenses = names & LICENSE_PATHS
    assert len(licenses) == 1, sorted(names)
    assert names == modules | PACKAGE_DATA | metadata | licenses


def test_the_sdist_holds_the_package_readme_license_and_changelog(dist: Path) -> None:
    with tarfile.open(_only(dist, "*.tar.gz")) as sdist:
        names = {m.name.removeprefix(f"{NAME}/") for m in sdist.getmembers() if m.isfile()}
    top = {n.split("/")[0] for n in names}
    assert top == {
        "CHANGELOG.md", "LICENSE", "MANIFEST.in", "PKG-INFO", "README.md", "pyproject.toml",
        "setup.cfg", "sse_kit", "sse_kit.egg-info",
    }  # fmt: skip
    assert {n for n in names if n.startswith("sse_kit/")} == _modules() | PACKAGE_DATA


def test_the_metadata_says_what_pypi_shows(dist: Path) -> None:
    with zipfile.ZipFile(_only(dist, "*.whl")) as wheel:
        text = wheel.read(f"{NAME}.dist-info/METADATA").decode()
    metadata = HeaderParser().parsestr(text)
    assert metadata["Version"] == sse_kit.__version__
    assert metadata["Description-Content-Type"] == "text/markdown"
    assert metadata.get_payload().strip() == (REPO_ROOT / "README.md").read_text().strip()
    assert metadata["License"] == "MIT"
    assert "License :: OSI Approved :: MIT License" in metadata.get_all("Classifier", [])
    assert metadata["Author"] == "the sse_kit authors"
    urls = dict(u.split(", ", 1) for u in metadata.get_all("Project-URL", []))
    assert set(urls) == {"Documentation", "Changelog", "Source", "Issue Tracker"}
    # The dev extra is the test extra (a self-reference) plus the lint tools.
    dev = [Requirement(r) for r in metadata.get_all("Requires-Dist", []) if '"dev"' in r]
    assert {(canonicalize_name(r.name), frozenset(r.extras)) for r in dev} == {
        ("sse-kit", frozenset({"test"})), ("ruff", frozenset()), ("mypy", frozenset()),
    }  # fmt: skip


def test_twine_check_strict_passes(dist: Path) -> None:
    artefacts = sorted(str(p) for p in dist.iterdir())
    check = subprocess.run(
        [sys.executable, "-m", "twine", "check", "--strict", *artefacts],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert check.returncode == 0, check.stdout + check.stderr
    assert check.stdout.count("PASSED") == 2, check.stdout
