"""Logging: JSON off a terminal, console on one, library loggers through the same formatter,
secrets scrubbed everywhere."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

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
