"""Text that can be stored and sent: no lone surrogates, no NUL characters (SPEC 5).

JSON may spell a lone UTF-16 surrogate (``"\\ud800"``), and Python's parser turns it into a
string that no UTF-8 can carry: stored, it fails the database's encoder; sent back, the JSON
encoder. JSON may also spell a NUL (``"\\u0000"``), which PostgreSQL's text cannot hold (and
which ends a C string wherever one is passed on). So every string a request or a file brings in
is checked where it comes in, and the error names where it was.
"""

from __future__ import annotations

from typing import Any

__all__ = ["bad_text", "is_text", "NOT_TEXT"]

NOT_TEXT = ("is not text that can be stored (it holds a NUL character, \\u0000, or a lone "
            "surrogate, such as \\ud800)")


def is_text(value: str) -> bool:
    """Whether a string can be written as UTF-8 and stored as text (no NUL)."""
    if "\x00" in value:
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def bad_text(value: Any, path: str = "") -> str | None:
    """Where in a parsed JSON value the first string or object key is not text (a dotted path:
    ``offer.title``, ``features.3.properties.name``; ``path`` itself for a bad string at the
    top, ``"(a key)"`` appended for a key); None when everything is."""
    stack: list[tuple[Any, str]] = [(value, path)]
    while stack:
        item, where = stack.pop()
        if isinstance(item, str):
            if not is_text(item):
                return where or "(the value)"
        elif isinstance(item, dict):
            for key, sub in reversed(list(item.items())):
                inner = f"{where}.{key}" if where else str(key)
                if isinstance(key, str) and not is_text(key):
                    return f"{where + '.' if where else ''}(a key)"
                stack.append((sub, inner))
        elif isinstance(item, list):
            stack.extend((sub, f"{where}.{k}" if where else str(k))
                         for k, sub in reversed(list(enumerate(item))))
    return None
