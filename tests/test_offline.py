"""No Inkstone process reaches past loopback: chat (int8 default and ``--quantize 4bit``), ``kb ingest/query`` (a
text file and an image read by OCR), ``train`` and ``serve`` each run in a fresh process with none of the Hugging
Face offline variables set (as the README runs them), and each works while nothing tries to connect.

Every child gets the network guard of ``tests/netguard`` (a ``sitecustomize`` that refuses and records any
non-loopback ``connect`` and any lookup of a non-local name, and records an import of the hub ``kernels``
package). Where the tools exist, the child also runs in a fresh network namespace with only loopback
(``unshare -n``), so a connection from native code fails too, and under ``strace`` watching every ``connect``
system call, so it is seen. ``serve`` runs outside the namespace, since the test is its client over loopback.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from core import offline
from tests.ocr_pages import render

REPO = Path(__file__).resolve().parents[1]
GUARD = Path(__file__).resolve().parent / "netguard"
pytestmark = pytest.mark.slow
MODEL = "smollm2-135m"
ENV_SET_BY_INKSTONE = {*offline.OFFLINE, *offline.NO_TELEMETRY, *offline.NO_GRADIO_FETCH, *offline.NO_HUB_KERNELS,
                       *offline.QUIET, "HF_HUB_DISABLE_TELEMETRY", "INKSTONE_ONLINE", "INKSTONE_VERBOSE"}  # fmt: skip
STRACE_INET = re.compile(
    r'connect\(\d+, \{sa_family=AF_INET6?, [^}]*?(?:inet_addr|inet_pton)\((?:AF_INET6, )?"([^"]+)"')


def _namespace_works() -> bool:
    if not (shutil.which("unshare") and shutil.which("ip")):
        return False
    probe = subprocess.run(["unshare", "-n", "ip", "link", "set", "lo", "up"], capture_output=True, check=False)
    return probe.returncode == 0


NAMESPACE = _namespace_works()
STRACE_FLAGS = ["-f", "-qq", "--seccomp-bpf", "-e", "trace=connect"]  # only connect() stops the traced process
STRACE = shutil.which("strace") is not None and subprocess.run(
    ["strace", *STRACE_FLAGS, "-o", os.devnull, "true"], capture_output=True, check=False
).returncode == 0


class Child:
    """Runs ``python -m core ...`` as a user would, guarded; ``attempts()`` lists what tried to leave loopback."""

    def __init__(self, home: Path, work: Path, name: str) -> None:
        self.home, self.name = home, name
        self.guard_log = work / f"{name}.guard"
        self.strace_log = work / f"{name}.strace"
        self.env = {k: v for k, v in os.environ.items() if k not in ENV_SET_BY_INKSTONE}
        path = os.pathsep.join(filter(None, [str(GUARD), os.environ.get("PYTHONPATH")]))
        self.env.update(INKSTONE_HOME=str(home), INKSTONE_CONFIG=str(home / "none.toml"),
                        INKSTONE_NETGUARD_LOG=str(self.guard_log), PYTHONPATH=path)  # fmt: skip

    def command(self, args: list[str], isolate: bool = True) -> list[str]:
        cmd = [sys.executable, "-m", "core", *args]
        if STRACE:
            cmd = ["strace", *STRACE_FLAGS, "-o", str(self.strace_log), *cmd]
        if NAMESPACE and isolate:
            cmd = ["unshare", "-n", "sh", "-c", 'ip link set lo up && exec "$@"', "sh", *cmd]
        return cmd

    def run(self, *args: str, timeout: int = 600) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.command(list(args)), cwd=REPO, env=self.env, capture_output=True, text=True,
                              timeout=timeout, check=False)  # fmt: skip

    def attempts(self) -> list[str]:
        seen = self.guard_log.read_text(encoding="utf-8").splitlines() if self.guard_log.exists() else []
        if self.strace_log.exists():
            for line in self.strace_log.read_text(encoding="utf-8", errors="replace").splitlines():
                match = STRACE_INET.search(line)
                if match and not offline_address(match.group(1)):
                    seen.append(f"syscall {line.strip()}")
        return seen


def offline_address(address: str) -> bool:
    """True for loopback and the unspecified address (what a local server binds)."""
    import ipaddress

    ip = ipaddress.ip_address(address)
    return ip.is_loopback or ip.is_unspecified or (ip.version == 6 and ip.ipv4_mapped is not None
                                                     and ip.ipv4_mapped.is_loopback)  # fmt: skip


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory, smollm2_cached: Callable[..., None]) -> tuple[Path, Path]:
    """One data dir for the module, holding the bundled model converted (int8 and float), and a folder for logs."""
    home = tmp_path_factory.mktemp("offline-home")
    smollm2_cached(home, "int8", "float")
    return home, tmp_path_factory.mktemp("offline-logs")


def test_the_guard_sees_and_refuses_a_connection(shared: tuple[Path, Path]) -> None:
    """The check itself can fail: a child that reaches for a public address is refused and recorded."""
    home, logs = shared
    child = Child(home, logs, "probe")
    code = "import socket\ntry:\n    socket.create_connection(('93.184.215.14', 443), timeout=5)\nexcept OSError:\n" \
           "    print('refused')\n"  # fmt: skip
    cmd = child.command(["x"])
    cmd[cmd.index("-m"):] = ["-c", code]  # same wrappers, a plain Python child
    done = subprocess.run(cmd, cwd=REPO, env=child.env, capture_output=True, text=True, timeout=60, check=False)
    assert done.stdout.strip() == "refused", done.stderr
    assert any("93.184.215.14" in line for line in child.attempts())


def test_chat_with_the_default_cpu_weights_stays_offline(shared: tuple[Path, Path]) -> None:
    child = Child(*shared, "chat")
    done = child.run("chat", "--model", MODEL, "--temperature", "0", "--max-new-tokens", "12", "--json",
                     "What is the capital of France?")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1])["reply"].strip()
    assert child.attempts() == []


def test_chat_on_the_llama_cpp_engine_stays_offline(shared: tuple[Path, Path]) -> None:
    """The user's default where set-up built llama.cpp: the CLI and its llama-server child reach only loopback."""
    from core.llamacpp.build import find_binary

    if find_binary() is None:
        pytest.skip("llama.cpp is not built here")
    child = Child(*shared, "chat-llamacpp")
    child.env["INKSTONE_ENGINE"] = "auto"
    done = child.run("chat", "--model", MODEL, "--temperature", "0", "--max-new-tokens", "12", "--json",
                     "What is the capital of France?")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1])["reply"].strip()
    assert child.attempts() == []
    assert (shared[0] / "cache" / "llamacpp" / "logs" / f"{MODEL}.log").is_file()  # it ran on llama.cpp


