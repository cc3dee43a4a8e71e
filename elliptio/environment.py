"""The interpreter's packages and conda environment, as a save captures them.

:func:`pip_freeze` writes what reinstalling needs, one requirement a line: ``name==version``
for a distribution from an index, and for one installed from a URL, a VCS or a local path
(its ``direct_url.json``, PEP 610) the direct reference pip accepts:

- ``name @ git+https://host/repo@<commit>`` (``#subdirectory=…`` kept) from ``vcs_info``;
  an editable VCS checkout is ``-e git+https://host/repo@<commit>#egg=name``;
- ``name @ file:///path`` from ``dir_info`` (a local directory) or ``archive_info`` (a
  wheel, an sdist, an https URL); an editable local directory is ``-e file:///path``;

each followed by ``  # name==version`` (``# editable name==version``) so the version stays
readable. A ``direct_url.json`` that cannot be read or parsed keeps ``name==version`` with
``  # direct_url.json unreadable``. Each part of a line goes through
:func:`elliptio.redact.redact` on its own (a token in a VCS URL becomes ``***``): the
whole line at once would not do, since a URL's credentials end at its last ``@`` and a
VCS reference's ``@<commit>`` would be taken for part of them.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import time
from typing import Any

from .redact import redact

__all__ = ["conda_env", "freeze_line", "pip_freeze"]

_pip_cache: tuple[float, str] | None = None


def freeze_line(name: str, version: str, direct: str | None) -> str:
    """The requirement line of one distribution, from its ``direct_url.json`` text (or
    None when it has none: then ``name==version``)."""
    name, version = redact(name), redact(version)
    plain = f"{name}=={version}"
    if direct is None:
        return plain
    try:
        data: Any = json.loads(direct)
        url = data["url"]
        if not isinstance(url, str) or not url or any(c.isspace() for c in url):
            raise ValueError("no url")
    except (ValueError, KeyError, TypeError):
        return f"{plain}  # direct_url.json unreadable"
    url = redact(url)
    vcs = data.get("vcs_info")
    dir_info = data.get("dir_info")
    editable = isinstance(dir_info, dict) and dir_info.get("editable") is True
    sub = data.get("subdirectory")
    fragment = f"subdirectory={redact(sub)}" if isinstance(sub, str) and sub else ""
    if isinstance(vcs, dict) and isinstance(vcs.get("vcs"), str):
        kind = vcs["vcs"]
        ref = vcs.get("commit_id") or vcs.get("requested_revision")
        full = url if url.startswith(f"{kind}+") else f"{kind}+{url}"
        if isinstance(ref, str) and ref and not any(c.isspace() for c in ref):
            full += f"@{redact(ref)}"
        if vcs.get("editable") is True or editable:
            egg = "#egg=" + name.replace("-", "_") + (f"&{fragment}" if fragment else "")
            return f"-e {full}{egg}  # editable {plain}"
        return f"{name} @ {full}{'#' + fragment if fragment else ''}  # {plain}"
    if editable:
        return f"-e {url}{'#' + fragment if fragment else ''}  # editable {plain}"
    return f"{name} @ {url}{'#' + fragment if fragment else ''}  # {plain}"


def _name_version(dist: importlib.metadata.Distribution) -> tuple[str | None, str]:
    """Name and version from the metadata's header lines: ``dist.metadata`` parses the
    whole file (the long description too) as an e-mail, a third of a save's capture."""
    text = dist.read_text("METADATA") or dist.read_text("PKG-INFO")
    if text is None:
        return dist.metadata["Name"], dist.version
    head: dict[str, str] = {}
    for line in text.partition("\n\n")[0].splitlines():
        key, colon, value = line.partition(":")
        if colon and key in ("Name", "Version") and key not in head:
            head[key] = value.strip()
    if "Name" not in head or "Version" not in head:
        return dist.metadata["Name"], dist.version
    return head["Name"], head["Version"]


def pip_freeze() -> str:
    """The requirement line (:func:`freeze_line`) of every distribution importable by
    this interpreter, sorted by name; the first of a name on ``sys.path`` wins, as for
    import.

    Read with importlib.metadata (milliseconds) rather than a ``pip freeze`` subprocess
    (about a second); cached for 60 s within a process.
    """
    global _pip_cache
    if _pip_cache and time.monotonic() - _pip_cache[0] < 60:
        return _pip_cache[1]
    seen: dict[str, tuple[str, str]] = {}
    for dist in importlib.metadata.distributions():
        try:
            name, version = _name_version(dist)
        except Exception:
            continue
        if not name or name.lower() in seen:
            continue
        try:
            direct = dist.read_text("direct_url.json")
        except Exception:
            direct = None
        seen[name.lower()] = (name.lower(), freeze_line(name, version, direct))
    text = "\n".join(line for _, line in sorted(seen.values())) + "\n"
    _pip_cache = (time.monotonic(), text)
    return text


def conda_env() -> dict[str, Any]:
    """``{"present": True, "name": …, "prefix": …}`` when this process runs in an
    activated conda environment (``CONDA_PREFIX``, ``CONDA_DEFAULT_ENV``; the name is the
    prefix's last segment when only the prefix is set), else ``{"present": False}``."""
    prefix = os.environ.get("CONDA_PREFIX") or None
    name = os.environ.get("CONDA_DEFAULT_ENV") or None
    if not prefix and not name:
        return {"present": False}
    if not name and prefix:
        name = os.path.basename(prefix.rstrip("/")) or prefix
    return {"present": True, "name": redact(name) if name else None,
            "prefix": redact(prefix) if prefix else None}
