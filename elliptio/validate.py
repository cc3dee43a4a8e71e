"""Checks of what a save records beside the files: ``info``, tags and ``based_on`` ids.

Each returns the value as it will be stored (normalised) or raises ``UsageError`` saying
what is wrong; nothing is written before they pass. The rules are the README's: ``info``
holds YAML-safe values under keys without ``.`` and is bounded in size
(``ELLIPTIO_MAX_INFO_BYTES``); tags are directory names in the mount (``by-tag/<tag>``),
so they must be path-safe.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import yaml

from .artifact import Artifact
from .errors import UsageError
from .ids import check_id

MAX_TAGS = 256
MAX_TAG_LEN = 200


def check_info(info: Any, max_bytes: int | None) -> dict[str, Any]:
    """Validate ``info``: a mapping with string keys (no '.'), YAML-safe values, bounded
    (*max_bytes* as YAML; None: not measured, for info read back whose metadata.yaml is
    bounded as a whole); ``info.type``, one of the tags, as long as a tag may be."""
    if info is None:
        return {}
    if not isinstance(info, Mapping):
        raise UsageError(f"info must be a mapping, got {type(info).__name__}")

    def check(value: Any, where: str, depth: int = 0) -> Any:
        if depth > 32:
            raise UsageError(f"info{where}: nested too deeply (or recursive)")
        if isinstance(value, Mapping):
            out = {}
            for k, v in value.items():
                if not isinstance(k, str) or not k:
                    raise UsageError(f"info{where}: keys must be non-empty strings, got {k!r}")
                if "." in k:
                    raise UsageError(f"info{where}: key {k!r} contains '.', which separates "
                                     "nested keys in queries; use nesting or '_'")
                out[k] = check(v, f"{where}.{k}", depth + 1)
            return out
        if isinstance(value, (list, tuple)):
            return [check(v, f"{where}[{i}]", depth + 1) for i, v in enumerate(value)]
        if value is None or isinstance(value, (str, bool, int)):
            return value
        if isinstance(value, float):
            if not math.isfinite(value):
                raise UsageError(f"info{where}: {value} is not a finite number")
            return value
        if isinstance(value, datetime):
            return value.isoformat()
        raise UsageError(f"info{where}: {type(value).__name__} values cannot be stored "
                         "(use str, int, float, bool, None, lists and mappings)")

    clean = check(info, "")
    kind = clean.get("type")
    if kind is not None and len(str(kind)) > MAX_TAG_LEN:
        # the type is one of the tags (elliptio.query): searched and listed as one
        # (by-tag/<type>/), so bounded as one; a database index also has a largest entry
        # (PostgreSQL's b-tree: ~2.7 kB), which an unbounded type would break
        raise UsageError(f"info.type is {len(str(kind))} characters; it is one of the "
                         f"artifact's tags, at most {MAX_TAG_LEN} characters")
    if max_bytes is None:
        return clean
    size = len(yaml.safe_dump(clean, allow_unicode=True).encode())
    if size > max_bytes:
        raise UsageError(f"info is {size} bytes as YAML; the limit is {max_bytes} "
                         "(ELLIPTIO_MAX_INFO_BYTES): save large data as a file instead")
    return clean


def check_tags(tags: Any) -> list[str]:
    """Tags as stored: stripped, each once, in the order given; a str is one tag."""
    if tags is None:
        return []
    if isinstance(tags, str):
        tags = [tags]
    out: list[str] = []
    for t in tags:
        if not isinstance(t, str) or not t.strip():
            raise UsageError(f"tags must be non-empty strings, got {t!r}")
        t = t.strip()
        if "/" in t or t in (".", "..") or any(ord(c) < 32 for c in t) or len(t) > MAX_TAG_LEN:
            raise UsageError(f"tag {t!r} is not allowed: no '/', control characters, '.' or "
                             f"'..', at most {MAX_TAG_LEN} characters")
        if t not in out:
            out.append(t)
    if len(out) > MAX_TAGS:
        raise UsageError(f"at most {MAX_TAGS} tags")
    return out


def check_ids(values: Any) -> list[str]:
    """Full artifact ids (each once, in the order given) from ids or artifacts; one id or
    one artifact alone is a list of one."""
    out: list[str] = []
    if isinstance(values, (str, Artifact)):
        values = [values]
    for v in values:
        v = v.id if isinstance(v, Artifact) else v
        aid = check_id(v)
        if aid not in out:
            out.append(aid)
    return out
