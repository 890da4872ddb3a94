"""``lint --fix``: rewrite every finding that has one safe fix, keeping the rest of the file.

The file is edited in place with tomlkit, so comments, key order, indentation and keys the model
does not know stay as they were. Three kinds of fix, each one the only reading flyctl v0.4.87
itself would make of the file:

- **Legacy forms flyctl converts while loading** (internal/appconfig/patches.go) are written in
  their current spelling: ports written as strings (castToInt, patches.go:578-608), the
  ``concurrency = "soft,hard"`` string (type "requests", patches.go:388-413), non-string ``[env]``
  values (castToString, patches.go:610-616), a bare number as ``[[vm]] memory`` (megabytes,
  patches.go:243-244), a boolean ``auto_stop_machines`` ("stop"/"off"), the list form of check
  ``headers`` (patches.go:507-540) and of ``[processes]`` (patches.go:118-156). Beside them, the
  obsolete ``edge_http`` handler becomes ``http`` (FLY.md: obsolete; lint refuses it).
- **Bare-number durations** become the string flyctl would have made of them, in the unit it
  reads for that key (``_castDuration`` writes Go's ``Duration.String()``, patches.go:547-576):
  seconds for ``kill_timeout`` (patches.go:60-61), milliseconds in ``[[services]]`` checks and
  top-level ``[checks]`` (patches.go:484-489), nanoseconds everywhere else
  (``[[http_service.checks]]``, ``[deploy] wait_timeout``: fly-go reads a JSON number as
  nanoseconds). The meaning is kept, and a result under one second is flagged: a 15-nanosecond
  interval was almost certainly meant as 15 seconds, and only its author can say.
- **The PU02 shape** on the service ``[env] WS_PORT`` marks as the WebSocket: ``protocol =
  "tcp"``, the ``http`` handler dropped (``tls`` kept or added, ``force_https`` dropped with it),
  ALPN pinned to ``http/1.1``, ``connections`` concurrency (1000/1500 when the file sets no
  limits) and a TCP check when the service has none: the shape ``WebSocketService`` renders.

What has no single safe fix is left untouched and listed by :func:`fix_fly_toml`'s caller from
``FixResult.remaining``: ``pu02-prone`` on a file that does not say which port carries the
WebSocket, a WebSocket on ``[http_service]``'s own port (moving it would change the HTTP API),
unknown keys, out-of-range values.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Final

import tomlkit
from tomlkit.items import InlineTable, Table

from infra.errors import ConfigError
from infra.flytoml.findings import Finding
from infra.flytoml.lint import lint_fly_toml
from infra.flytoml.model import WebSocketService
from infra.flytoml.toml_edit import (
    Change,
    Editor,
    Tab,
    go_duration,
    header_indent,
    indent_of,
    is_number,
    plain,
)

__all__ = ["Change", "FixResult", "fix_fly_toml", "go_duration", "unified_diff"]

_CHECK_TIMES: Final = ("interval", "timeout", "grace_period")
_WS: Final = WebSocketService()
_WS_TCP_CHECK: Final = _WS.tcp_checks[0]
_WS_CONCURRENCY: Final = _WS.concurrency


@dataclass(frozen=True, slots=True, kw_only=True)
class FixResult:
    """The fixed text, the edits made, and the findings still present (no safe fix)."""

    original: str
    text: str
    changes: tuple[Change, ...]
    remaining: tuple[Finding, ...] = field(default=())

    @property
    def changed(self) -> bool:
        return self.text != self.original


class _Fixer(Editor):
    """Every safe fix, walked over the document in file order."""

    def run(self) -> None:
        doc = self.document
        self.root_durations()
        self.env()
        self.processes()
        http = doc.get("http_service")
        if isinstance(http, Table | InlineTable):
            self.ports(http, ("internal_port",), "http_service")
            self.auto_stop(http, "http_service")
            self.concurrency_string(http, "http_service")
            for index, check in self.tables(http, "checks"):
                self.check(check, f"http_service.checks[{index}]", unit="ns")
        for index, service in self.tables(doc, "services"):
            prefix = f"services[{index}]"
            self.ports(service, ("internal_port",), prefix)
            self.auto_stop(service, prefix)
            self.concurrency_string(service, prefix)
            for position, port in self.tables(service, "ports"):
                port_key = f"{prefix}.ports[{position}]"
                self.ports(port, ("port", "start_port", "end_port"), port_key)
                self.edge_http(port, port_key)
            for kind in ("tcp_checks", "http_checks"):
                for position, check in self.tables(service, kind):
                    self.check(check, f"{prefix}.{kind}[{position}]", unit="ms")
        checks = doc.get("checks")
        if isinstance(checks, Table | InlineTable):
            for name in list(checks.keys()):
                check = checks[name]
                if isinstance(check, Table | InlineTable):
                    self.ports(check, ("port",), f"checks.{name}")
                    self.check(check, f"checks.{name}", unit="ms")
        for section in ("vm", "compute", "computes"):
            for index, vm in self.tables(doc, section):
                self.memory(vm, f"{section}[{index}]")
        self.websocket()

    # -- legacy forms ----------------------------------------------------------------------------

    def root_durations(self) -> None:
        doc = self.document
        self.duration(doc, "kill_timeout", "kill_timeout", unit="s")
        deploy = doc.get("deploy")
        if isinstance(deploy, Table | InlineTable):
            for name in ("wait_timeout", "release_command_timeout"):
                self.duration(deploy, name, f"deploy.{name}", unit="ns")

    def env(self) -> None:
        env = self.document.get("env")
        if not isinstance(env, Table | InlineTable):
            return
        for name in list(env.keys()):
            value = env[name]
            if isinstance(value, bool):
                text = "true" if value else "false"
            elif is_number(value):
                text = str(plain(value))
            else:
                continue
            self.put(
                env,
                name,
                text,
                key=f"env.{name}",
                reason="flyctl turns [env] values into strings (castToString, patches.go:610-616)",
            )

    def processes(self) -> None:
        doc = self.document
        value = doc.get("processes")
        if not isinstance(value, list) or not value or not all(isinstance(i, dict) for i in value):
            return
        table = tomlkit.table()
        for item in value:
            if "name" in item:
                table[str(item["name"])] = str(item.get("command", ""))
        self.put(
            doc,
            "processes",
            table,
            key="processes",
            reason="the list of {name, command} is legacy: flyctl reads it as this table "
            "(patches.go:118-156)",
        )

    def ports(self, table: Tab, names: tuple[str, ...], prefix: str) -> None:
        for name in names:
            value = table.get(name)
            if isinstance(value, str) and value.strip().isdigit():
                self.put(
                    table,
                    name,
                    int(value.strip()),
                    key=f"{prefix}.{name}",
                    reason="a port is an integer (flyctl's castToInt, patches.go:578-608)",
                )

    def auto_stop(self, table: Tab, prefix: str) -> None:
        value = table.get("auto_stop_machines")
        if isinstance(value, bool):
            self.put(
                table,
                "auto_stop_machines",
                "stop" if value else "off",
                key=f"{prefix}.auto_stop_machines",
                reason='a boolean is legacy: true is "stop", false is "off"',
            )

    def concurrency_string(self, table: Tab, prefix: str) -> None:
        value = table.get("concurrency")
        if not isinstance(value, str):
            return
        soft, _, hard = value.partition(",")
        if not (soft.strip().isdigit() and hard.strip().isdigit()):
            return  # flyctl refuses it: no safe reading (lint reports it)
        inline = tomlkit.inline_table()
        inline.update({"type": "requests", "soft_limit": int(soft), "hard_limit": int(hard)})
        self.put(
            table,
            "concurrency",
            inline,
            key=f"{prefix}.concurrency",
            reason='the "soft,hard" string is legacy: flyctl reads it as type "requests" '
            "(patches.go:388-413)",
        )

    def edge_http(self, port: Tab, prefix: str) -> None:
        handlers = port.get("handlers")
        if isinstance(handlers, list) and "edge_http" in handlers:
            fixed = list(dict.fromkeys("http" if h == "edge_http" else str(h) for h in handlers))
            self.put(
                port,
                "handlers",
                fixed,
                key=f"{prefix}.handlers",
                reason='"edge_http" is the obsolete name of the "http" handler',
            )

    def memory(self, vm: Tab, prefix: str) -> None:
        value = vm.get("memory")
        if is_number(value):
            self.put(
                vm,
                "memory",
                str(plain(value)),
                key=f"{prefix}.memory",
                reason="a bare number is megabytes: flyctl reads it as this string "
                "(castToString, patches.go:243-244)",
            )

    def check(self, check: Tab, prefix: str, *, unit: str) -> None:
        for name in _CHECK_TIMES:
            self.duration(check, name, f"{prefix}.{name}", unit=unit)
        headers = check.get("headers")
        if isinstance(headers, list) and all(isinstance(h, dict) for h in headers):
            table = tomlkit.inline_table()
            for header in headers:
                table[str(header.get("name", ""))] = str(header.get("value", ""))
            self.put(
                check,
                "headers",
                table,
                key=f"{prefix}.headers",
                reason="the list of {name, value} is legacy: flyctl reads it as this table "
                "(patches.go:507-540)",
            )

    # -- the PU02 shape --------------------------------------------------------------------------

    def websocket(self) -> None:
        doc = self.document
        env = doc.get("env")
        ws_port = (
            str(env.get("WS_PORT", "")).strip() if isinstance(env, Table | InlineTable) else ""
        )
        if not ws_port.isdigit():
            return
        for index, service in self.tables(doc, "services"):
            if str(service.get("internal_port", "")).strip() == ws_port:
                self.websocket_service(service, f"services[{index}]")
                return

    def websocket_service(self, service: Tab, prefix: str) -> None:
        pu02 = "the PU02 fix: raw TCP with TLS ended at the edge (docs/WEBSOCKET_HANDSHAKE_FIX.md)"
        if service.get("protocol") != "tcp":
            self.put(service, "protocol", "tcp", key=f"{prefix}.protocol", reason=pu02)
        for position, port in self.tables(service, "ports"):
            self.websocket_port(port, f"{prefix}.ports[{position}]", pu02)
        self.websocket_concurrency(service, prefix)
        has_check = any(True for _ in self.tables(service, "tcp_checks")) or any(
            True for _ in self.tables(service, "http_checks")
        )
        if not has_check and isinstance(service, Table):
            check = tomlkit.table()
            for name in _CHECK_TIMES:
                value = getattr(_WS_TCP_CHECK, name)
                if value is not None:
                    check[name] = value.text
            header = indent_of(service)
            step = max(len(header) - len(header_indent(service)), 0)
            check.indent(len(header) + step)
            check.trivia.indent = header
            checks = tomlkit.aot()
            checks.append(check)
            service["tcp_checks"] = checks
            self.changes.append(
                Change(
                    key=f"{prefix}.tcp_checks",
                    before=None,
                    after=[plain(check)],
                    reason="a TCP check on the WebSocket port (no HTTP request in the way)",
                )
            )

    def websocket_port(self, port: Tab, prefix: str, reason: str) -> None:
        raw = port.get("handlers")
        handlers = [str(h) for h in raw] if isinstance(raw, list) else []
        if "http" in handlers or "tls" not in handlers:
            fixed = ["tls", *(h for h in handlers if h not in ("http", "tls"))]
            self.put(port, "handlers", fixed, key=f"{prefix}.handlers", reason=reason)
            if "force_https" in port:
                self.drop(
                    port,
                    "force_https",
                    key=f"{prefix}.force_https",
                    reason='force_https only works with the "http" handler, now gone',
                )
        alpn_reason = "ALPN pinned to http/1.1: the edge never negotiates h2 for a WebSocket"
        tls = port.get("tls_options")
        if isinstance(tls, Table | InlineTable):
            alpn = tls.get("alpn")
            if not alpn or "h2" in alpn:
                self.put(
                    tls, "alpn", ["http/1.1"], key=f"{prefix}.tls_options.alpn", reason=alpn_reason
                )
        elif tls is None:
            inline = tomlkit.inline_table()
            inline["alpn"] = ["http/1.1"]
            self.put(port, "tls_options", inline, key=f"{prefix}.tls_options", reason=alpn_reason)

    def websocket_concurrency(self, service: Tab, prefix: str) -> None:
        assert _WS_CONCURRENCY is not None
        reason = (
            'a WebSocket is one long connection: count "connections" (Fly\'s default soft '
            "limit of 20 is far too low)"
        )
        concurrency = service.get("concurrency")
        if isinstance(concurrency, Table | InlineTable):
            if concurrency.get("type") != "connections":
                self.put(
                    concurrency,
                    "type",
                    "connections",
                    key=f"{prefix}.concurrency.type",
                    reason=reason,
                )
            for name in ("soft_limit", "hard_limit"):
                if name not in concurrency:
                    self.put(
                        concurrency,
                        name,
                        getattr(_WS_CONCURRENCY, name),
                        key=f"{prefix}.concurrency.{name}",
                        reason=reason,
                    )
            return
        if concurrency is not None:
            return  # not a table: a type error lint reports, no safe reading
        inline = tomlkit.inline_table()
        inline.update(
            {
                "type": "connections",
                "soft_limit": _WS_CONCURRENCY.soft_limit,
                "hard_limit": _WS_CONCURRENCY.hard_limit,
            }
        )
        self.put(service, "concurrency", inline, key=f"{prefix}.concurrency", reason=reason)


def fix_fly_toml(text: str) -> FixResult:
    """Apply every safe fix to fly.toml ``text``; ConfigError when the text is not TOML."""
    lint_fly_toml(text)  # the same ConfigError as lint on text that is not TOML
    try:
        document = tomlkit.parse(text)
    except tomlkit.exceptions.TOMLKitError as exc:  # pragma: no cover - tomllib refused first
        raise ConfigError(key="fly.toml", value="<toml>", reason=f"invalid TOML: {exc}") from None
    fixer = _Fixer(document)
    fixer.run()
    fixed = tomlkit.dumps(document)
    return FixResult(
        original=text,
        text=fixed,
        changes=tuple(fixer.changes),
        remaining=tuple(lint_fly_toml(fixed)),
    )


def unified_diff(result: FixResult, path: str) -> Iterator[str]:
    """The fix as a unified diff (``PATH`` -> ``PATH (fixed)``)."""
    return difflib.unified_diff(
        result.original.splitlines(keepends=True),
        result.text.splitlines(keepends=True),
        fromfile=path,
        tofile=f"{path} (fixed)",
    )
