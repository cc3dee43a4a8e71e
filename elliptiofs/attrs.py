"""What ``stat`` shows of a node, as plain values (:class:`~elliptiofs.outbox.Attrs`):
the tree's nodes from their kind, size and owner; the outbox's from the outbox; and what
``statfs`` shows of the mount. :mod:`elliptiofs.ops` copies them into pyfuse3's objects."""

from __future__ import annotations

from .nodes import Kind, Node, owner_of
from .outbox import Attrs
from .seam import OutboxOps

#: st_blksize: tools size their reads by it (cp, cat use max(128 KiB, st_blksize))
BLKSIZE = 1 << 20


def attrs_of(node: Node, outbox: OutboxOps | None) -> Attrs:
    """The attributes of *node*: the outbox's for its nodes (unless it has forgotten
    one the kernel still holds), else the tree's."""
    if outbox is not None and node.in_outbox:
        a = outbox.attrs(node)
        if a is not None:  # None: forgotten by the outbox, not yet by the kernel
            return a
    if node.kind is Kind.AFILE:
        nlink, size = 1, max(0, node.size)
    elif node.kind is Kind.LINK:
        nlink, size = 1, len(node.link_target())
    else:
        nlink, size = 2, 0
    uid, gid = owner_of(node.user)
    timeout = node.entry_timeout()
    return Attrs(mode=node.mode(), size=size, nlink=nlink, uid=uid, gid=gid,
                 mtime_ns=node.mtime_ns, entry_timeout=timeout, attr_timeout=timeout)


def space_of(outbox: OutboxOps | None) -> tuple[int, int, int, int]:
    """``statfs``'s blocks, free blocks, available blocks (in :data:`BLKSIZE` blocks) and
    available inodes: the spool's (what the outbox can take), or none without an outbox."""
    if outbox is None:
        return 0, 0, 0, 0
    space = outbox.statfs()
    scale = space.block_size / BLKSIZE
    return (int(space.blocks * scale), int(space.free * scale),
            int(space.available * scale), space.files_available)
