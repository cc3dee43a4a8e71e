"""What differs between two Python environments: an artifact's (its captured pip freeze,
Python and platform) and the running interpreter's, or two artifacts'.

The API, for ``eio env diff``, ``eio diff``, ``eio reproduce`` and the web pages:

- :func:`canonical_name` — a distribution name as packaging normalises it (PEP 503).
- :func:`parse_freeze` — pip freeze text -> ``{canonical name: requirement}``.
- :class:`Environment` — packages, Python and platform of one side, or why unknown;
  :func:`recorded_environment` (an artifact's) and :func:`running_environment` (this
  interpreter's, read as :func:`elliptio.provenance.pip_freeze` captures it at save).
- :func:`compare` — two environments -> :class:`EnvDiff`; :func:`env_diff` compares an
  artifact with the running interpreter (``Artifact.env_diff()``).

The value of a package in a parsed freeze is its version for a pinned line
(``pandas==2.0.1`` -> ``2.0.1``), else the requirement as written after the name
(``@ git+https://…``, ``>=1.0``) or, for an editable line, ``-e <target>``. Only the
platform's system and machine are compared (``Linux x86_64``): a kernel update on the same
machine is no difference for reproducing a save.

This module reads artifacts by duck typing (``metadata`` and ``logs``) and imports
nothing of :mod:`elliptio.artifact`, which calls it.
"""

from __future__ import annotations

import platform as _platform
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from . import provenance

__all__ = ["EnvDiff", "Environment", "canonical_name", "compare", "env_diff",
           "parse_freeze", "recorded_environment", "running_environment"]

#: a pip freeze log larger than this is not read (nobody's environment is 16 MiB of names)
MAX_FREEZE_BYTES = 16 << 20

_RUNS = re.compile(r"[-_.]+")
# where a distribution name ends: whitespace, a specifier, extras, a marker or a URL
_NAME_END = re.compile(r"[\s=<>!~;@\[(]")
_PINNED = re.compile(r"^===?\s*([^\s;]+)$")
_EGG = re.compile(r"[#&]egg=([^&\s]+)")
# pip's comment before an editable line it cannot name otherwise:
# "# Editable install with no version control (name==1.0)"
_EDITABLE_NOTE = re.compile(r"^#\s*Editable\b.*\(([^()=\s]+)==[^()]*\)\s*$")
# a comment: '#' at the start or after whitespace (a URL's '#egg=' fragment is no comment)
_COMMENT = re.compile(r"(^|\s+)#.*$")


def canonical_name(name: str) -> str:
    """Lower case, each run of ``-``, ``_`` and ``.`` one ``-`` (as packaging does)."""
    return _RUNS.sub("-", name).lower()


def parse_freeze(text: str) -> dict[str, str]:
    """``{canonical name: version or requirement}`` of a pip freeze (or requirements) text.

    Understood: ``name==version`` (extras and markers dropped), ``name @ url``, other
    specifiers (``name>=1``), ``-e``/``--editable`` lines (named by ``#egg=`` or by pip's
    ``# Editable … (name==version)`` comment before them, else keyed by their target),
    comments (whole-line and after whitespace) and blank lines. Other option lines
    (``-i``, ``--find-links``, ``-r``) are not packages and are skipped. A name given
    twice keeps its last line."""
    out: dict[str, str] = {}
    note: str | None = None
    for raw in text.splitlines():
        line = raw.strip()
        m = _EDITABLE_NOTE.match(line)
        if m:
            note = canonical_name(m.group(1))
            continue
        line = _COMMENT.sub("", line).strip()
        if not line:
            continue
        if line.startswith(("-e ", "-e\t", "--editable ", "--editable=")):
            target = re.split(r"[\s=]", line, maxsplit=1)[1].strip()
            egg = _EGG.search(target)
            name = canonical_name(egg.group(1)) if egg else note or target
            out[name] = f"-e {target}"
            note = None
            continue
        note = None
        if line.startswith("-"):
            continue
        end = _NAME_END.search(line)
        name, rest = (line[: end.start()], line[end.start():]) if end else (line, "")
        if not name:
            continue
        rest = re.sub(r"^\[[^\]]*\]", "", rest.strip()).strip()  # extras
        pinned = _PINNED.match(rest.split(";", 1)[0].strip())
        out[canonical_name(name)] = pinned.group(1) if pinned else rest
    return out


@dataclass(frozen=True)
class Environment:
    """One side of a comparison. ``packages`` is None when unknown; ``unknown`` says why
    for each part that is (``{"packages": reason, "python": reason, ...}``)."""

    packages: dict[str, str] | None
    python: str | None
    platform: str | None
    unknown: dict[str, str] = field(default_factory=dict)


def _python_text(py: Any) -> str | None:
    if not isinstance(py, Mapping) or not py.get("version"):
        return None
    impl = py.get("implementation")
    version = str(py["version"])
    return version if impl in (None, "CPython") else f"{impl} {version}"


def _platform_text(pl: Any) -> str | None:
    if not isinstance(pl, Mapping) or not pl.get("system"):
        return None
    return " ".join(str(pl[k]) for k in ("system", "machine") if pl.get(k))


def running_environment() -> Environment:
    """This interpreter: its packages as a save would capture them now."""
    return Environment(
        parse_freeze(provenance.pip_freeze()),
        _python_text({"version": _platform.python_version(),
                      "implementation": _platform.python_implementation()}),
        _platform_text({"system": _platform.system(), "machine": _platform.machine()}))


