"""Our own error types. Adapters translate transport errors into these with ``raise ... from``.

Messages are one line, name the input or the call that failed, and never carry credentials.
"""

from __future__ import annotations


class RouteGcError(Exception):
    """Base of every error nsx-route-gc raises on purpose."""


class ConfigError(RouteGcError):
    """The configuration (file, environment, kubeconfig path, CIDR) is unusable: exit 2."""


class NsxError(RouteGcError):
    """Talking to the NSX manager failed (transport, TLS, auth, malformed answer)."""


class NsxAccessError(NsxError):
    """The manager cannot be used at all this run: the login (or token) was refused, or the
    manager cannot be reached or verified. Raised once; every later call fails with it at
    once, without touching the manager (NSX locks an account after 5 failed logins)."""


class NsxApiError(NsxError):
    """NSX answered with an error status; carries the fields of its error body."""

    def __init__(
        self,
        method: str,
        path: str,
        status: int,
        *,
        http_status: str | None = None,
        error_code: int | None = None,
        error_message: str | None = None,
        module_name: str | None = None,
        related_codes: tuple[int, ...] = (),
    ) -> None:
        self.method = method
        self.path = path
        self.status = status
        self.http_status = http_status
        self.error_code = error_code
        self.error_message = error_message
        self.module_name = module_name
        self.related_codes = related_codes  # error_code of each of related_errors
        detail = f"{status}"
        if http_status:
            detail += f" {http_status}"
        if error_code is not None:
            detail += f" error_code={error_code}"
        if module_name:
            detail += f" module={module_name}"
        if error_message:
            detail += f": {error_message}"
        super().__init__(f"NSX {method} {path} failed: {detail}")


class KubeError(RouteGcError):
    """Inventorying a Kubernetes cluster failed (kubeconfig, transport, auth, malformed answer)."""


class PlanError(RouteGcError):
    """A saved plan cannot be applied (other host, digest mismatch, too old, malformed)."""
