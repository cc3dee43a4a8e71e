"""Bounded YAML: the one way ElliptIO parses YAML that someone else may have written.

A team bucket and a shared outbox hold YAML written by anyone (metadata.yaml, sidecars),
so parsing must never expand a bomb. :func:`load_bounded` refuses, before any Python
object is built:

- more than *max_bytes* bytes;
- aliases (``*a``) that would expand the document beyond *max_nodes* nodes (a
  "billion laughs" of 218 bytes expands to millions), or any alias at all when
  *max_aliases* is 0; a self-referencing alias (a recursive structure) always;
- nesting deeper than :data:`MAX_DEPTH`.

The expanded size is computed on the composed node graph (each node's size once,
memoised), so the check is linear in the document's bytes whatever the aliases promise;
a document without an ``&`` has no anchor, hence no alias, and only its collections are
visited, for the depth.
ElliptIO itself never writes aliases (:func:`elliptio.artifact.dump_metadata` turns them
off), so the bounds refuse nothing it saved.
"""

from __future__ import annotations

from typing import Any

import yaml

from .errors import IntegrityError

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
MAX_DEPTH = 64
#: aliases a document may hold; metadata ElliptIO writes has none
MAX_ALIASES = 100


class YAMLBoundError(IntegrityError):
    """A YAML document that is too large, too deep, or expands beyond its bound."""


def _expanded_size(root: yaml.Node, max_nodes: int, max_aliases: int, where: str) -> int:
    """Nodes the document holds once every alias is expanded; raise past the bounds.

    Iterative (no recursion limit to hit), memoised by node identity: an alias is the
    same node object as its anchor in PyYAML's composed graph."""
    sizes: dict[int, int] = {}
    seen_twice = 0
    on_path: set[int] = set()
    # (node, depth, children-visited?) on an explicit stack
    stack: list[tuple[yaml.Node, int, bool]] = [(root, 0, False)]
    while stack:
        node, depth, done = stack.pop()
        key = id(node)
        if done:
            on_path.discard(key)
            if isinstance(node, yaml.MappingNode):
                total = 1 + sum(sizes[id(k)] + sizes[id(v)] for k, v in node.value)
            elif isinstance(node, yaml.SequenceNode):
                total = 1 + sum(sizes[id(v)] for v in node.value)
            else:
                total = 1
            if total > max_nodes:
                raise YAMLBoundError(f"{where}: expands to more than {max_nodes} YAML nodes "
                                     "(aliases that multiply: refused unparsed)")
            sizes[key] = total
            continue
        if key in on_path:
            raise YAMLBoundError(f"{where}: holds a self-referencing YAML alias")
        if key in sizes:
            seen_twice += 1
            if seen_twice > max_aliases:
                raise YAMLBoundError(f"{where}: holds more than {max_aliases} YAML aliases")
            continue
        if depth > MAX_DEPTH:
            raise YAMLBoundError(f"{where}: nested deeper than {MAX_DEPTH} levels")
        if isinstance(node, (yaml.MappingNode, yaml.SequenceNode)):
            on_path.add(key)
            stack.append((node, depth, True))
            children = ([c for kv in node.value for c in kv]
                        if isinstance(node, yaml.MappingNode) else list(node.value))
            for child in reversed(children):
                stack.append((child, depth + 1, False))
        else:
            sizes[key] = 1
    return sizes[id(root)]


def _check_depth(root: yaml.Node, where: str) -> None:
    """Nesting at most :data:`MAX_DEPTH` deep, for a document without aliases (only its
    collections are visited: the cheap check)."""
    stack: list[tuple[yaml.Node, int]] = [(root, 0)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise YAMLBoundError(f"{where}: nested deeper than {MAX_DEPTH} levels")
        if isinstance(node, yaml.MappingNode):
            stack.extend((c, depth + 1) for kv in node.value for c in kv
                         if not isinstance(c, yaml.ScalarNode))
        elif isinstance(node, yaml.SequenceNode):
            stack.extend((c, depth + 1) for c in node.value
                         if not isinstance(c, yaml.ScalarNode))


def load_bounded(data: bytes | str, where: str, *, max_bytes: int,
                 max_nodes: int | None = None, max_aliases: int = MAX_ALIASES) -> Any:
    """Parse one YAML document of safe types within the bounds (module docstring).

    *max_nodes* defaults to the document's own length in bytes: a document without
    aliases has fewer nodes than bytes, so aliases may never make it bigger than an honest
    document of its size. ``YAMLBoundError`` past a bound, ``IntegrityError`` for YAML that does not
    parse; never an exception of the parser's own."""
    raw = data.encode() if isinstance(data, str) else bytes(data)
    if len(raw) > max_bytes:
        raise YAMLBoundError(f"{where}: {len(raw)} bytes; at most {max_bytes} are read")
    loader = _Loader(raw)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        if b"&" in raw:
            _expanded_size(node, max_nodes if max_nodes is not None else max(len(raw), 1000),
                           max_aliases, where)
        else:  # without an anchor there is no alias: nothing can expand
            _check_depth(node, where)
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        raise IntegrityError(f"{where}: not valid YAML ({exc})") from None
    except (RecursionError, MemoryError, ValueError, TypeError, OverflowError) as exc:
        raise IntegrityError(f"{where}: cannot be read as YAML ({type(exc).__name__})") \
            from None
    finally:
        loader.dispose()
