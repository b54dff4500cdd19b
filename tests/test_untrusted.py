"""Reading what anyone could have written: bounded, no duplicate keys, no aliases, bounded
nesting (issue 13: "Crashes and hangs instead of one-line errors")."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml

from nsx_route_gc.untrusted import (
    UntrustedInput,
    depth_exceeds,
    load_json,
    load_yaml,
    read_bounded,
    read_text_bounded,
)


def test_a_bounded_read_of_an_endless_file_stops_at_the_limit() -> None:
    started = time.monotonic()
    with pytest.raises(UntrustedInput, match=r"^larger than 4 KiB: refused$"):
        read_bounded(Path("/dev/zero"), 4096)
    assert time.monotonic() - started < 1


def test_a_file_at_the_limit_is_read_whole(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"x" * 100)
    assert read_bounded(path, 100) == b"x" * 100
    with pytest.raises(UntrustedInput):
        read_bounded(path, 99)


def test_text_that_is_not_utf8_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"\xff\xfe")
    with pytest.raises(UntrustedInput, match=r"^not UTF-8 text$"):
        read_text_bounded(path, 100)


@pytest.mark.parametrize("fast", [False, True])
def test_yaml_duplicate_keys_and_aliases_are_refused(fast: bool) -> None:
    assert load_yaml("a: 1\nb: {c: [1, 2]}\n", fast=fast) == {"a": 1, "b": {"c": [1, 2]}}
    with pytest.raises(yaml.YAMLError, match="found duplicate key 'a'"):
        load_yaml("a: 1\na: 2\n", fast=fast)
    with pytest.raises(yaml.YAMLError, match="found duplicate key 'c'"):
        load_yaml("b: {c: 1, c: 2}\n", fast=fast)
    with pytest.raises(yaml.YAMLError, match="aliases are refused"):
        load_yaml("x: &x [1]\ny: *x\n", fast=fast)
    with pytest.raises(yaml.YAMLError, match="aliases are refused"):
        load_yaml("x: &x [*x]\n", fast=fast)


@pytest.mark.parametrize("fast", [False, True])
def test_a_billion_laughs_is_refused_at_once(fast: bool) -> None:
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"a{i}: &a{i} [{','.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 15)]
    started = time.monotonic()
    with pytest.raises(yaml.YAMLError, match="aliases are refused"):
        load_yaml("\n".join(lines) + "\n", fast=fast)
    assert time.monotonic() - started < 2


def test_json_duplicate_keys_are_refused() -> None:
    assert load_json('{"a": {"b": 1}}') == {"a": {"b": 1}}
    with pytest.raises(UntrustedInput, match="duplicate key 'b'"):
        load_json('{"a": {"b": 1, "b": 2}}')


@pytest.mark.parametrize("depth", [65, 100_000])
def test_json_nested_too_deep_is_one_error_never_a_recursion_error(depth: int) -> None:
    with pytest.raises(UntrustedInput, match="nested deeper than 64 levels"):
        load_json("[" * depth + "]" * depth)
    assert load_json("[" * 64 + "]" * 64) is not None


def test_depth_is_measured_without_recursion() -> None:
    value: list[object] = []
    for _ in range(200_000):
        value = [value]
    assert depth_exceeds(value, 64)
    assert not depth_exceeds({"a": [{"b": 1}]}, 3)
    assert depth_exceeds({"a": [{"b": [1]}]}, 3)
