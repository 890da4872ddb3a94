"""The stdin of ``fly secrets import``: every value reaches Fly byte-identical, or is refused.

flyctl v0.4.87 reads ``NAME=VALUE`` lines from stdin with its own small parser
(internal/command/secrets/parser.go:15-78), which does NO un-escaping. Per line it:

- splits at the first ``=`` and trims the name (parser.go:31-35);
- trims leading spaces of the value (parser.go:36);
- cuts the value at its first ``#`` when an even number of ``"`` precede that ``#``, then trims
  trailing spaces (parser.go:37-40);
- takes ``\"\"\"v\"\"\"`` on one line as ``v`` (parser.go:42-45);
- starts a multi-line value at a leading ``\"\"\"``: the rest of that line, a newline, then every
  following line as is until a line ENDING in ``\"\"\"`` (parser.go:46-51, 62-72);
- strips one pair of outer ``"`` or ``'`` (parser.go:53-59).

Lines come from a ``bufio.Scanner`` with Go's default limits: a line of 64 KiB or more
(65,536 bytes, not counting the newline) stops the scan, and the parser never checks
``scanner.Err()`` (parser.go:17, 22, 77), so that secret and every later one are silently dropped.
``bufio.ScanLines`` also drops a carriage return before each newline.

So each value gets the one form that parser reads back unchanged, chosen by the count of ``"``
before its first ``#`` (that count decides whether the parser cuts):

- one line, an odd count before a ``#``: ``NAME='v'`` (the ``'`` adds no ``"``, the count stays
  odd, nothing is cut, the outer ``'`` are stripped);
- one line otherwise: ``NAME="v"`` (one ``"`` more makes the count odd), or ``NAME=\"\"\"v\"\"\"``
  when ``"v"`` would start with ``\"\"\"`` (``v`` is ``"`` or starts with ``""``) and so open a
  multi-line value;
- several lines: ``NAME=\"\"\"v\"\"\"``, which cannot carry a value whose first line has an odd
  count of ``"`` before a ``#`` (three ``"`` more make it even: cut), a value with a line other
  than the last ending in ``\"\"\"`` (the value would end there), or a ``\\r\\n`` (the scanner
  drops the ``\\r``).

Also refused: a rendered line of 65,536 bytes or more, and a NUL character (no environment
variable of the machine can hold one). :func:`carriage_problem` says which, by the secret's name
only: no message here ever contains a value.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

__all__ = [
    "MAX_LINE_BYTES",
    "UncarriableSecretError",
    "carriage_problem",
    "secret_lines",
    "secrets_stdin",
]

MAX_LINE_BYTES: Final = 65535
"""The longest line flyctl's scanner reads, newline excluded: ``bufio.MaxScanTokenSize`` (65,536
bytes) is the whole buffer, which must also hold the newline. Checked against flyctl's parser
compiled with Go 1.26: a 65,535-byte line is read, a 65,536-byte line ends the scan."""

_TRIPLE: Final = '"""'


class UncarriableSecretError(ValueError):
    """A value `fly secrets import` would change; the message names the secret, never the value."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"secret {name} cannot be sent to fly secrets import: {reason}")
        self.name = name
        self.reason = reason


def _quotes_before_hash(text: str) -> int | None:
    """The number of ``"`` before the first ``#`` of ``text``; ``None`` without a ``#``."""
    cut = text.find("#")
    return None if cut < 0 else text[:cut].count('"')


def _render(name: str, value: str) -> str:
    """The line(s) for one secret, before the checks that may refuse them."""
    if "\n" in value:
        return f"{name}={_TRIPLE}{value}{_TRIPLE}"
    count = _quotes_before_hash(value)
    if count is not None and count % 2 == 1:
        return f"{name}='{value}'"
    quoted = f'"{value}"'
    if quoted.startswith(_TRIPLE):  # ``""x`` or ``"``: the parser would open a """ block
        return f"{name}={_TRIPLE}{value}{_TRIPLE}"
    return f"{name}={quoted}"


def _problem(name: str, value: str) -> tuple[str | None, str]:
    """``(reason or None, rendered text)`` for one secret."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "it is not valid Unicode text (it holds a lone surrogate)", ""
    if "\0" in value:
        return "it contains a NUL character, which no environment variable can hold", ""
    rendered = _render(name, value)
    if "\n" in value:
        lines = value.split("\n")
        if "\r\n" in value:
            return (
                "it contains a carriage return before a line feed (CRLF): flyctl's line scanner "
                "drops it; use LF line endings",
                rendered,
            )
        count = _quotes_before_hash(lines[0])
        if count is not None and count % 2 == 1:
            return (
                'its first line has an odd number of `"` before a `#`: written after `"""`, '
                "flyctl would cut the value at the `#`",
                rendered,
            )
        if any(line.endswith(_TRIPLE) for line in lines[:-1]):
            return (
                'a line other than its last ends with `"""`: flyctl would end the value there',
                rendered,
            )
    longest = max(len(line.encode("utf-8")) for line in rendered.split("\n"))
    if longest > MAX_LINE_BYTES:
        return (
            f"it makes a line of {longest} bytes and flyctl's line scanner silently stops at "
            f"lines over {MAX_LINE_BYTES} bytes (64 KiB with the newline)",
            rendered,
        )
    return None, rendered


def carriage_problem(name: str, value: str) -> str | None:
    """Why ``fly secrets import`` cannot carry ``value`` under ``name`` unchanged, or ``None``.

    The reason never contains the value, so it may go into an error message or a log.
    """
    return _problem(name, value)[0]


def secret_lines(name: str, value: str) -> str:
    """The ``NAME=VALUE`` text (one or more lines, no final newline) that flyctl reads as ``value``.

    Raises :class:`UncarriableSecretError` (naming ``name`` only) when no such text exists.
    """
    reason, rendered = _problem(name, value)
    if reason is not None:
        raise UncarriableSecretError(name, reason)
    return rendered


def secrets_stdin(values: Mapping[str, str]) -> str:
    """The whole stdin of ``fly secrets import`` for ``values`` (name -> value), sorted by name."""
    return "".join(secret_lines(name, values[name]) + "\n" for name in sorted(values))
