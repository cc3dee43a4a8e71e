"""What an outbox entry is saved as: its files (:func:`plan`), the metadata its sidecars
and ``user.eio.*`` xattrs give (later ones winning: the sidecar beside the entry, then
``.eio.yaml`` at the top of a staged directory, then the xattrs), and the provenance of
the program that wrote it (:func:`writer_provenance`).

The parsers are pure; :func:`plan` reads the sidecars' staged bytes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import yaml

from elliptio.errors import UsageError
from elliptio.ids import check_id
from elliptio.inputs import Entry as SaveEntry
from elliptio.validate import check_tags

from ..procinfo import split_command
from .namespace import DIR_SIDECAR, Item, Namespace

#: largest sidecar read (bytes)
MAX_SIDECAR = 1 << 20
#: writer command lines remembered per entry (provenance)
MAX_WRITERS = 20


def sidecar_metadata(data: bytes, where: str) -> dict[str, Any]:
    """The metadata a sidecar YAML gives: ``tags``, ``based_on``, ``info`` (a mapping) and
    any other key as an ``info`` key (``type: model``)."""
    try:
        doc = yaml.safe_load(data.decode("utf-8"))
    except (UnicodeDecodeError, yaml.YAMLError) as exc:
        raise UsageError(f"sidecar {where} is not valid YAML: {exc}") from None
    if doc is None:
        return {}
    if not isinstance(doc, Mapping):
        raise UsageError(f"sidecar {where} must be a mapping (key: value lines), "
                         f"not a {type(doc).__name__}")
    out: dict[str, Any] = {"info": {}}
    for key, value in doc.items():
        if key == "tags":
            out["tags"] = check_tags(value)
        elif key == "based_on":
            out["based_on"] = _based_on(value, where)
        elif key == "info":
            if not isinstance(value, Mapping):
                raise UsageError(f"sidecar {where}: info must be a mapping")
            out["info"].update(value)
        else:
            out["info"][str(key)] = value
    return out


def _based_on(value: Any, where: str) -> list[str]:
    if value is None or value == "" or value == "none":
        return []
    if isinstance(value, str):
        value = [v for v in value.replace(",", " ").split()]
    if not isinstance(value, (list, tuple)):
        raise UsageError(f"{where}: based_on must be a list of artifact ids")
    out: list[str] = []
    for v in value:
        aid = check_id(str(v))
        if aid not in out:
            out.append(aid)
    return out


def xattr_metadata(xattrs: Mapping[str, bytes]) -> dict[str, Any]:
    """The metadata ``user.eio.*`` attributes give: ``user.eio.tags`` (comma-separated),
    ``user.eio.based_on`` (ids, comma- or space-separated; empty: none), and any other
    ``user.eio.<key>`` as ``info[<key>]`` (a string)."""
    out: dict[str, Any] = {"info": {}}
    for name, raw in xattrs.items():
        if not name.startswith("user.eio."):
            continue
        key = name[len("user.eio."):]
        try:
            value = bytes(raw).decode("utf-8")
        except UnicodeDecodeError:
            raise UsageError(f"{name} is not UTF-8 text") from None
        if key == "tags":
            out["tags"] = check_tags([t for t in value.split(",") if t.strip()])
        elif key == "based_on":
            out["based_on"] = _based_on(value, name)
        elif not key or "." in key or key in ("commit", "state", "error", "owner", "id"):
            raise UsageError(f"{name}: use user.eio.<key> with a key without '.'")
        else:
            out["info"][key] = value
    return out


def merge_metadata(into: dict[str, Any], more: Mapping[str, Any]) -> None:
    """Later sources win: sidecar beside, sidecar inside, then xattrs."""
    into["info"].update(more.get("info") or {})
    for key in ("tags", "based_on"):
        if more.get(key) is not None:
            into[key] = more[key]


def plan(top: Item, ns: Namespace, data_path: Callable[[Item], Path]
         ) -> tuple[list[SaveEntry], dict[str, Any]]:
    """What to save of *top* and with which metadata (``info``, ``tags``, ``based_on``:
    None when nothing names it); UsageError when it cannot be saved."""
    meta: dict[str, Any] = {"info": {}, "tags": None, "based_on": None}
    for where, side in ns.sidecars(top):
        if side.size > MAX_SIDECAR:
            raise UsageError(f"sidecar {where} is larger than {MAX_SIDECAR} bytes")
        merge_metadata(meta, sidecar_metadata(data_path(side).read_bytes(), where))
    merge_metadata(meta, xattr_metadata(top.xattrs))
    if top.kind == "file":
        entries = [SaveEntry(top.name, str(data_path(top)), top.size)]
    else:
        entries = [SaveEntry(f"{top.name}/{rel}", str(data_path(i)), i.size)
                   for rel, i in top.walk() if i.kind == "file" and rel != DIR_SIDECAR]
        if not entries:
            raise UsageError(f"{top.name} holds no files")
        # the empty directories are part of the tree that was copied in (git's
        # .git/refs/tags, a tar's placeholders): saved as names in the metadata
        entries += [SaveEntry(f"{top.name}/{rel}", f"outbox/{top.name}/{rel}", 0,
                              directory=True)
                    for rel, i in top.walk() if i.kind == "dir" and not i.children]
    meta["tags"] = check_tags(meta["tags"])
    return entries, meta


def writer_provenance(top: Item, user: str, explicit_lineage: bool
                      ) -> tuple[dict[str, Any], dict[str, Any]]:
    """(extra provenance, writer) of *top*, saved for *user*: ``provenance.outbox`` and
    the program that wrote the entry (the first writer)."""
    writers: list[str] = []
    for item in top.with_below():
        writers += [w for w in item.writers if w not in writers]
    provenance = {"outbox": {"entry": top.name, "uid": top.uid, "owner": user,
                             "writers": writers[:MAX_WRITERS],
                             "lineage": "explicit" if explicit_lineage else "readlog"}}
    # the provenance describes the program that wrote the entry (the first one), not the
    # daemon, which is named under "via". Of the writer only the command line is known:
    # the daemon does not run git in another user's directory (a repository's
    # configuration can run commands, and the daemon is often root)
    writer = {"argv": split_command(writers[0]) if writers else [],
              "uid": top.uid, "login": user, "via": "elliptiofs outbox"}
    return provenance, writer