def test_chat_with_bitsandbytes_4bit_on_cpu_stays_offline_and_loads_no_hub_kernel(shared: tuple[Path, Path]) -> None:
    child = Child(*shared, "chat4bit")
    done = child.run("chat", "--model", MODEL, "--quantize", "4bit", "--temperature", "0", "--max-new-tokens", "8",
                     "--json", "Hi")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1])["reply"].strip()
    assert child.attempts() == []
    assert "kernels-community" not in done.stderr and "Failed to load" not in done.stderr, done.stderr


def test_knowledge_base_ingest_and_query_stay_offline(shared: tuple[Path, Path], tmp_path: Path) -> None:
    home, logs = shared
    doc = tmp_path / "lighthouse.txt"
    doc.write_text("The Pellworm lighthouse was first lit in 1907 and stands 38 metres tall.\n", encoding="utf-8")
    scan = tmp_path / "ferry.png"  # read by OCR: the engine's models come from its wheel, never from the network
    render(["The ferry to Hooge leaves at nine every morning."], seed=5).save(scan)
    ingest = Child(home, logs, "kb-ingest")
    done = ingest.run("kb", "ingest", "--kb", "notes", str(doc), str(scan))
    assert done.returncode == 0, done.stderr
    assert "ferry.png: added" in done.stderr and "read by OCR" in done.stderr, done.stderr
    query = Child(home, logs, "kb-query")
    done = query.run("kb", "query", "--kb", "notes", "When was the lighthouse first lit?")
    assert done.returncode == 0, done.stderr
    assert "lighthouse.txt" in done.stdout
    done = query.run("kb", "query", "--kb", "notes", "When does the ferry to Hooge leave?")
    assert done.returncode == 0 and "ferry.png (OCR)" in done.stdout, done.stdout + done.stderr
    assert ingest.attempts() == [] and query.attempts() == []


