"""The wheel's package list and package data cover every file the kit imports or reads.

`[tool.setuptools] packages` is listed by hand (the import names differ from the folders), so a
new sub-package or data file is easy to leave out: the editable install still works, an installed
wheel does not.
"""

from __future__ import annotations

import fnmatch
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _setuptools() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]


def _package_dirs(config: dict) -> dict[str, Path]:
    """Every package under the mapped roots, as import name -> folder."""
    found: dict[str, Path] = {}
    for root_name, folder in config["package-dir"].items():
        base = ROOT / folder
        for init in base.rglob("__init__.py"):
            if "build" in init.relative_to(base).parts:
                continue
            relative = init.parent.relative_to(base)
            found[".".join((root_name, *relative.parts))] = init.parent
    return found


def test_every_package_folder_is_listed_for_the_wheel():
    config = _setuptools()
    assert sorted(_package_dirs(config)) == sorted(config["packages"])


def test_every_data_file_in_a_package_is_shipped_as_package_data():
    config = _setuptools()
    patterns = config.get("package-data", {})
    unshipped = []
    for name, folder in _package_dirs(config).items():
        for path in folder.iterdir():
            if not path.is_file() or path.suffix in {".py", ".pyc"}:
                continue
            root_name = name.split(".")[0]
            root_folder = ROOT / config["package-dir"][root_name]
            relative = path.relative_to(root_folder).as_posix()
            if not any(fnmatch.fnmatch(relative, pattern) for pattern in patterns.get(root_name, [])):
                unshipped.append(relative)
    assert unshipped == []
