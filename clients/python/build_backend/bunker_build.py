"""A PEP 517 build backend using only the standard library.

It builds the pure-Python wheel of `bunker` (everything under src/bunker, `py.typed`
included) and an sdist, reading the name and version from pyproject.toml. It exists so that
`pip install ./clients/python` works without network access: the default build isolation
would otherwise have to download setuptools and wheel.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import re
import tarfile
import zipfile
from pathlib import Path
from typing import Dict, List, Optional, Tuple

ROOT = Path(__file__).resolve().parent.parent
PACKAGE_DIR = ROOT / "src" / "bunker"


def _project() -> Tuple[str, str, str, str]:
    """(name, version, summary, requires-python) from the [project] table of pyproject.toml."""
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    section = text.split("[project]", 1)[1].split("\n[", 1)[0]

    def field(key: str) -> str:
        match = re.search(rf'^{key}\s*=\s*"([^"]*)"', section, re.MULTILINE)
        if match is None:
            raise ValueError(f"pyproject.toml: [project].{key} is missing")
        return match.group(1)

    return field("name"), field("version"), field("description"), field("requires-python")


def _metadata() -> str:
    name, version, summary, requires_python = _project()
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    return (
        "Metadata-Version: 2.1\n"
        f"Name: {name}\nVersion: {version}\nSummary: {summary}\n"
        f"Requires-Python: {requires_python}\n"
        "License: Apache-2.0\n"
        "Classifier: Typing :: Typed\n"
        "Description-Content-Type: text/markdown\n\n"
        f"{readme}"
    )


def _package_files() -> List[Path]:
    return sorted(
        p
        for p in PACKAGE_DIR.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and not p.name.endswith(".pyc")
    )


def _record_line(arcname: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{arcname},sha256={digest},{len(data)}"


def get_requires_for_build_wheel(config_settings: Optional[Dict[str, object]] = None) -> List[str]:
    return []


def get_requires_for_build_sdist(config_settings: Optional[Dict[str, object]] = None) -> List[str]:
    return []


def build_wheel(
    wheel_directory: str,
    config_settings: Optional[Dict[str, object]] = None,
    metadata_directory: Optional[str] = None,
) -> str:
    name, version, _, _ = _project()
    filename = f"{name}-{version}-py3-none-any.whl"
    dist_info = f"{name}-{version}.dist-info"
    entries: List[Tuple[str, bytes]] = []
    for path in _package_files():
        entries.append(((Path("bunker") / path.relative_to(PACKAGE_DIR)).as_posix(), path.read_bytes()))
    entries.append((f"{dist_info}/METADATA", _metadata().encode()))
    wheel_info = "Wheel-Version: 1.0\nGenerator: bunker_build\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    entries.append((f"{dist_info}/WHEEL", wheel_info.encode()))
    entries.append((f"{dist_info}/top_level.txt", b"bunker\n"))
    record = [_record_line(arc, data) for arc, data in entries]
    record.append(f"{dist_info}/RECORD,,")
    entries.append((f"{dist_info}/RECORD", ("\n".join(record) + "\n").encode()))
    with zipfile.ZipFile(os.path.join(wheel_directory, filename), "w", zipfile.ZIP_DEFLATED) as wheel:
        for arcname, data in entries:
            wheel.writestr(arcname, data)
    return filename


def build_sdist(sdist_directory: str, config_settings: Optional[Dict[str, object]] = None) -> str:
    name, version, _, _ = _project()
    base = f"{name}-{version}"
    filename = f"{base}.tar.gz"
    members = [ROOT / "pyproject.toml", ROOT / "README.md", Path(__file__).resolve()]
    members += _package_files()
    with tarfile.open(os.path.join(sdist_directory, filename), "w:gz") as sdist:
        for path in members:
            sdist.add(path, arcname=f"{base}/{path.relative_to(ROOT).as_posix()}")
        pkg_info = _metadata().encode()
        info = tarfile.TarInfo(f"{base}/PKG-INFO")
        info.size = len(pkg_info)
        sdist.addfile(info, io.BytesIO(pkg_info))
    return filename
