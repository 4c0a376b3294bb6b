"""Starts the real binaries (stub-vllm, dev-attestation-agent, vllm-proxy) once per session.

Binaries come from $VLLM_PROXY_BIN_DIR, else from `swift build --show-bin-path` in the repository root.
Every wait is bounded; every process and temp file is removed at the end, also when a test fails
(INTEROP_KEEP_TMP=1 keeps the temp dir with the processes' logs for a post-mortem).
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import re
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

REPO_ROOT = Path(__file__).resolve().parent.parent
STARTUP_DEADLINE = 60.0  # seconds; a binary that is not up by then fails the session
TIMEOUT = (5, 60)  # requests' (connect, read) timeout for every call


# ---------------------------------------------------------------- binaries and processes


def bin_dir() -> Path:
    given = os.environ.get("VLLM_PROXY_BIN_DIR")
    if given:
        return Path(given)
    out = subprocess.run(
        ["swift", "build", "--show-bin-path"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, check=True
    )
    return Path(out.stdout.strip())


LISTENING = re.compile(rb"Server started and listening on 127\.0\.0\.1:(\d+)")
_RESERVED: list[socket.socket] = []


def free_port() -> int:
    """A port that was free a moment ago (released again: another process may take it before you bind it).
    Prefer letting a binary bind port 0 and reading the port from its log, as `Process.listening_port` does."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def refusing_port() -> int:
    """A local port that refuses connections for the whole session: bound (so no other process on this shared
    machine can take it) but never listening. For "upstream unreachable" cases."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    _RESERVED.append(s)
    return s.getsockname()[1]


class Process:
    """A child process whose stdout/stderr go to files in the session's temp dir."""

    def __init__(self, name: str, argv: list[str], tmp: Path, env: dict[str, str] | None = None):
        self.name = name
        self.stdout_path = tmp / f"{name}.stdout.log"
        self.stderr_path = tmp / f"{name}.stderr.log"
        binary = Path(argv[0])
        if not binary.is_file():
            raise RuntimeError(f"{binary} not found: build first (swift build) or set VLLM_PROXY_BIN_DIR")
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.popen = subprocess.Popen(argv, stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=env)

    def log_tail(self, n: int = 4000) -> str:
        text = ""
        for path in (self.stdout_path, self.stderr_path):
            if path.exists():
                text += f"--- {path.name}\n" + path.read_text(errors="replace")[-n:]
        return text

    def listening_port(self) -> int:
        """The port this binary picked for port 0, from its "Server started and listening on" stderr line
        (stderr is unbuffered; stub-vllm's stdout line is block-buffered when stdout is a file)."""
        found: list[int] = []

        def bound() -> bool:
            match = LISTENING.search(self.stderr_path.read_bytes())
            if match:
                found.append(int(match.group(1)))
            return bool(match)

        self.wait_until(bound, "a 'Server started and listening on' line")
        return found[0]

    def wait_until(self, ready, what: str) -> None:
        deadline = time.monotonic() + STARTUP_DEADLINE
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.popen.returncode} before {what}\n{self.log_tail()}")
            try:
                if ready():
                    return
            except (OSError, requests.RequestException):
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{self.name}: no {what} within {STARTUP_DEADLINE}s\n{self.log_tail()}")

    def stop(self, grace: float = 10.0) -> None:
        stop_all([self], grace)

    def wait_or_kill(self, deadline: float) -> None:
        """After terminate(): waits until the deadline, then kills (the stub keeps a stalled stream open)."""
        try:
            self.popen.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            print(f"\ninterop: {self.name} still running after SIGTERM; killing it")
            self.popen.kill()
            self.popen.wait(timeout=10)


def stop_all(processes: list[Process], grace: float = 5.0) -> None:
    for process in processes:
        if process.popen.poll() is None:
            process.popen.terminate()
    deadline = time.monotonic() + grace
    for process in processes:
        process.wait_or_kill(deadline)


def http_ok(url: str) -> bool:
    return requests.get(url, timeout=(1, 2)).status_code == 200


