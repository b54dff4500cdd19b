"""Kubeconfigs read from Cluster API Secrets carry data only; every kubeconfig is read bounded
and strictly (issue 13: "Untrusted files and answers steer writes", "Crashes and hangs")."""

from __future__ import annotations

import base64
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

import pytest
import yaml

from nsx_route_gc import logs
from nsx_route_gc.clusters.kubeconfig import api_client_from_kubeconfig, scrub
from nsx_route_gc.errors import KubeError

SERVER = "https://127.0.0.1:6443"
TOKEN = "kubeconfig-T0ken-canary"


def write(tmp_path: Path, user: dict[str, Any], cluster: dict[str, Any] | None = None) -> Path:
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": "ctx",
        "clusters": [{"name": "c", "cluster": cluster or {"server": SERVER}}],
        "contexts": [{"name": "ctx", "context": {"cluster": "c", "user": "u"}}],
        "users": [{"name": "u", "user": user}],
    }
    path = tmp_path / "kubeconfig.yaml"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    return path


def from_secret(path: Path, *, allow_http: bool = False) -> None:
    api = api_client_from_kubeconfig(path, credentials_only=True, allow_http=allow_http)
    api.close()  # type: ignore[no-untyped-call]  # untyped library method


@pytest.mark.parametrize(
    ("user", "cluster", "refused"),
    [
        pytest.param(
            {"exec": {"apiVersion": "client.authentication.k8s.io/v1", "command": "/bin/sh"}},
            None,
            "user field 'exec'",
            id="exec",
        ),
        pytest.param(
            {"auth-provider": {"name": "gcp", "config": {"cmd-path": "/bin/sh"}}},
            None,
            "user field 'auth-provider'",
            id="gcp-cmd-path",
        ),
        pytest.param({"tokenFile": "/etc/nsx/password"}, None, "'tokenFile'", id="tokenFile"),
        pytest.param(
            {"client-certificate": "/etc/cert.pem", "client-key-data": "eA=="},
            None,
            "'client-certificate'",
            id="client-certificate-path",
        ),
        pytest.param({"client-key": "/etc/key.pem"}, None, "'client-key'", id="client-key-path"),
        pytest.param(
            {"token": TOKEN},
            {"server": SERVER, "certificate-authority": "/etc/nsx/password"},
            "cluster field 'certificate-authority'",
            id="certificate-authority-path",
        ),
        pytest.param(
            {"token": TOKEN},
            {"server": SERVER, "proxy-url": "http://evil:3128"},
            "cluster field 'proxy-url'",
            id="proxy",
        ),
        pytest.param(
            {"token": TOKEN},
            {"server": "http://127.0.0.1:6443"},
            "is not https (set cluster_api.allow_http: true",
            id="http-server",
        ),
    ],
)
def test_a_kubeconfig_from_a_secret_carries_only_data(
    tmp_path: Path, user: dict[str, Any], cluster: dict[str, Any] | None, refused: str
) -> None:
    path = write(tmp_path, user, cluster)
    with pytest.raises(KubeError, match=r"refused|not https") as caught:
        from_secret(path)
    assert refused in str(caught.value)
    assert TOKEN not in str(caught.value)


def test_an_exec_plugin_from_a_secret_never_runs(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    command = {"apiVersion": "client.authentication.k8s.io/v1", "command": "/bin/sh"}
    command["args"] = ["-c", f"touch {marker}"]  # type: ignore[assignment]  # a list of args
    path = write(tmp_path, {"exec": command})
    with pytest.raises(KubeError):
        from_secret(path)
    assert not marker.exists()


def test_http_from_a_secret_is_allowed_when_asked(tmp_path: Path) -> None:
    path = write(tmp_path, {"token": TOKEN}, {"server": "http://127.0.0.1:6443"})
    from_secret(path, allow_http=True)


def test_the_operators_own_kubeconfig_keeps_exec_and_files(tmp_path: Path) -> None:
    # Operators use exec plugins (tanzu, kubectl oidc-login) and file paths on laptops: a
    # kubeconfig they give is theirs to trust.
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    path = write(tmp_path, {"tokenFile": str(token_file)})
    api = api_client_from_kubeconfig(path)
    try:
        # The trailing newline is not part of the token, and the token is a registered secret.
        assert list(api.configuration.api_key.values()) == [f"Bearer {TOKEN}"]
        scrubbed = logs.scrub(f"header 'Bearer {TOKEN}\\n' refused")
        assert TOKEN not in scrubbed
        assert scrubbed.startswith("header 'Bearer ***")
    finally:
        api.close()  # type: ignore[no-untyped-call]  # untyped library method


def test_a_yaml_anchor_bomb_is_refused_at_once(tmp_path: Path) -> None:
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, 12):
        lines.append(f"a{i}: &a{i} [{','.join([f'*a{i - 1}'] * 9)}]")
    path = tmp_path / "bomb.yaml"
    path.write_text("\n".join(lines) + "\ncurrent-context: *a11\n", encoding="utf-8")
    started = time.monotonic()
    with pytest.raises(KubeError, match=r"invalid YAML at line \d+, column \d+: .*aliases are"):
        api_client_from_kubeconfig(path)
    assert time.monotonic() - started < 5


def test_duplicate_keys_in_a_kubeconfig_are_refused(tmp_path: Path) -> None:
    path = write(tmp_path, {"token": TOKEN})
    path.write_text(path.read_text() + "current-context: other\n", encoding="utf-8")
    with pytest.raises(KubeError, match="duplicate key 'current-context'"):
        api_client_from_kubeconfig(path)


def test_an_endless_kubeconfig_is_refused_after_a_bounded_read() -> None:
    with pytest.raises(KubeError, match=r"kubeconfig /dev/zero: larger than 1 MiB: refused"):
        api_client_from_kubeconfig(Path("/dev/zero"))


def test_an_endless_token_file_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, {"tokenFile": "/dev/zero"})
    with pytest.raises(KubeError, match="tokenFile /dev/zero: larger than 64 KiB: refused"):
        api_client_from_kubeconfig(path)


def test_messages_about_a_kubeconfig_hide_every_form_of_its_credentials() -> None:
    secret = "client-key/d@ta+x"
    text = f"raw {secret} url {quote_plus(secret)} b64 {base64.b64encode(secret.encode()).decode()}"
    scrubbed = scrub(text, {secret})
    assert scrubbed == "raw *** url *** b64 ***"
