"""Tests for infra.deploy.targets.fly_secrets: what `fly secrets import` stores is what we meant.

The oracle is ``flyctl_parse`` (tests/infra/fake_flyctl.py, the fake flyctl's own ``secrets
import``): a reading of flyctl v0.4.87's import parser written for the tests from
../shared/FLY.md and internal/command/secrets/parser.go (and Go's ``bufio.ScanLines``), on bytes
like Go; it shares no code with the renderer. (flyctl's own parser is not vendored here: the
project commits no fetched code.)

Every value must come back byte-identical, or be refused with an error naming the secret and
never showing the value.
"""

from __future__ import annotations

import string

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from infra.deploy.targets.fly_secrets import (
    MAX_LINE_BYTES,
    UncarriableSecretError,
    carriage_problem,
    secret_lines,
    secrets_stdin,
)
from tests.infra.fake_flyctl import FlyctlParseError, flyctl_parse


def _round_trips(values: dict[str, str]) -> bool:
    stored = flyctl_parse(secrets_stdin(values).encode())
    return stored == {k.encode(): v.encode() for k, v in values.items()}


PEM = (
    "-----BEGIN PRIVATE KEY-----\n"
    "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7VJTUt9Us8cKj\n"
    "MzEfYyjiWA4R4/M2bS1GB4t7NXp98C3SC6dVMvDuictGeurT8jNbvJZHtCSuYEvu\n"
    "-----END PRIVATE KEY-----\n"
)

CARRIED = {
    "empty": "",
    "plain": "sk-3f1c9a0123456789abcdef0123456789",
    "unicode": "clé-秘密-🔑-ü",
    "backslash": "a\\b\\\\c\\",
    "one quote": 'p"q',
    "quote before hash": 'a"b#c',
    "two quotes before hash": 'a"b"c#d',
    "hash first": "#not-a-comment",
    "hash after space": "pass #word",
    "leading and trailing spaces": "  padded value  ",
    "spaces around a hash": 'x" # y ',
    "double-quoted": '"quoted"',
    "single-quoted": "'quoted'",
    "starts with two quotes": '""x',
    "starts with two quotes, hash": '""x#y',
    "starts with three quotes": '"""x',
    "three quotes on both ends": '"""x"""',
    "only quotes": '"""',
    "a lone quote": '"',
    "a lone apostrophe": "'",
    "equals signs": "a=b==c",
    "lone carriage return": "a\rb",
    "trailing carriage return": "ab\r",
    "redis url with # and @": "redis://default:p@ss#w0rd@redis.internal:6379/0",
    "redis url with quote and #": 'rediss://u:p"w#x@host:6380',
    "pem": PEM,
    "pem without final newline": PEM.rstrip("\n"),
    "multi-line with hash and quotes": 'line one "quoted" # x\nline "two\n#three',
    "multi-line ending in quotes": 'a\nb"""',
    "multi-line, empty lines": "\n\nmiddle\n\n",
    "70 KB over short lines": "\n".join("k" * 63 for _ in range(1100)),
    "longest line flyctl reads": "x" * (MAX_LINE_BYTES - len('S=""')),
}

REFUSED = {
    "70 KB on one line": ("x" * 70_000, "over 65535 bytes"),
    "one byte over the line limit": (
        "x" * (MAX_LINE_BYTES - len('REDIS_URL=""') + 1),
        "a line of 65536 bytes",
    ),
    "crlf pem": (PEM.replace("\n", "\r\n"), "CRLF"),
    "odd quotes before hash on a first line": ('a"b#c\nd', "odd number"),
    "a middle line ends in triple quotes": ('a"""\nb', 'ends with `"""`'),
    "NUL": ("a\0b", "NUL"),
}


@pytest.mark.parametrize("value", CARRIED.values(), ids=CARRIED.keys())
def test_tricky_values_reach_flyctl_byte_identical(value: str) -> None:
    """Each value, written as secrets_stdin writes it, is what flyctl's parser stores."""
    assert carriage_problem("S", value) is None
    assert _round_trips({"S": value})