def unix_socket_accepts(path: Path) -> bool:
    if not path.exists():
        return False
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(1)
        s.connect(str(path))
    return True


def make_token() -> str:
    """A bearer token from letters that never occur in hex, so no hash or id in a log can match part of it."""
    alphabet = "ghijklmnopqrstuvwxyzGHIJKLMNOPQRSTUVWXYZ"
    return "tok-" + "".join(secrets.choice(alphabet) for _ in range(40))


def make_certificate(common_name: str, issuer=None) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A P-256 certificate, self-signed unless issuer = (issuer certificate, issuer key) is given."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    issuer_cert, issuer_key = issuer if issuer else (None, key)
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer_cert.subject if issuer_cert else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(common_name)]), critical=False)
        .sign(issuer_key, hashes.SHA256())
    )
    return cert, key


def pem(item) -> bytes:
    if isinstance(item, x509.Certificate):
        return item.public_bytes(serialization.Encoding.PEM)
    return item.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def write_self_signed_cert(directory: Path) -> tuple[Path, Path]:
    cert, key = make_certificate("vllm-proxy-interop.test")
    cert_path, key_path = directory / "tls-cert.pem", directory / "tls-key.pem"
    cert_path.write_bytes(pem(cert))
    key_path.write_bytes(pem(key))
    return cert_path, key_path


# ---------------------------------------------------------------- clients


class ProxyClient:
    """HTTP client for one proxy instance; remembers every response so a last test can search them for the token."""

    def __init__(self, base_url: str, token: str, process: Process, seen: list[bytes]):
        self.base_url = base_url
        self.token = token
        self.process = process
        self.seen = seen
        self.session = requests.Session()

    @property
    def log_path(self) -> Path:
        return self.process.stderr_path

    def auth(self, token: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token if token is None else token}"}

    def _remember(self, r: requests.Response, body: bytes) -> None:
        header_text = "\n".join(f"{k}: {v}" for k, v in r.headers.items())
        self.seen.append(header_text.encode() + b"\n\n" + body)

    def request(self, method: str, path: str, *, auth: bool = True, headers=None, **kwargs) -> requests.Response:
        all_headers = {**(self.auth() if auth else {}), **(headers or {})}
        r = self.session.request(method, self.base_url + path, headers=all_headers, timeout=TIMEOUT, **kwargs)
        self._remember(r, r.content)
        return r

    def get(self, path: str, **kwargs) -> requests.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, data: bytes, **kwargs) -> requests.Response:
        headers = {"Content-Type": "application/json", **kwargs.pop("headers", {})}
        return self.request("POST", path, data=data, headers=headers, **kwargs)

    def post_stream(self, path: str, data: bytes, headers=None) -> tuple[requests.Response, bytes]:
        """POSTs and returns every byte of the (event-stream) body exactly as it arrived."""
        all_headers = {**self.auth(), "Content-Type": "application/json", **(headers or {})}
        with self.session.post(
            self.base_url + path, data=data, headers=all_headers, timeout=TIMEOUT, stream=True
        ) as r:
            body = b"".join(r.iter_content(None))
        self._remember(r, body)
        return r, body

    def signature(self, chat_id: str, algo: str | None = None) -> requests.Response:
        params = {} if algo is None else {"signing_algo": algo}
        return self.get(f"/v1/signature/{chat_id}", params=params)


class StubClient:
    def __init__(self, base_url: str):
        self.base_url = base_url

    def reset(self) -> None:
        requests.post(self.base_url + "/stub/reset", timeout=TIMEOUT).raise_for_status()

    def requests(self) -> list[dict]:
        r = requests.get(self.base_url + "/stub/requests", timeout=TIMEOUT)
        r.raise_for_status()
        return r.json()

    def post(self, path: str, data: bytes) -> bytes:
        """The stub's own answer to these exact bytes (for byte-for-byte comparison with the proxy's relay)."""
        with requests.post(
            self.base_url + path, data=data, headers={"Content-Type": "application/json"}, timeout=TIMEOUT,
            stream=True,
        ) as r:
            return b"".join(r.iter_content(None))


