"""The two settings nsx-route-gc needs from a cluster's ``vsphere.conf``: the CCM's router path
and its NSX manager, read the way the vSphere CCM reads them.

Upstream (kubernetes/cloud-provider-vsphere): ``pkg/cloudprovider/vsphere/route/config``
(``[Route] router-path`` / YAML ``route.routerPath``) and ``pkg/nsxt/config`` (``[NSXT] host``
/ YAML ``nsxt.host``, with its validation). Each reader tries YAML first and falls back to the
INI form on *any* failure, validation included; INI is gcfg (gopkg.in/gcfg.v1), whose rules
differ from configparser's: names are case-insensitive, values may be quoted in part with
``\\" \\\\ \\n \\t`` escapes, ``;`` and ``#`` start a comment anywhere outside quotes, a trailing
``\\`` continues the line, and unknown sections and keys are ignored while syntax errors are
fatal.

The text is untrusted: its size is bounded, YAML aliases are refused, every failure is a
:class:`VsphereConfError` of one line that never quotes the file. Credentials in the file
(``password``, ``vmc-access-token``) are only checked for presence, as the CCM's validation
does, and never kept.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import yaml

MAX_CONF_BYTES = 256 * 1024
MAX_VALUE_CHARS = 1024

# The keys whose values are credentials: only whether they are set is kept.
_SECRET_KEYS = frozenset({"password", "vmc-access-token"})
_PRESENT = "<set>"

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class VsphereConfError(Exception):
    """vsphere.conf cannot be read as the CCM reads it; one line, quoting nothing of the file."""


@dataclass(frozen=True)
class VsphereConf:
    """The CCM's route settings; ``problems`` say why a reader found nothing it could use."""

    router_path: str | None  # None or "": the CCM runs no route controller (pod routing off)
    nsx_host: str | None  # None: no valid NSX-T settings
    form: str  # "yaml" or "ini": the form the settings were read in
    problems: tuple[str, ...] = ()


def parse_vsphere_conf(text: str) -> VsphereConf:
    """The route settings of ``text``. Raises VsphereConfError when neither form parses."""
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_CONF_BYTES:
        raise VsphereConfError(f"vsphere.conf is {size} bytes, more than {MAX_CONF_BYTES}")
    problems: list[str] = []
    doc = _yaml_mapping(text)
    ini: _Ini | None = None
    ini_error: str | None = None
    try:
        ini = _Ini.parse(text)
    except VsphereConfError as exc:
        ini_error = str(exc)
    if doc is None and ini is None:
        raise VsphereConfError(f"vsphere.conf is neither YAML nor INI: {ini_error}")
    forms: list[str] = []
    router_path = _yaml_route(doc) if doc is not None else None
    if router_path is not None:
        forms.append("yaml")
    elif ini is not None:
        router_path = ini.route(problems)
        if router_path is not None:
            forms.append("ini")
    host = _yaml_nsxt(doc) if doc is not None else None
    if host is not None:
        forms.append("yaml")
    elif ini is not None:
        host = ini.nsxt(problems)
        if host is not None:
            forms.append("ini")
    elif doc is not None and isinstance(doc.get("nsxt"), Mapping):
        problems.append("nsxt: not a valid NSX-T section (the CCM has no NSX connection)")
    form = forms[0] if forms else ("ini" if ini is not None else "yaml")
    return VsphereConf(router_path or None, host, form, tuple(problems))


# -- YAML ----------------------------------------------------------------------------------


class _NoAliasLoader(yaml.SafeLoader):
    """Safe YAML without aliases: a few bytes of aliases can stand for a huge document."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            raise yaml.composer.ComposerError(None, None, "aliases are not accepted", None)
        return super().compose_node(parent, index)


def _yaml_mapping(text: str) -> dict[Any, Any] | None:
    try:
        doc = yaml.load(text, Loader=_NoAliasLoader)  # noqa: S506  # a SafeLoader subclass
    except (yaml.YAMLError, RecursionError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


# yaml.v2 turns any scalar into a string field; a list or a mapping fails the whole document.
def _yaml_string(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, dict | list):
        raise TypeError("not a scalar")
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _yaml_route(doc: Mapping[Any, Any]) -> str | None:
    """``route.routerPath`` as the CCM's YAML route reader takes it, else None (INI next)."""
    section = doc.get("route")
    if section is None or not isinstance(section, dict):
        return None
    try:
        path = _yaml_string(section.get("routerPath"))
    except TypeError:
        return None
    return _clean(path) or None  # "router path is required"


