"""The inode table: numbers for the nodes the kernel holds, with their lookup counts."""

from __future__ import annotations

from collections.abc import Iterator

from elliptio.errors import NotFound

from .nodes import ROOT_INODE, Node


class Inodes:
    """Inode numbers for the nodes the kernel holds, with their lookup counts.

    Every entry reply (lookup, each READDIRPLUS entry, create) takes one reference; the
    kernel returns them with ``forget``, and a node whose count reaches zero is dropped:
    the table's size follows the kernel's cache, not the lake. Numbers are never reused.
    """

    def __init__(self, root: Node) -> None:
        self._by_path: dict[tuple[str, ...], int] = {(): ROOT_INODE}
        self._nodes: dict[int, Node] = {ROOT_INODE: root}
        self._refs: dict[int, int] = {ROOT_INODE: 1}
        self._next = ROOT_INODE + 1

    def __len__(self) -> int:
        return len(self._nodes)

    def __iter__(self) -> Iterator[int]:
        return iter(self._nodes)

    def get(self, ino: int) -> Node:
        """The node of *ino*; ``NotFound`` if the kernel forgot it (a stale handle)."""
        try:
            return self._nodes[ino]
        except KeyError:
            raise NotFound(f"inode {ino} is not known (forgotten)") from None

    def ino_of(self, path: tuple[str, ...]) -> int | None:
        return self._by_path.get(path)

    def ref(self, node: Node) -> int:
        """Take one kernel reference on *node* (allocating its inode); return the inode.

        If the path already has an inode, the known node is kept (so a size learned once,
        like metadata.yaml's, stays)."""
        ino = self._by_path.get(node.path)
        if ino is None:
            ino = self._next
            self._next += 1
            self._by_path[node.path] = ino
            self._nodes[ino] = node
            self._refs[ino] = 1
        else:
            self._refs[ino] += 1
        return ino

    def node_for(self, node: Node) -> Node:
        """The node already in the table for *node*'s path, else *node* itself."""
        ino = self._by_path.get(node.path)
        return self._nodes[ino] if ino is not None else node

    def forget(self, ino: int, count: int) -> None:
        if ino == ROOT_INODE or ino not in self._refs:
            return
        left = self._refs[ino] - count
        if left > 0:
            self._refs[ino] = left
            return
        node = self._nodes.pop(ino)
        del self._refs[ino]
        del self._by_path[node.path]
