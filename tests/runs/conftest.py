"""What the run tests share."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
import structlog


@pytest.fixture(autouse=True)
def _reset_logging() -> Iterator[None]:
    """A run configures logging for the process; the next test starts from the defaults."""
    yield
    logging.getLogger().handlers.clear()
    structlog.reset_defaults()