_NSXT_YAML_STRINGS = (
    "user", "password", "host", "secretName", "secretNamespace", "vmcAccessToken",
    "vmcAuthHost", "clientAuthCertFile", "clientAuthKeyFile", "caFile",
)  # fmt: skip
_NSXT_YAML_BOOLS = ("insecureFlag", "remoteAuth")
# The YAML keys in the order of the INI names the shared validation uses.
_YAML_TO_INI = {
    "user": "user",
    "password": "password",
    "host": "host",
    "secretName": "secret-name",
    "secretNamespace": "secret-namespace",
    "vmcAccessToken": "vmc-access-token",
    "vmcAuthHost": "vmc-auth-host",
    "clientAuthCertFile": "client-auth-cert-file",
    "clientAuthKeyFile": "client-auth-key-file",
}


def _yaml_nsxt(doc: Mapping[Any, Any]) -> str | None:
    """``nsxt.host`` when the YAML NSX-T section is one the CCM accepts, else None."""
    section = doc.get("nsxt")
    if not isinstance(section, dict):
        return None
    values: dict[str, str] = {}
    try:
        for key in _NSXT_YAML_STRINGS:
            text = _yaml_string(section.get(key)) or ""
            name = _YAML_TO_INI.get(key)
            if name is not None:
                values[name] = _PRESENT if name in _SECRET_KEYS and text else text
    except TypeError:
        return None
    for key in _NSXT_YAML_BOOLS:
        if section.get(key) is not None and not isinstance(section.get(key), bool):
            return None  # a quoted "true" cannot go into a bool: the YAML reader fails
    if _nsxt_invalid(values) is not None:
        return None
    return _clean(values["host"]) or None


# -- INI (gcfg) ----------------------------------------------------------------------------

_ESCAPES = {"\\": "\\", '"': '"', "n": "\n", "t": "\t"}
_BOOLS = {"true": True, "yes": True, "on": True, "1": True}
_BOOLS |= {"false": False, "no": False, "off": False, "0": False}
# A value that is None was written without "=" (gcfg's blank value: true for a bool).
_Var = tuple[str, str | None]


class _Ini:
    """The variables of the sections nsx-route-gc reads, as gcfg scans them."""

    def __init__(self) -> None:
        # (section, subsection) -> variable -> values in order (gcfg keeps the last).
        self.sections: dict[tuple[str, str | None], dict[str, list[str | None]]] = {}

    @classmethod
    def parse(cls, text: str) -> _Ini:
        ini = cls()
        _Scanner(text, ini).run()
        return ini

    def add(self, section: tuple[str, str | None], name: str, value: str | None) -> None:
        if section[0] not in ("route", "nsxt"):
            return  # gcfg.FatalOnly: other sections are "extra data" to these readers
        if name in _SECRET_KEYS and value is not None:
            value = _PRESENT if value else ""
        self.sections.setdefault(section, {}).setdefault(name, []).append(value)

    def _section(self, name: str, problems: list[str]) -> dict[str, list[str | None]] | None:
        subsections = [key for key in self.sections if key[0] == name and key[1] is not None]
        if subsections:
            problems.append(f"[{name}] has a subsection, which the CCM refuses")
            return None
        return self.sections.get((name, None))

    def route(self, problems: list[str]) -> str | None:
        section = self._section("route", problems)
        if section is None:
            return None
        values = section.get("router-path") or []
        if values and values[-1] is None:
            problems.append("[Route] router-path has no value")
            return None
        return _clean(values[-1] if values else None) or None

    def nsxt(self, problems: list[str]) -> str | None:
        section = self._section("nsxt", problems)
        if section is None:
            return None
        values: dict[str, str] = {}
        for name, given in section.items():
            last = given[-1]
            if name in ("insecure-flag", "remote-auth"):
                if last is not None and last.strip().lower() not in _BOOLS:
                    problems.append(f"[NSXT] {name} is not a boolean (the CCM refuses the section)")
                    return None
            elif last is None:
                problems.append(f"[NSXT] {name} has no value (the CCM refuses the section)")
                return None
            else:
                values[name] = last
        invalid = _nsxt_invalid(values)
        if invalid is not None:
            problems.append(f"[NSXT] is not valid: {invalid} (the CCM has no NSX connection)")
            return None
        return _clean(values["host"]) or None


