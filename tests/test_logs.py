"""Logging: JSON off a terminal, console on one, library loggers through the same formatter,
secrets scrubbed everywhere."""

from __future__ import annotations

import base64
import io
import json
import logging
import os
import time
import urllib.parse
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import structlog

from nsx_route_gc import logs


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def _reset() -> Iterator[None]:
    yield
    structlog.reset_defaults()
    logging.getLogger().handlers.clear()


def test_json_lines_when_not_a_terminal_including_stdlib_loggers() -> None:
    stream = io.StringIO()
    logs.configure("auto", "info", stream)
    structlog.get_logger("t").info("route.deleted", route="r1", router="/infra/tier-1s/a")
    logging.getLogger("urllib3.connectionpool").warning("Retrying after connection broken")
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert lines[0]["event"] == "route.deleted"
    assert lines[0]["route"] == "r1"
    assert lines[0]["level"] == "info"
    assert "timestamp" in lines[0]
    assert lines[1]["event"] == "Retrying after connection broken"
    assert lines[1]["logger"] == "urllib3.connectionpool"


def test_console_on_a_terminal() -> None:
    stream = Tty()
    logs.configure("auto", "info", stream)
    structlog.get_logger("t").info("run.summary", deleted=3)
    out = stream.getvalue()
    assert "run.summary" in out
    assert not out.startswith("{")


def test_level_filters_and_bound_run_id_is_on_every_line() -> None:
    stream = io.StringIO()
    logs.configure("json", "warning", stream)
    with structlog.contextvars.bound_contextvars(run_id="abc"):
        structlog.get_logger("t").info("hidden")
        structlog.get_logger("t").warning("shown")
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [entry["event"] for entry in lines] == ["shown"]
    assert lines[0]["run_id"] == "abc"


def test_registered_secrets_are_scrubbed_from_ours_and_libraries_lines() -> None:
    stream = io.StringIO()
    logs.configure("json", "info", stream)
    logs.register_secret("canary-S3cr3t-pw")
    structlog.get_logger("t").error("nsx.failed", error="login canary-S3cr3t-pw refused")
    logging.getLogger("kubernetes.client").warning("token canary-S3cr3t-pw")
    out = stream.getvalue()
    assert "canary-S3cr3t-pw" not in out
    assert out.count(logs.REDACTED) == 2


def test_unknown_level_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown log level"):
        logs.configure("json", "chatty", io.StringIO())


def test_worker_threads_carry_the_run_id() -> None:

    stream = io.StringIO()
    logs.configure("json", "info", stream)

    def work(i: int) -> int:
        structlog.get_logger("t").info("router.listed", i=i)
        return i

    with (
        structlog.contextvars.bound_contextvars(run_id="run-42"),
        ThreadPoolExecutor(4) as pool,
    ):
        assert list(pool.map(logs.carry_context(work), range(8))) == list(range(8))
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert len(lines) == 8
    assert {entry["run_id"] for entry in lines} == {"run-42"}


BODY = {
    "id": "u_172.16.136.0_24",
    "network": "172.16.136.0/24",
    "next_hops": [{"ip_address": "10.0.0.5", "admin_distance": 1}],
    "tags": [{"scope": "vsphere.k8s.io/cluster-name", "tag": "kubernetes"}],
    "_revision": 0,
}


def test_console_shows_the_deleted_route_not_its_whole_object() -> None:
    stream = Tty()
    logs.configure("console", "info", stream)
    structlog.get_logger("t").info(
        "route.deleted", router="/infra/tier-1s/a", route=BODY["id"], nsx_object=BODY
    )
    out = stream.getvalue()
    assert BODY["id"] in out
    assert "nsx_object" not in out
    assert "vsphere.k8s.io/cluster-name" not in out
    assert len(out.strip().splitlines()) == 1


def test_json_keeps_the_deleted_routes_whole_object() -> None:
    stream = io.StringIO()
    logs.configure("json", "info", stream)
    structlog.get_logger("t").info(
        "route.deleted", router="/infra/tier-1s/a", route=BODY["id"], nsx_object=BODY
    )
    assert json.loads(stream.getvalue())["nsx_object"] == BODY


# --- issue 13: every encoded form of a secret ------------------------------------------------


@pytest.mark.parametrize(
    "encode",
    [
        pytest.param(lambda s: s, id="plain"),
        pytest.param(urllib.parse.quote_plus, id="form-encoded"),
        pytest.param(lambda s: urllib.parse.quote(s, safe=""), id="url-encoded"),
        pytest.param(lambda s: urllib.parse.urlencode({"j_password": s}), id="login-body"),
        pytest.param(lambda s: json.dumps({"password": s}), id="json-escaped"),
        pytest.param(lambda s: base64.b64encode(s.encode()).decode(), id="base64"),
        pytest.param(
            lambda s: base64.b64encode(b"xy" + s.encode() + b"z").decode(), id="inside-base64"
        ),
        pytest.param(
            lambda s: "Basic " + base64.b64encode(f"admin:{s}".encode()).decode(), id="basic"
        ),
    ],
)
@pytest.mark.parametrize("padding", [0, 10_000], ids=["line", "report-piece"])
def test_every_encoded_form_of_a_secret_is_scrubbed(encode: Any, padding: int) -> None:
    secret = 'Can@ry P+w"ord/1 \\ x'
    logs.register_secret(secret, username="admin")
    text = "x" * padding + f"manager echoed: {encode(secret)} (end)"
    scrubbed = logs.scrub(text)
    assert "***" in scrubbed
    for form in (secret, urllib.parse.quote_plus(secret), json.dumps(secret)[1:-1]):
        assert form not in scrubbed
    assert base64.b64encode(secret.encode()).decode()[:12] not in scrubbed
    assert scrubbed.endswith(" (end)")


def test_a_secret_with_a_trailing_newline_is_scrubbed_stripped_too() -> None:
    logs.register_secret("T0ken-with-newline\n")
    assert logs.scrub("Authorization: Bearer T0ken-with-newline") == "Authorization: Bearer ***"


def test_a_report_with_the_keys_of_hundreds_of_clusters_is_scrubbed_in_one_pass() -> None:
    keys = [base64.b64encode(os.urandom(1200)).decode() for _ in range(300)]
    for key in keys:
        logs.register_secret(key)
    row = '{"id": "a57a555e-e4eb-49ad-af74-e11a7d7a8ad8_172.16.138.0_24", "tags": []},\n'
    text = row * 40_000 + f"error: {keys[7]} and {keys[299]}" + row * 40_000
    started = time.monotonic()
    scrubbed = logs.scrub(text)
    elapsed = time.monotonic() - started
    assert keys[7] not in scrubbed
    assert keys[299] not in scrubbed
    assert scrubbed.count("***") >= 2
    assert len(scrubbed) < len(text)
    assert elapsed < 5  # a search per form took about a minute for such a report