@pytest.mark.parametrize(("value", "reason"), REFUSED.values(), ids=REFUSED.keys())
def test_values_flyctl_would_change_are_refused_by_name_only(value: str, reason: str) -> None:
    """A value flyctl's parser would change is refused; the error names it, never shows it."""
    with pytest.raises(UncarriableSecretError) as info:
        secrets_stdin({"OK": "fine", "REDIS_URL": value})
    message = str(info.value)
    assert "REDIS_URL" in message
    assert reason in message
    assert value not in message
    assert "fine" not in message


def test_the_old_escaping_corrupted_values() -> None:
    """Backslash escapes are not undone by flyctl: the old stdin stored a\\\\b for a\\b."""
    assert flyctl_parse(b'K="a\\\\b"\n') == {b"K": b"a\\\\b"}
    assert flyctl_parse(b'K="a\\"b#c"\n') == {b"K": b'"a\\"b'}
    assert secret_lines("K", "a\\b") == 'K="a\\b"'


def test_forms_are_chosen_by_the_quotes_before_the_first_hash() -> None:
    """ "v" by default, 'v' when an odd count of " precedes a #, \"\"\"v\"\"\" for a leading ""."""
    assert secret_lines("K", "plain # x") == 'K="plain # x"'
    assert secret_lines("K", 'a"b#c') == "K='a\"b#c'"
    assert secret_lines("K", '""x') == 'K="""""x"""'
    assert secret_lines("K", "a\nb") == 'K="""a\nb"""'


def test_many_secrets_share_one_stdin_without_touching_each_other() -> None:
    """All tricky values in one stdin (multi-line ones between others) come back unchanged."""
    values = dict(zip(string.ascii_letters, CARRIED.values(), strict=False))
    assert _round_trips(values)
    assert secrets_stdin({"B": "2", "A": "1"}) == 'A="1"\nB="2"\n'


def test_a_long_line_would_silently_drop_every_later_secret() -> None:
    """Why the line limit is refused: flyctl's scanner stops and stores nothing after it."""
    stdin = f'A="1"\nB="{"x" * 70_000}"\nC="3"\n'.encode()
    assert flyctl_parse(stdin) == {b"A": b"1"}


_TRICKY_TEXT = st.text(
    alphabet=st.one_of(
        st.sampled_from(['"', "'", "#", " ", "\n", "\r", "\\", "=", "a", "é", "秘"]),
        st.characters(codec="utf-8", exclude_characters="\0"),
    ),
    max_size=40,
)


def _forms(value: str) -> list[str]:
    """Every way to write a value on the line that flyctl's parser knows."""
    return [f'S="""{value}"""', f'S="{value}"', f"S='{value}'", f"S={value}", f"S= {value}"]


@settings(max_examples=600, suppress_health_check=[HealthCheck.too_slow])
@given(value=_TRICKY_TEXT)
@example(value='a"b#c\nd')
@example(value='x"""\ny')
def test_any_value_round_trips_or_no_form_could_carry_it(value: str) -> None:
    """Arbitrary text round-trips; a refused value is one no form of the line would carry."""
    if carriage_problem("S", value) is None:
        assert _round_trips({"S": value})
        return
    expected = {b"S": value.encode()}
    for form in _forms(value):
        try:
            stored = flyctl_parse((form + "\n").encode())
        except FlyctlParseError:
            continue
        assert stored != expected, f"refused a value that {form!r} would carry"


@settings(max_examples=300)
@given(values=st.dictionaries(st.from_regex(r"[A-Z][A-Z0-9_]{0,8}", fullmatch=True), _TRICKY_TEXT))
def test_any_set_of_carriable_values_round_trips_together(values: dict[str, str]) -> None:
    """A whole stdin of carriable values is stored exactly, whatever the neighbours hold."""
    carriable = {k: v for k, v in values.items() if carriage_problem(k, v) is None}
    assert _round_trips(carriable)