def recorded_environment(artifact: Any) -> Environment:
    """What *artifact* (an :class:`~elliptio.artifact.Artifact`) recorded of its
    environment. Its pip freeze log is read verified (``IntegrityError`` if its bytes do
    not match); a part it did not record is unknown, with the reason it recorded."""
    prov = artifact.metadata.get("provenance")
    prov = prov if isinstance(prov, Mapping) else {}
    unknown: dict[str, str] = {}
    packages: dict[str, str] | None = None
    if "pip_freeze" in artifact.logs:
        log = artifact.logs.pip_freeze
        if log.size > MAX_FREEZE_BYTES:
            unknown["packages"] = f"its pip freeze log is too large ({log.size} bytes)"
        else:
            packages = parse_freeze(log.read_bytes().decode("utf-8", "replace"))
    else:
        pf = prov.get("pip_freeze")
        reason = pf.get("reason") if isinstance(pf, Mapping) else None
        unknown["packages"] = f"no pip freeze was recorded ({reason})" if reason \
            else "no pip freeze was recorded"
    python = _python_text(prov.get("python"))
    if python is None:
        unknown["python"] = "no Python version was recorded"
    plat = _platform_text(prov.get("platform"))
    if plat is None:
        unknown["platform"] = "no platform was recorded"
    return Environment(packages, python, plat, unknown)


@dataclass(frozen=True)
class EnvDiff:
    """What differs from the *left* environment to the *right* one (``labels`` name them:
    ``("artifact", "here")`` or ``("a", "b")``).

    ``added``: ``(name, right version)`` only on the right; ``removed``: ``(name, left
    version)`` only on the left; ``changed``: ``(name, left version, right version)``;
    each sorted by name. ``python`` and ``platform``: ``(left, right)`` when they differ,
    else None. ``unknown``: what could not be compared, ``{part: why}``, a part
    ``"packages"``, ``"python"`` or ``"platform"``, the why naming the side."""

    labels: tuple[str, str] = ("artifact", "here")
    added: list[tuple[str, str]] = field(default_factory=list)
    removed: list[tuple[str, str]] = field(default_factory=list)
    changed: list[tuple[str, str, str]] = field(default_factory=list)
    python: tuple[str, str] | None = None
    platform: tuple[str, str] | None = None
    unknown: dict[str, str] = field(default_factory=dict)

    @property
    def differs(self) -> bool:
        """A difference was found (whatever could not be compared)."""
        return bool(self.added or self.removed or self.changed or self.python
                    or self.platform)

    @property
    def same(self) -> bool:
        """Everything was compared and nothing differs."""
        return not self.differs and not self.unknown

    def lines(self) -> list[str]:
        """The differences for people, one per line (``pandas 2.0.1 (artifact) vs 1.4.0
        (here)``), raw: a caller printing them shows them with :func:`~elliptio.text.visible`."""
        left, right = self.labels
        out = [f"{n} {a} ({left}) vs {b} ({right})" for n, a, b in self.changed]
        out += [f"{n} {v} ({right} only)" for n, v in self.added]
        out += [f"{n} {v} ({left} only)" for n, v in self.removed]
        for what, pair in (("python", self.python), ("platform", self.platform)):
            if pair:
                out.append(f"{what} {pair[0]} ({left}) vs {pair[1]} ({right})")
        return out

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: ``{"same", "differs", "labels", "packages": {"added": [{name,
        version}], "removed": [{name, version}], "changed": [{name, <left>, <right>}]} or
        null when unknown, "python" and "platform": {<left>, <right>} or null, "unknown":
        {part: why}}``."""
        left, right = self.labels

        def pair(p: tuple[str, str] | None) -> dict[str, str] | None:
            return None if p is None else {left: p[0], right: p[1]}

        packages = None if "packages" in self.unknown else {
            "added": [{"name": n, "version": v} for n, v in self.added],
            "removed": [{"name": n, "version": v} for n, v in self.removed],
            "changed": [{"name": n, left: a, right: b} for n, a, b in self.changed]}
        return {"same": self.same, "differs": self.differs, "labels": [left, right],
                "packages": packages, "python": pair(self.python),
                "platform": pair(self.platform), "unknown": dict(self.unknown)}


def compare(left: Environment, right: Environment,
            labels: tuple[str, str] = ("artifact", "here")) -> EnvDiff:
    """What differs from *left* to *right*; a part unknown on either side is in
    ``unknown`` (the reason prefixed by the side's label), not a difference."""
    unknown: dict[str, str] = {}
    for label, env in zip(labels, (left, right), strict=True):
        for part, why in env.unknown.items():
            unknown.setdefault(part, f"{label}: {why}")
    added: list[tuple[str, str]] = []
    removed: list[tuple[str, str]] = []
    changed: list[tuple[str, str, str]] = []
    if left.packages is not None and right.packages is not None:
        lp, rp = left.packages, right.packages
        added = [(n, rp[n]) for n in sorted(rp.keys() - lp.keys())]
        removed = [(n, lp[n]) for n in sorted(lp.keys() - rp.keys())]
        changed = [(n, lp[n], rp[n]) for n in sorted(lp.keys() & rp.keys()) if lp[n] != rp[n]]
    else:
        for label, env in zip(labels, (left, right), strict=True):
            if env.packages is None:
                unknown.setdefault("packages", f"{label}: the packages are unknown")

    def differ(a: str | None, b: str | None) -> tuple[str, str] | None:
        return (a, b) if a is not None and b is not None and a != b else None

    return EnvDiff(labels, added, removed, changed, differ(left.python, right.python),
                   differ(left.platform, right.platform), unknown)


def env_diff(artifact: Any) -> EnvDiff:
    """What differs between *artifact*'s recorded environment and this interpreter."""
    return compare(recorded_environment(artifact), running_environment())