class _Scanner:
    """gcfg's scanner and unquoting (go-gcfg/gcfg scanner/scanner.go, read.go), by character."""

    def __init__(self, text: str, ini: _Ini) -> None:
        self.text = text
        self.i = 0
        self.ini = ini

    def fail(self, problem: str) -> VsphereConfError:
        line = self.text.count("\n", 0, self.i) + 1
        return VsphereConfError(f"vsphere.conf line {line}: {problem}")

    def peek(self) -> str:
        return self.text[self.i] if self.i < len(self.text) else ""

    def blanks(self) -> None:
        while self.peek() in (" ", "\t", "\r") and self.peek():
            self.i += 1

    def end_of_line(self) -> None:
        self.blanks()
        ch = self.peek()
        if ch in (";", "#"):
            while self.peek() not in ("\n", ""):
                self.i += 1
        elif ch not in ("\n", ""):
            raise self.fail("unexpected text after the entry")

    def identifier(self) -> str:
        start = self.i
        ch = self.peek()
        if not (ch.isalpha() or ch == "_"):
            raise self.fail("expected a name")
        while (ch := self.peek()) and (ch.isalnum() or ch in "-_"):
            self.i += 1
        return self.text[start : self.i].lower()

    def run(self) -> None:
        section: tuple[str, str | None] | None = None
        while self.i < len(self.text):
            ch = self.text[self.i]
            if ch in (" ", "\t", "\r", "\n"):
                self.i += 1
            elif ch in (";", "#"):
                self.end_of_line()
            elif ch == "[":
                section = self.header()
            else:
                name = self.identifier()
                if section is None:
                    raise self.fail("a variable before any section")
                self.ini.add(section, name, self.variable())

    def header(self) -> tuple[str, str | None]:
        self.i += 1
        self.blanks()
        name = self.identifier()
        self.blanks()
        sub: str | None = None
        if self.peek() == '"':
            sub = self.subsection()
            self.blanks()
        if self.peek() != "]":
            raise self.fail("a section header without ']'")
        self.i += 1
        self.end_of_line()
        return name, sub

    def subsection(self) -> str:
        self.i += 1
        out: list[str] = []
        while True:
            ch = self.peek()
            self.i += 1
            if ch in ("", "\n"):
                raise self.fail("a subsection name without its closing quote")
            if ch == '"':
                return "".join(out)
            if ch == "\\":
                escaped = self.peek()
                self.i += 1
                if escaped not in ('"', "\\"):
                    raise self.fail("an unknown escape in a subsection name")
                ch = escaped
            out.append(ch)

    def variable(self) -> str | None:
        self.blanks()
        if self.peek() in ("\n", "", ";", "#"):
            self.end_of_line()
            return None
        if self.peek() != "=":
            raise self.fail("expected '=' after a variable name")
        self.i += 1
        self.blanks()
        value = self.value()
        self.end_of_line()
        return value

    def value(self) -> str:
        text, out = self.text, []
        quoted = False
        keep = 0  # length of ``out`` up to its last character that is not trailing blank
        while self.i < len(text):
            ch = text[self.i]
            if not quoted and ch in ("\n", ";", "#"):
                break
            self.i += 1
            if ch == "\\":
                out.append(self.escape(quoted))
                keep = len(out)
            elif ch == '"':
                quoted = not quoted
                keep = len(out)
            elif ch == "\n":
                raise self.fail("a value without its closing quote")
            elif ch != "\r":
                out.append(ch)
                if quoted or ch not in (" ", "\t"):
                    keep = len(out)
        if quoted:
            raise self.fail("a value without its closing quote")
        return "".join(out[:keep])

    def escape(self, quoted: bool) -> str:
        if self.peek() == "\r":
            self.i += 1
        ch = self.peek()
        self.i += 1
        if quoted and ch in _ESCAPES:
            return _ESCAPES[ch]
        if not quoted and ch == "\n":
            return ""  # a continued line
        if not quoted and ch == '"':
            return '"'
        raise self.fail("an unknown escape sequence")


# -- shared --------------------------------------------------------------------------------


def _nsxt_invalid(values: Mapping[str, str]) -> str | None:
    """Why the CCM refuses an NSX-T section (validateConfig, the same for INI and YAML)."""

    def has(name: str) -> bool:
        return bool(values.get(name))

    if has("vmc-access-token"):
        if not has("vmc-auth-host"):
            return "vmc auth host is required with a vmc access token"
    elif has("user"):
        if not has("password"):
            return "password is required with user"
    elif has("client-auth-key-file") or has("client-auth-cert-file"):
        if not (has("client-auth-key-file") and has("client-auth-cert-file")):
            return "client cert file and key file are required together"
    elif has("secret-name") or has("secret-namespace"):
        if not (has("secret-name") and has("secret-namespace")):
            return "secret name and namespace are required together"
    else:
        return "user or vmc access token or client cert file must be set"
    if not has("host"):
        return "host is required"
    return None


def _clean(value: str | None) -> str | None:
    """A path or host fit for a report: bounded, one line, no control characters. A value the
    CCM would use but we cannot report faithfully makes the settings unknown."""
    if value is None:
        return None
    value = value.strip()
    if len(value) > MAX_VALUE_CHARS:
        raise VsphereConfError(f"a router path or host longer than {MAX_VALUE_CHARS} characters")
    if _CONTROL.search(value):
        raise VsphereConfError("a router path or host with control characters")
    return value
