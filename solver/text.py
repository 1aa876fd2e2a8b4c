"""Short, one-line renderings of user input for error messages (no heavy imports).

Error messages echo what the user gave; a hostile input can be megabytes long or hold newlines
and control characters. `short` renders a value abbreviated, `one_line` makes any message a single
printable line of bounded length.
"""

from __future__ import annotations

__all__ = ["short", "one_line", "show_key"]

#: longest message line (characters) an error may print
MAX_LINE = 400


def _escape(s: str) -> str:
    """Non-printable characters (newlines, controls, lone surrogates) as Python escapes."""
    if s.isprintable():
        return s
    out = []
    for c in s:
        out.append(c if c.isprintable() else c.encode("unicode_escape", "backslashreplace").decode("ascii"))
    return "".join(out)


def _cut(s: str, limit: int) -> str:
    if len(s) <= limit:
        return s
    keep = max(limit - 30, 10)
    return f"{s[:keep]}... ({len(s)} characters)"


def short(value, limit: int = 60) -> str:
    """repr(value), on one line, abbreviated to about `limit` characters."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 200:
        digits = int(value.bit_length() * 0.30103) + 1
        return f"<an integer of about {digits} digits>"
    try:
        r = repr(value)
    except (ValueError, RecursionError):  # int-to-str limit, deep nesting
        r = f"<{type(value).__name__}>"
    return _cut(_escape(r), limit)


def show_key(key) -> str:
    """A config key for a message: as is when short and printable, else quoted and abbreviated."""
    k = str(key)
    if k and len(k) <= 40 and k.isprintable() and not any(c.isspace() for c in k):
        return k
    return short(k, 40)


def one_line(msg: str, limit: int = MAX_LINE) -> str:
    """`msg` as one printable line of at most about `limit` characters."""
    return _cut(_escape(str(msg)), limit)
