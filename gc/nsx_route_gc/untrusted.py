"""Reading what anyone could have written: files of bounded size, YAML without duplicate keys
or aliases, JSON without duplicate keys or unbounded nesting.

Every refusal is an ``UntrustedInput`` (a ValueError) whose one line says what is wrong and
never quotes the input; callers put the file's name in front.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from yaml.constructor import ConstructorError
from yaml.nodes import MappingNode, Node

# Limits of the files the tool is given. A configuration or kubeconfig is a few KB (a
# Kubernetes Secret holds at most 1 MiB); a password or token file a few hundred bytes.
# Reports have their own limit (reports.saved_plan.MAX_REPORT).
CONFIG_MAX_BYTES = 1 << 20
KUBECONFIG_MAX_BYTES = 1 << 20
CREDENTIAL_MAX_BYTES = 64 << 10
# Deeper than any report or NSX object nests (a report row's body is 4 levels down).
JSON_MAX_DEPTH = 64


class UntrustedInput(ValueError):
    """Input refused: too large, not UTF-8, duplicate keys, aliases, too deeply nested."""


def read_bounded(path: Path, limit: int) -> bytes:
    """At most ``limit`` bytes of ``path``: one more read proves the file larger (a
    ``/dev/zero`` is refused after ``limit`` + 1 bytes, never read to exhaustion). OSError as
    ``open`` raises it."""
    with path.open("rb") as stream:
        data = stream.read(limit + 1)
    if len(data) > limit:
        raise UntrustedInput(f"larger than {_size(limit)}: refused")
    return data


def read_text_bounded(path: Path, limit: int) -> str:
    data = read_bounded(path, limit)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise UntrustedInput("not UTF-8 text") from None


def _size(limit: int) -> str:
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if limit >= 1 << shift and limit % (1 << shift) == 0:
            return f"{limit >> shift} {unit}"
    return f"{limit} bytes"


# --- YAML --------------------------------------------------------------------------------


class _StrictConstructor:
    """Refuses a key given twice in one mapping (the second would silently win) and every
    alias: an anchor reused is how a few hundred bytes expand into gigabytes, and no file the
    tool reads needs one."""

    constructed_objects: dict[Node, Any]
    recursive_objects: dict[Node, Any]

    def construct_object(self, node: Node, deep: bool = False) -> Any:
        if node in self.constructed_objects or node in self.recursive_objects:
            raise ConstructorError(
                None, None, "found an alias (*name): aliases are refused", node.start_mark
            )
        return super().construct_object(node, deep=deep)  # type: ignore[misc]  # a mixin of SafeConstructor

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
        if not isinstance(node, MappingNode):
            raise ConstructorError(
                None, None, f"expected a mapping node, but found {node.id}", node.start_mark
            )
        flatten = getattr(self, "flatten_mapping", None)  # SafeConstructor's merge keys (<<)
        if flatten is not None:
            flatten(node)
        mapping: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                duplicate = key in mapping
            except TypeError:
                raise ConstructorError(
                    "while constructing a mapping", node.start_mark,
                    "found an unhashable key", key_node.start_mark,
                ) from None  # fmt: skip
            if duplicate:
                shown = repr(key) if isinstance(key, str | int) else type(key).__name__
                raise ConstructorError(
                    "while constructing a mapping", node.start_mark,
                    f"found duplicate key {shown[:80]}", key_node.start_mark,
                )  # fmt: skip
            mapping[key] = self.construct_object(value_node, deep=deep)
        return mapping


class StrictLoader(_StrictConstructor, yaml.SafeLoader):
    """PyYAML's SafeLoader without duplicate keys or aliases."""


class StrictBaseLoader(_StrictConstructor, yaml.BaseLoader):
    """PyYAML's BaseLoader (every scalar a string) without duplicate keys or aliases."""


_CLoader: type[yaml.SafeLoader] | None = getattr(yaml, "CSafeLoader", None)
if _CLoader is not None:

    class FastStrictLoader(_StrictConstructor, _CLoader):  # type: ignore[valid-type,misc]  # CSafeLoader when libyaml is there
        """The same, parsed by libyaml (constructing stays in Python, so the rules hold)."""

    FAST_LOADER: type[yaml.SafeLoader] = FastStrictLoader
else:  # pragma: no cover - wheels carry libyaml
    FAST_LOADER = StrictLoader


def load_yaml(text: str, *, fast: bool = False, strings: bool = False) -> Any:
    """``text`` parsed as YAML, strictly; yaml.YAMLError (with its mark) when refused.
    ``strings``: every scalar as written (BaseLoader), never a number or boolean."""
    loader: type[yaml.BaseLoader] | type[yaml.SafeLoader] = (
        StrictBaseLoader if strings else FAST_LOADER if fast else StrictLoader
    )
    try:
        return yaml.load(text, Loader=loader)  # noqa: S506 - a SafeLoader subclass
    except RecursionError:
        raise UntrustedInput("YAML nested too deeply") from None


# --- JSON --------------------------------------------------------------------------------


class DuplicateKey(UntrustedInput):
    pass


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise DuplicateKey(f"duplicate key {key[:80]!r} in one object")
            seen.add(key)
    return out


def load_json(text: str | bytes, *, max_depth: int = JSON_MAX_DEPTH) -> Any:
    """``text`` parsed as JSON without duplicate keys, nested at most ``max_depth`` deep;
    UntrustedInput otherwise (ValueError for what is not JSON at all)."""
    try:
        value = json.loads(text, object_pairs_hook=_no_duplicates)
    except RecursionError:
        raise UntrustedInput(f"JSON nested deeper than {max_depth} levels") from None
    if depth_exceeds(value, max_depth):
        raise UntrustedInput(f"JSON nested deeper than {max_depth} levels")
    return value


def depth_exceeds(value: object, limit: int) -> bool:
    """Whether lists and objects nest more than ``limit`` deep (no recursion: a value nested
    100,000 deep is answered, not a RecursionError)."""
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


# The problems of a strict refusal: they name a key or an alias, never a value.
STRICT_PROBLEMS = ("found duplicate key", "found an alias")
