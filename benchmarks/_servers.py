"""The servers the scenarios download from: the emulator in its own process, and nginx in front of it.

The emulator runs in a subprocess so that its CPU is not charged to the client under test. Where the
emulator would be the bottleneck, :class:`Nginx` serves the documents from files (the file is chosen
by the request's ``X-Auth-Token``: one account, one document size) and proxies everything else
(listing, fax details) to the emulator, so the SDK still lists and downloads through one base URL.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx2

if TYPE_CHECKING:
    from audian_fax_async.emulator import AdminClient

__all__ = ["Backend", "EmulatorProcess", "Nginx", "backend", "ensure_nginx", "write_document"]

NGINX = "/usr/sbin/nginx"
#: Debian's echo module (``libnginx-mod-http-echo``): ``echo_sleep`` adds a download's latency.
_ECHO_MODULE = "/usr/lib/nginx/modules/ngx_http_echo_module.so"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class EmulatorProcess:
    """``python -m audian_fax_async.emulator`` on a free loopback port, stopped on exit."""

    def __init__(self, *, latency: float = 0.0, retry_after: int = 1, max_concurrent_downloads: int = 10) -> None:
        self._args = [
            "--port",
            "0",
            "--faxes",
            "0",
            "--log-level",
            "warning",
            "--latency",
            str(latency),
            "--retry-after",
            str(retry_after),
            "--max-concurrent-downloads",
            str(max_concurrent_downloads),
        ]
        self._proc: subprocess.Popen[str] | None = None
        self.base_url = ""
        self.admin_url = ""

    def __enter__(self) -> EmulatorProcess:
        self._proc = subprocess.Popen(
            [sys.executable, "-u", "-m", "audian_fax_async.emulator", *self._args],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline()  # "Audian emulator: API http://... admin http://..."
        words = line.split()
        if "API" not in words:
            self.__exit__(None, None, None)
            raise RuntimeError(f"the emulator did not start: {line!r}")
        self.base_url = words[words.index("API") + 1]
        self.admin_url = words[words.index("admin") + 1]
        return self

    def __exit__(self, *exc: object) -> None:
        if self._proc is not None:
            self._proc.terminate()  # nothing to save: the emulator's state is thrown away
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self._proc = None

    def admin(self) -> AdminClient:
        from audian_fax_async.emulator import AdminClient

        return AdminClient(self.admin_url, timeout=300)

    def add_faxes(self, key: str, count: int, size: int) -> list[str]:
        """Create ``count`` faxes of exactly ``size`` bytes for account ``key``; returns their ids."""
        ids: list[str] = []
        with self.admin() as admin:
            admin.reset(key)
            for start in range(0, count, 5000):
                made = admin.inject(key, count=min(5000, count - start), size=size, pages=1)
                ids.extend(str(f["id"]) for f in made)
        return ids

    def stats(self, key: str) -> dict[str, Any]:
        with self.admin() as admin:
            return admin.stats(key)


def ensure_nginx(*, echo: bool = False) -> str:
    """The nginx binary (and Debian's echo module when ``echo``), installed with apt-get if missing (as root)."""
    binary = NGINX if os.access(NGINX, os.X_OK) else shutil.which("nginx")
    missing = [] if binary else ["nginx"]
    if echo and not os.path.exists(_ECHO_MODULE):
        missing.append("libnginx-mod-http-echo")
    if not missing:
        assert binary is not None
        return binary
    if os.geteuid() != 0:
        raise RuntimeError(f"not installed, and this is not root: apt-get install {' '.join(missing)}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for _ in range(30):  # another apt may hold the lock for a while
        done = subprocess.run(["apt-get", "install", "-y", "-q", *missing], env=env, capture_output=True)
        if done.returncode == 0:
            break
        if b"lock" not in done.stderr:
            subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True)
        time.sleep(2)
    binary = NGINX if os.access(NGINX, os.X_OK) else shutil.which("nginx")
    if binary is None or (echo and not os.path.exists(_ECHO_MODULE)):
        raise RuntimeError(f"could not install {' '.join(missing)}")
    return binary


_CONF = """
{modules}
worker_processes 1;
daemon off;
pid {root}/nginx.pid;
error_log {root}/error.log warn;
{user}
events {{ worker_connections 4096; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    keepalive_timeout 300s;
    client_body_temp_path {root}/tmp/body;
    proxy_temp_path {root}/tmp/proxy;
    fastcgi_temp_path {root}/tmp/fastcgi;
    uwsgi_temp_path {root}/tmp/uwsgi;
    scgi_temp_path {root}/tmp/scgi;
    default_type application/pdf;
    upstream emulator {{ server {upstream}; keepalive 64; }}
    # Accounts whose key starts with "paced-" get documents at a WAN-like rate per connection.
    map $http_x_auth_token $document_rate {{ ~^paced- {paced_rate}; default 0; }}
    # The account limit (when enforced): downloads per key at once, refused with a 429 like the API's.
    limit_conn_zone $http_x_auth_token zone=accounts:1m;
    limit_conn_status 429;
    map $status $refused {{ 429 1; default 0; }}
    log_format refused '$http_x_auth_token';
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        access_log {root}/refused.log refused if=$refused;
        # A download's document is the file named after the account's key.
        location ~ ^{prefix}/fax/received/[^/]+/download$ {{
{download}
        }}
        location @document {{
            root {root}/docs;
            limit_rate $document_rate;
            try_files /$http_x_auth_token.pdf =404;
        }}
        location @refused {{
            default_type application/json;
            add_header Retry-After 1 always;
            return 429 '{{"error":{{"code":"too_many_concurrent_downloads","message":"slow down"}}}}';
        }}
        location / {{
            proxy_pass http://emulator;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $http_host;
        }}
    }}
}}
"""


def _download_location(latency: float, max_downloads: int | None) -> tuple[str, str]:
    """The download location's body and the modules it needs."""
    lines = []
    if max_downloads is not None:
        lines += [f"limit_conn accounts {max_downloads};", "error_page 429 = @refused;"]
    modules = ""
    if latency > 0:
        # Like the emulator's --latency: the whole wait before the answer, then the file.
        lines += [f"echo_sleep {latency:.3f};", "echo_exec @document;"]  # milliseconds at most
        modules = f"load_module {_ECHO_MODULE};"
    else:
        lines += ["root {docs};", "limit_rate $document_rate;", "rewrite ^ /$http_x_auth_token.pdf break;"]
    return "\n".join(" " * 12 + line for line in lines), modules


class Nginx:
    """nginx on a free loopback port: documents from files, the rest proxied to the emulator."""

    def __init__(
        self,
        emulator: EmulatorProcess,
        *,
        workdir: str | None = None,
        paced_rate: int = 20_000,
        latency: float = 0.0,
        max_downloads: int | None = None,
    ) -> None:
        self._emulator = emulator
        self._paced_rate = paced_rate
        self._latency = latency
        self._max_downloads = max_downloads
        self._tmp = tempfile.TemporaryDirectory(prefix="audian-nginx-", dir=workdir)
        self.root = Path(self._tmp.name)
        self.docs = self.root / "docs"
        self._proc: subprocess.Popen[bytes] | None = None
        self.base_url = ""

    def __enter__(self) -> Nginx:
        binary = ensure_nginx(echo=self._latency > 0)
        for sub in ("docs", "tmp"):
            (self.root / sub).mkdir()
        os.chmod(self.root, 0o755)  # noqa: S103 - nginx's worker process must read the documents
        os.chmod(self.docs, 0o755)  # noqa: S103
        upstream = httpx2.URL(self._emulator.base_url)
        port = free_port()
        conf = self.root / "nginx.conf"
        download, modules = _download_location(self._latency, self._max_downloads)
        conf.write_text(
            _CONF.format(
                modules=modules,
                download=download.replace("{docs}", str(self.docs)),
                root=self.root,
                port=port,
                upstream=f"{upstream.host}:{upstream.port}",
                prefix=upstream.path.rstrip("/"),
                user="user root;" if os.geteuid() == 0 else "",
                paced_rate=self._paced_rate,
            )
        )
        self._proc = subprocess.Popen([binary, "-c", str(conf), "-p", str(self.root)], stderr=subprocess.PIPE)
        self.base_url = f"http://127.0.0.1:{port}{upstream.path.rstrip('/')}"
        deadline = time.monotonic() + 10
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
                break
            if self._proc.poll() is not None or time.monotonic() > deadline:
                err = self._proc.stderr.read().decode() if self._proc.stderr else ""
                self.__exit__(None, None, None)
                raise RuntimeError(f"nginx did not start: {err}")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._proc is not None:
            self._proc.send_signal(signal.SIGQUIT if self._proc.poll() is None else 0)
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self._proc = None
        self._tmp.cleanup()

    def refused(self, key: str) -> int:
        """The downloads of account ``key`` refused with a 429 so far (``max_downloads``)."""
        log = self.root / "refused.log"
        if not log.exists():
            return 0
        return sum(1 for line in log.read_text().splitlines() if line == key)

    def serve(self, keys: Sequence[str], size: int) -> None:
        """Serve one document of ``size`` bytes for every fax of the accounts ``keys``."""
        first = self.docs / f"{keys[0]}.pdf"
        write_document(first, size)
        for key in keys[1:]:
            (self.docs / f"{key}.pdf").symlink_to(first)


def write_document(path: Path, size: int) -> None:
    """A file of exactly ``size`` bytes that passes the SDK's checks (``%PDF-`` head, ``%%EOF`` tail)."""
    head, tail = b"%PDF-1.7\n", b"\n%%EOF\n"
    block = os.urandom(1 << 20)
    with path.open("wb") as handle:
        handle.write(head)
        left = size - len(head) - len(tail)
        while left > 0:
            piece = block[: min(left, len(block))]
            handle.write(piece)
            left -= len(piece)
        handle.write(tail)
    path.chmod(0o644)


class Backend:
    """Where a scenario's client points: ``base_url`` (listing and downloads) and the emulator behind it."""

    def __init__(self, base_url: str, emulator: EmulatorProcess, nginx: Nginx | None) -> None:
        self.base_url = base_url
        self.emulator = emulator
        self.nginx = nginx

    def add_account(self, key: str, count: int, size: int) -> list[str]:
        ids = self.emulator.add_faxes(key, count, size)
        if self.nginx is not None:
            self.nginx.serve([key], size)
        return ids

    def drop_account(self, key: str) -> None:
        """Forget an account the emulator no longer needs, so its state does not grow run after run."""
        with self.emulator.admin() as admin:
            admin.reset(key)

    def download_url(self, fax_id: str) -> str:
        return f"{self.base_url}/fax/received/{fax_id}/download"

    def refused(self, key: str) -> int:
        """Requests of account ``key`` refused with a 429, by the emulator and by nginx."""
        requests = self.emulator.stats(key)["requests"]
        by_emulator = sum(int(by_status.get("429", 0)) for by_status in requests.values())
        return by_emulator + (self.nginx.refused(key) if self.nginx is not None else 0)


@contextlib.contextmanager
def backend(
    *,
    nginx: bool,
    latency: float = 0.0,
    workdir: str | None = None,
    paced_rate: int = 20_000,
    max_downloads: int | None = None,
) -> Iterator[Backend]:
    """The emulator (with ``latency``), behind nginx when ``nginx`` is true.

    Behind nginx, accounts whose key starts with ``paced-`` receive documents at ``paced_rate``
    bytes per second per connection (a far-away API); the others as fast as loopback allows. nginx
    adds the same ``latency`` before each document, and refuses more than ``max_downloads`` at once
    per account with a 429 and ``Retry-After: 1`` (as the API does) when that is given.
    """
    with EmulatorProcess(latency=latency) as emulator:
        if not nginx:
            yield Backend(emulator.base_url, emulator, None)
            return
        with Nginx(
            emulator, workdir=workdir, paced_rate=paced_rate, latency=latency, max_downloads=max_downloads
        ) as server:
            yield Backend(server.base_url, emulator, server)
