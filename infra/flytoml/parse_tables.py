"""Readers of fly.toml's smaller tables (checks, TLS and HTTP options, mounts, statics,
metrics, restarts), used by ``infra.flytoml.parse``."""

from __future__ import annotations

from typing import cast

from infra.flytoml.model import (
    Duration,
    HttpCheck,
    HttpOptions,
    HttpResponseOptions,
    Metrics,
    Mount,
    Restart,
    Static,
    TcpCheck,
    TlsOptions,
)
from infra.flytoml.reader import TableReader, Unit, go_string

__all__ = [
    "headers",
    "http_check",
    "http_options",
    "metrics",
    "mount",
    "restart",
    "static",
    "tcp_check",
    "timing",
    "tls_options",
]


def timing(
    table: TableReader, *, bare: Unit
) -> tuple[Duration | None, Duration | None, Duration | None]:
    """interval, timeout, grace_period of a check."""
    return (
        table.duration("interval", bare=bare),
        table.duration("timeout", bare=bare),
        table.duration("grace_period", bare=bare),
    )


def headers(table: TableReader) -> tuple[tuple[str, str], ...]:
    """Check ``headers``: a table, or the legacy list of ``{name, value}`` (patches.go:507)."""
    value = table.peek("headers")
    if isinstance(value, list) and all(isinstance(item, dict) for item in value):
        table.raw("headers")
        return tuple(
            (go_string(item.get("name", "")), go_string(item.get("value", "")))
            for item in cast(list[dict[str, object]], value)
        )
    return table.pairs("headers")


def http_check(table: TableReader, *, bare: Unit) -> HttpCheck:
    interval, timeout, grace_period = timing(table, bare=bare)
    return table.finish(
        HttpCheck(
            interval=interval,
            timeout=timeout,
            grace_period=grace_period,
            method=table.text("method"),
            path=table.text("path") or "",
            protocol=table.text("protocol"),
            tls_skip_verify=table.boolean("tls_skip_verify"),
            tls_server_name=table.text("tls_server_name"),
            headers=headers(table),
        )
    )


def tcp_check(table: TableReader) -> TcpCheck:
    interval, timeout, grace_period = timing(table, bare="ms")
    return table.finish(TcpCheck(interval=interval, timeout=timeout, grace_period=grace_period))


def tls_options(table: TableReader | None) -> TlsOptions | None:
    if table is None:
        return None
    return table.finish(
        TlsOptions(
            alpn=table.texts("alpn"),
            versions=table.texts("versions"),
            default_self_signed=table.boolean("default_self_signed"),
        )
    )


def http_options(table: TableReader | None) -> HttpOptions | None:
    if table is None:
        return None
    response = table.table("response")
    return table.finish(
        HttpOptions(
            compress=table.boolean("compress"),
            h2_backend=table.boolean("h2_backend"),
            idle_timeout=table.integer("idle_timeout"),
            headers_read_timeout=table.integer("headers_read_timeout"),
            response=None
            if response is None
            else response.finish(
                HttpResponseOptions(
                    headers=response.values("headers"), pristine=response.boolean("pristine")
                )
            ),
        )
    )


def static(table: TableReader) -> Static:
    return table.finish(
        Static(
            guest_path=table.text("guest_path") or "",
            url_prefix=table.text("url_prefix") or "",
            tigris_bucket=table.text("tigris_bucket"),
            index_document=table.text("index_document"),
        )
    )


def mount(table: TableReader) -> Mount:
    size = table.peek("initial_size")
    if isinstance(size, int) and not isinstance(size, bool):
        table.raw("initial_size")
        initial_size: str | None = str(size)
    else:
        initial_size = table.text("initial_size")
    return table.finish(
        Mount(
            source=table.text("source") or "",
            destination=table.text("destination") or "",
            initial_size=initial_size,
            processes=table.texts("processes"),
        )
    )


def metrics(table: TableReader) -> Metrics:
    return table.finish(
        Metrics(
            port=table.port("port") or 0,
            path=table.text("path") or "",
            processes=table.texts("processes"),
        )
    )


def restart(table: TableReader) -> Restart:
    return table.finish(
        Restart(
            policy=table.text("policy") or "",
            retries=table.integer("retries"),
            processes=table.texts("processes"),
        )
    )
