"""What an outbox entry is saved as: its files (:func:`plan`), the metadata its sidecars
and ``user.eio.*`` xattrs give (later ones winning: the sidecar beside the entry, then
``.eio.yaml`` at the top of a staged directory, then the xattrs), and the provenance of
the program that wrote it (:func:`writer_provenance`).

Only what the entry's owner wrote counts: the sidecars :meth:`.Namespace.sidecars` gives
(created and written by the owner's uid alone) and the xattrs the owner set; the rest is
named by :func:`ignored` for the log and otherwise left alone. A sidecar is read up to
:data:`MAX_SIDECAR` bytes (:func:`sidecar_sources`, on the trio thread) and parsed by
:func:`elliptio.yamlsafe.load_bounded` (:func:`parse_sidecars`, in a worker thread: no
alias bomb is expanded, and the daemon keeps serving while a sidecar is parsed).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from elliptio.errors import IntegrityError, UsageError
from elliptio.ids import check_id
from elliptio.inputs import Entry as SaveEntry
from elliptio.validate import check_tags
from elliptio.yamlsafe import load_bounded

from ..procinfo import split_command
from .namespace import DIR_SIDECAR, Item, Namespace

#: largest sidecar read (bytes; docs/mount.md): a few keys need far less, and parsing
#: 64 KiB of YAML takes a worker thread ~0.2 s at most
MAX_SIDECAR = 64 << 10
#: writer command lines remembered per entry (provenance)
MAX_WRITERS = 20


def sidecar_metadata(data: bytes, where: str) -> dict[str, Any]:
    """The metadata a sidecar YAML gives: ``tags``, ``based_on``, ``info`` (a mapping) and
    any other key as an ``info`` key (``type: model``). UsageError naming the sidecar for
    anything else: not UTF-8, not YAML, beyond the bounds of
    :func:`~elliptio.yamlsafe.load_bounded` (bytes, aliases, depth)."""
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        raise UsageError(f"sidecar {where}: not valid YAML (not UTF-8 text)") from None
    try:
        doc = load_bounded(data, f"sidecar {where}", max_bytes=MAX_SIDECAR)
    except IntegrityError as exc:  # the message names the sidecar and the bound
        raise UsageError(str(exc)) from None
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


def sidecar_sources(top: Item, ns: Namespace, data_path: Callable[[Item], Path]
                    ) -> list[tuple[str, bytes]]:
    """(where, staged bytes) of the sidecars of *top* that count (its owner's); UsageError
    for one larger than :data:`MAX_SIDECAR`, which is not read."""
    out = []
    for where, side in ns.sidecars(top):
        if side.size > MAX_SIDECAR:
            raise UsageError(f"sidecar {where}: {side.size} bytes; at most {MAX_SIDECAR} "
                             "are read")
        with open(data_path(side), "rb") as f:
            out.append((where, f.read(MAX_SIDECAR + 1)))
    return out


def parse_sidecars(sources: list[tuple[str, bytes]]) -> list[dict[str, Any]]:
    """The metadata of each of :func:`sidecar_sources` (pure: run in a worker thread)."""
    return [sidecar_metadata(data, where) for where, data in sources]


def ignored(top: Item, ns: Namespace) -> list[str]:
    """What another user wrote for *top*, which does not count: its sidecars and
    ``user.eio.*`` xattrs, each with whose it is (for the daemon's log)."""
    def whose(item: Item) -> str:
        uids = [item.uid, *(u for u in item.writer_uids if u != item.uid)]
        return ", ".join(ns.owner_name(u) for u in uids if u != top.uid)

    out = [f"sidecar {where} ({whose(side)})"
           for where, side in ns.sidecars(top, owners=False)]
    out += [f"{name} (set by {ns.owner_name(uid)})"
            for name, uid in sorted(top.xattr_uids.items())
            if uid != top.uid and name.startswith("user.eio.") and name in top.xattrs]
    return out


def plan(top: Item, ns: Namespace, data_path: Callable[[Item], Path],
         sidecars: list[dict[str, Any]]) -> tuple[list[SaveEntry], dict[str, Any]]:
    """What to save of *top* and with which metadata (``info``, ``tags``, ``based_on``:
    None when nothing names it), given its sidecars' (:func:`parse_sidecars`) and the
    xattrs its owner set; UsageError when it cannot be saved."""
    meta: dict[str, Any] = {"info": {}, "tags": None, "based_on": None}
    for doc in sidecars:
        merge_metadata(meta, doc)
    merge_metadata(meta, xattr_metadata(top.xattrs_set_by(top.uid)))
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
