"""A pytest-httpserver NSX manager and an NsxClient speaking to it, shared by the NSX tests."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from pytest_httpserver import HTTPServer

from factories import FakeTime
from nsx_route_gc.config import NsxSettings, Secret
from nsx_route_gc.nsx.client import NsxClient

PASSWORD = "canary-S3cr3t-pw"


@dataclass
class Env:
    server: HTTPServer
    time: FakeTime

    def settings(self, **overrides: Any) -> NsxSettings:
        values: dict[str, Any] = {
            "base_url": self.server.url_for("/").rstrip("/"),
            "username": "admin",
            "password": Secret(PASSWORD),
            "auth": "basic",
            "timeout": 5.0,
            "max_attempts": 4,
            "rate_limit": 1000.0,
        }
        values.update(overrides)
        return NsxSettings(**values)

    def client(self, **overrides: Any) -> NsxClient:
        return NsxClient(
            self.settings(**overrides),
            sleep=self.time.sleep,
            clock=self.time.clock,
            rng=random.Random(7),  # noqa: S311 - reproducible jitter, nothing secret
        )