# ---------------------------------------------------------------- fixtures


@dataclasses.dataclass
class Stack:
    tmp: Path
    bins: Path
    token: str
    stub_url: str
    agent_socket: Path
    cert_path: Path
    processes: list[Process]
    seen: list[bytes]
    proxies: dict[str, ProxyClient]

    def start_proxy(self, name: str, **extra_env: str) -> ProxyClient:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "TOKEN": self.token,
            "MODEL_NAME": "interop-model",
            "HOST": "127.0.0.1",
            "PORT": "0",  # the proxy picks a free port and logs it; no race with other suites on this machine
            "VLLM_BASE_URL": self.stub_url,
            "DSTACK_SIMULATOR_ENDPOINT": str(self.agent_socket),
            "GPU_NO_HW_MODE": "1",
            "TLS_CERT_PATH": str(self.cert_path),
            "LOG_LEVEL": "trace",
            "METRICS_POLL_INTERVAL_SECONDS": "0.5",
            **extra_env,
        }
        process = Process(name, [str(self.bins / "vllm-proxy")], self.tmp, env=env)
        self.processes.append(process)
        base_url = f"http://127.0.0.1:{process.listening_port()}"
        process.wait_until(lambda: http_ok(base_url + "/"), f"GET {base_url}/ answering 200")
        client = ProxyClient(base_url, self.token, process, self.seen)
        self.proxies[name] = client
        return client


@pytest.fixture(scope="session")
def stack():
    tmp = Path(tempfile.mkdtemp(prefix="vllm-proxy-interop-"))
    processes: list[Process] = []
    try:
        bins = bin_dir()
        stub = Process("stub-vllm", [str(bins / "stub-vllm"), "--host", "127.0.0.1", "--port", "0"], tmp)
        processes.append(stub)
        stub_url = f"http://127.0.0.1:{stub.listening_port()}"
        stub.wait_until(lambda: http_ok(stub_url + "/v1/models"), "stub answering /v1/models")

        agent_socket = tmp / "dstack.sock"
        agent = Process("dev-attestation-agent", [str(bins / "dev-attestation-agent"), "--socket", str(agent_socket)], tmp)
        processes.append(agent)
        agent.wait_until(lambda: unix_socket_accepts(agent_socket), f"unix socket {agent_socket}")

        cert_path, _ = write_self_signed_cert(tmp)
        s = Stack(tmp, bins, make_token(), stub_url, agent_socket, cert_path, processes, [], {})
        _STACKS.append(s)
        s.start_proxy("vllm-proxy")
        yield s
    finally:
        stop_all(processes)
        while _RESERVED:
            _RESERVED.pop().close()
        if os.environ.get("INTEROP_KEEP_TMP"):
            print(f"\ninterop: logs and certificate kept in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="session")
def proxy(stack) -> ProxyClient:
    return stack.proxies["vllm-proxy"]


@pytest.fixture(scope="session")
def small_proxy(stack) -> ProxyClient:
    """A second instance with a 1 KiB body limit, for the 413 path."""
    return stack.proxies.get("small-body-proxy") or stack.start_proxy("small-body-proxy", MAX_BODY_BYTES="1024")


@pytest.fixture
def stub(stack) -> StubClient:
    client = StubClient(stack.stub_url)
    client.reset()
    return client


_STACKS: list[Stack] = []


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """On a failure, say which binaries are still alive and show the last lines of what each one logged."""
    outcome = yield
    report = outcome.get_result()
    if report.failed and _STACKS:
        lines = []
        for process in _STACKS[-1].processes:
            code = process.popen.poll()
            lines.append(f"{process.name}: {'running' if code is None else f'EXITED with {code}'}")
            for path in (process.stdout_path, process.stderr_path):
                if path.exists():
                    tail = path.read_text(errors="replace").splitlines()[-8:]
                    lines += [f"  {path.name}: {line[:300]}" for line in tail]
        report.sections.append(("interop processes", "\n".join(lines)))
