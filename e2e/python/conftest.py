"""Fixtures: a throw-away Latchkey server per test module, and an Okta SDK client for it.

Environment (same as the Node suite):
  LATCHKEY_BIN                   server binary (default: ../target/debug/latchkey from e2e/)
  LATCHKEY_E2E_BACKEND           "sqlite" (default) or "postgres"
  LATCHKEY_TEST_DATABASE_URL     postgres URL used to create a fresh database per server
                                 (only with LATCHKEY_E2E_BACKEND=postgres; uses node/pgdb.mjs)
  LATCHKEY_E2E_READY_TIMEOUT_MS  how long to wait for /readyz (default 20000)
  LATCHKEY_E2E_KEEP=1            keep the temp dir (DB + server log) after stop
"""

from __future__ import annotations

import base64
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest

# okta refuses plain-http org URLs unless this is set; it reads it when a client is built.
os.environ.setdefault("OKTA_TESTING_TESTINGDISABLEHTTPSCHECK", "true")

from okta.client import Client as OktaClient  # noqa: E402

E2E_DIR = Path(__file__).resolve().parent.parent


def binary_path() -> Path:
    env = os.environ.get("LATCHKEY_BIN")
    return Path(env).resolve() if env else (E2E_DIR.parent / "target" / "debug" / "latchkey")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    org_url: str
    token: str
    database_url: str
    dir: Path
    proc: subprocess.Popen
    log_path: Path
    _drop: object = None
    stop_result: dict = field(default_factory=dict)

    def output(self, limit: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-limit:]
        except OSError:
            return ""

    def stop(self, grace: float = 10.0) -> dict:
        if self.stop_result:
            return self.stop_result
        if self.proc.poll() is not None:
            result = {"code": self.proc.returncode, "clean": False, "note": "already exited"}
        else:
            self.proc.send_signal(signal.SIGTERM)
            try:
                code = self.proc.wait(timeout=grace)
                result = {"code": code, "clean": code == 0}
            except subprocess.TimeoutExpired:
                self.proc.kill()
                result = {"code": self.proc.wait(), "clean": False, "note": f"did not exit within {grace}s of SIGTERM"}
        result["output"] = self.output()
        if self._drop:
            try:
                self._drop()
            except Exception:  # noqa: BLE001 - best effort cleanup
                pass
        if not os.environ.get("LATCHKEY_E2E_KEEP"):
            shutil.rmtree(self.dir, ignore_errors=True)
        self.stop_result = result
        return result


def _pg(*args: str) -> str:
    out = subprocess.run(
        ["node", str(E2E_DIR / "node" / "pgdb.mjs"), *args],
        check=True, capture_output=True, text=True, timeout=30,
    )
    return out.stdout.strip()


def _wait_ready(base_url: str, proc: subprocess.Popen, log_path: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last = "no attempt"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"latchkey serve exited before ready (code={proc.returncode})\n"
                f"--- server output ---\n{log_path.read_text(errors='replace')[-4000:]}"
            )
        try:
            with urllib.request.urlopen(f"{base_url}/readyz", timeout=1) as r:
                if r.status == 200:
                    return
                last = f"HTTP {r.status}"
        except urllib.error.HTTPError as e:
            last = f"HTTP {e.code}"
        except (urllib.error.URLError, OSError) as e:
            last = str(e)
        time.sleep(0.1)
    raise RuntimeError(
        f"latchkey did not answer 200 on /readyz within {timeout}s (last: {last})\n"
        f"--- server output ---\n{log_path.read_text(errors='replace')[-4000:]}"
    )


def start_server(token_name: str = "e2e-python", env: dict | None = None) -> Server:
    """Starts a server; `env` adds environment variables for the server process (e.g. rate limits)."""
    binary = binary_path()
    if not binary.exists():
        raise RuntimeError(
            f"latchkey binary not found at {binary}; build it with `cargo build -p latchkey` or set LATCHKEY_BIN"
        )
    ready_timeout = float(os.environ.get("LATCHKEY_E2E_READY_TIMEOUT_MS", "20000")) / 1000
    tmp = Path(tempfile.mkdtemp(prefix="latchkey-e2e-py-"))
    log_path = tmp / "server.log"

    backend = os.environ.get("LATCHKEY_E2E_BACKEND", "sqlite").lower()
    drop = None
    server_env = {**os.environ, "RUST_BACKTRACE": "1", **(env or {})}
    if backend == "postgres":
        # PostgreSQL deployments must be given the master key (SQLite ones create a key file).
        server_env.setdefault("LATCHKEY_MASTER_KEY", base64.b64encode(os.urandom(32)).decode())
        base = os.environ.get("LATCHKEY_TEST_DATABASE_URL")
        if not base:
            raise RuntimeError("LATCHKEY_E2E_BACKEND=postgres needs LATCHKEY_TEST_DATABASE_URL")
        database_url = _pg("create", base)
        drop = lambda: _pg("drop", base, database_url)  # noqa: E731
    elif backend == "sqlite":
        database_url = f"sqlite://{tmp / 'latchkey.db'}"
    else:
        raise RuntimeError(f"unknown LATCHKEY_E2E_BACKEND={backend}")

    proc = None
    try:
        # A probed free port can be taken before the server binds it: retry a few times.
        for attempt in range(1, 4):
            port = free_port()
            base_url = f"http://127.0.0.1:{port}"
            with open(log_path, "ab") as log:
                proc = subprocess.Popen(
                    [str(binary), "serve", "--listen", f"127.0.0.1:{port}",
                     "--public-url", base_url, "--database-url", database_url],
                    stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                    env=server_env,
                )
            try:
                _wait_ready(base_url, proc, log_path, ready_timeout)
                break
            except RuntimeError:
                if proc.poll() is None:
                    proc.kill()
                proc.wait()
                text = log_path.read_text(errors="replace")
                if attempt >= 3 or ("in use" not in text.lower() and "addrinuse" not in text.lower()):
                    raise

        out = subprocess.run(
            [str(binary), "token", "create", "--name", token_name, "--database-url", database_url],
            capture_output=True, text=True, timeout=20, env=server_env,
        )
        if out.returncode != 0:
            raise RuntimeError(f"latchkey token create failed ({out.returncode}): {out.stdout}\n{out.stderr}")
        lines = [line.strip() for line in out.stdout.splitlines() if line.strip()]
        if len(lines) != 1:
            raise RuntimeError(f"`latchkey token create` should print exactly one line, got {out.stdout!r}")
        return Server(org_url=base_url, token=lines[0], database_url=database_url,
                      dir=tmp, proc=proc, log_path=log_path, _drop=drop)
    except BaseException:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        if drop:
            try:
                drop()
            except Exception:  # noqa: BLE001
                pass
        if not os.environ.get("LATCHKEY_E2E_KEEP"):
            shutil.rmtree(tmp, ignore_errors=True)
        raise


@pytest.fixture(scope="module")
def server():
    srv = start_server()
    yield srv
    result = srv.stop()
    assert result["clean"], (
        f"server did not stop cleanly on SIGTERM: code={result['code']} {result.get('note', '')}\n"
        f"{result['output'][-2000:]}"
    )


def make_client(org_url: str, token: str) -> OktaClient:
    return OktaClient({"orgUrl": org_url, "token": token})


@pytest.fixture
async def client(server):
    async with make_client(server.org_url, server.token) as c:
        yield c