def test_training_a_persona_stays_offline(shared: tuple[Path, Path], tmp_path: Path) -> None:
    home, logs = shared
    data = tmp_path / "quill.json"
    data.write_text(json.dumps([{"instruction": f"Say hello number {i}.", "output": f"Ahoy {i} from Quill."}
                                for i in range(6)]), encoding="utf-8")  # fmt: skip
    adapters = tmp_path / "adapters"
    child = Child(home, logs, "train")
    done = child.run("train", "--base", MODEL, "--data", str(data), "--persona", "quill", "--steps", "2",
                     "--adapters", str(adapters))  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert (adapters / "quill" / "adapter_model.safetensors").is_file()
    assert child.attempts() == []


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_serve_answers_over_loopback_and_stays_offline(shared: tuple[Path, Path]) -> None:
    child = Child(*shared, "serve")
    port = _free_port()
    command = child.command(["serve", "--model", MODEL, "--port", str(port)], isolate=False)
    server = subprocess.Popen(command, cwd=REPO, env=child.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, start_new_session=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 300
        while True:
            assert server.poll() is None, server.stdout.read() if server.stdout else "serve exited"
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, "serve did not come up in 300 s"
            time.sleep(1)
        body = json.dumps({"model": MODEL, "max_tokens": 8, "temperature": 0,
                           "messages": [{"role": "user", "content": "Hi"}]}).encode()  # fmt: skip
        request = urllib.request.Request(f"http://127.0.0.1:{port}/v1/chat/completions", data=body,
                                         headers={"Content-Type": "application/json"})  # fmt: skip
        with urllib.request.urlopen(request, timeout=120) as r:
            answer = json.loads(r.read())
        assert answer["choices"][0]["message"]["content"].strip()
    finally:
        os.killpg(server.pid, signal.SIGINT)  # Ctrl-C, to strace and the server alike
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=60)
    assert child.attempts() == []


def test_serve_with_the_gradio_page_stays_offline(tmp_path: Path) -> None:
    """``serve --ui gradio``: Gradio is imported, the page is built and mounted, its page, config and theme are
    fetched and one answer streams through its queue; no analytics, version check, font or frpc fetch leaves."""
    home = tmp_path / "home"
    child = Child(home, tmp_path, "serve-gradio")
    port = _free_port()
    command = child.command(["serve", "--ui", "gradio", "--model", "fake", "--port", str(port)], isolate=False)
    server = subprocess.Popen(command, cwd=REPO, env=child.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, start_new_session=True)  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert server.poll() is None, server.stdout.read() if server.stdout else "serve exited"
            try:
                with urllib.request.urlopen(f"{base}/health", timeout=5) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, "serve --ui gradio did not come up in 120 s"
            time.sleep(0.5)
        with urllib.request.urlopen(f"{base}/", timeout=30) as r:
            page = r.read().decode()
        assert "Inkstone" in page and "fonts.googleapis" not in page
        with urllib.request.urlopen(f"{base}/config", timeout=30) as r:
            config = json.loads(r.read())
        assert not config.get("is_space") and config.get("title") == "Inkstone"
        with urllib.request.urlopen(f"{base}/theme.css", timeout=30) as r:
            assert "fonts.googleapis" not in r.read().decode()
        from gradio_client import Client  # the test's own process is not guarded; the server is

        client = Client(base, verbose=False, download_files=False)
        reply = client.predict("hello offline", None, "", False, [], "", 0.7, 0.9, 64, 1.0, api_name="/send")
        assert "You said: hello offline" in json.dumps(reply, ensure_ascii=False)
        time.sleep(2)  # time for any background thread (Gradio's version check) to have tried
    finally:
        os.killpg(server.pid, signal.SIGINT)
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=60)
    assert child.attempts() == []
