"""The text form of a query: its items, how a value is written into one, and a search
form's fields as one query (:func:`fields_text`)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime
from typing import Any

import yaml

from ..errors import QueryError


def fields_text(query: str = "", *, user: str | None = None, since: str | None = None,
                until: str | None = None, files: Iterable[str] = (),
                tags: Iterable[str] = (), type: str | None = None,
                info: Iterable[tuple[str, str]] = (), text: str | None = None,
                based_on: str | None = None, transitive: bool = False) -> str:
    """Fields of a search form as one query in the text form: *query* (text the user typed
    in that form) first, then one item per given field, in this order. A later scalar item
    wins over one in *query*, so a field overrides the same key typed there; ``file`` and
    ``tag`` globs add up. Values are written by :func:`text_item`, except ``info``: its
    ``(key, value)`` pairs carry the value as typed in the text form (``"10"`` is the
    string, ``10`` the number), wrapped in double quotes only when it holds a ``,`` and is
    not wrapped already. :class:`QueryError` for a value the text form cannot hold."""
    items = [query] if query else []
    for key, value in (("user", user), ("since", since), ("until", until)):
        if value:
            items.append(text_item(key, value))
    items += [text_item("file", f) for f in files]
    items += [text_item("tag", t) for t in tags]
    if type:
        items.append(text_item("type", type))
    for key, value in info:
        if "," in value and not (value.startswith('"') and value.endswith('"')):
            value = f'"{value}"'
        items.append(f"info.{key}={value.strip()}")
    for key, value in (("text", text), ("based_on", based_on)):
        if value:
            items.append(text_item(key, value))
    if transitive:
        items.append("transitive=true")
    return ",".join(items)


def text_item(key: str, value: str, *, quote: bool = False) -> str:
    """One ``key=value`` item of the text form, the value double-quoted where it has to be
    (or always, with *quote*): when it holds a comma, starts or ends with a space, or is
    itself wrapped in double quotes. The text form has no escapes, so a value with a double
    quote and a comma, or with an odd number of double quotes, cannot be written:
    :class:`QueryError`. :meth:`Query.to_text` and :func:`fields_text` write with it."""
    if '"' in value and ("," in value or value.count('"') % 2):
        raise QueryError(f"{key}: a value cannot hold a '\"' together with a ',' or an odd "
                         f"number of '\"', got {value!r}")
    if quote or "," in value or value != value.strip() or (
            len(value) >= 2 and value[0] == value[-1] == '"'):
        return f'{key}="{value}"'
    return f"{key}={value}"


def split_items(text: str) -> list[str]:
    """The ``key=value`` items of *text*: split at commas outside double quotes."""
    if not isinstance(text, str):
        raise QueryError("query must be a string")
    items: list[str] = []
    buf: list[str] = []
    in_q = False
    for ch in text:
        if ch == '"':
            in_q = not in_q
        if ch == "," and not in_q:
            items.append("".join(buf))
            buf = []
        else:
            buf.append(ch)
    if in_q:
        raise QueryError(f"unclosed quote in query {text!r}")
    items.append("".join(buf))
    return [i.strip() for i in items if i.strip()]


def yaml_scalar(value: str) -> Any:
    """An unquoted ``info`` value read as a YAML scalar (``10`` an int, ``true`` a bool);
    anything YAML reads as a collection or a date stays the string it is."""
    try:
        v = yaml.safe_load(value) if value else ""
    except yaml.YAMLError:
        return value
    if isinstance(v, (dict, list)) or isinstance(v, (date, datetime)):
        return value
    return v


def read_bool(value: str) -> bool:
    """``transitive``'s value: empty or 1/true/yes/on, or 0/false/no/off."""
    v = value.strip().lower()
    if v in ("1", "true", "yes", "on", ""):
        return True
    if v in ("0", "false", "no", "off"):
        return False
    raise QueryError(f"expected true or false, got {value!r}")
