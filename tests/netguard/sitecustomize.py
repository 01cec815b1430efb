"""Network guard for a child process of the offline test: every connection that leaves loopback is refused.

Python imports ``sitecustomize`` at start-up from ``PYTHONPATH``; the offline test puts this folder there. Each
attempt (a ``connect`` to a non-loopback address, or a name lookup of a non-local host) is appended to the file
named by ``INKSTONE_NETGUARD_LOG`` and fails with ``OSError`` as on a machine with no network. At exit the log
also says if the ``kernels`` package (hub kernels) was imported.
"""

from __future__ import annotations

import atexit
import ipaddress
import os
import socket
import sys
import traceback

LOG = os.environ.get("INKSTONE_NETGUARD_LOG")
LOCAL_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback", ""}


def _note(line: str) -> None:
    where = "".join(traceback.format_stack(limit=8)[:-2]).replace("\n", " | ")
    with open(LOG, "a", encoding="utf-8") as f:  # type: ignore[arg-type]
        f.write(f"{os.getpid()} {line} :: {where}\n")


def _is_local(host: object) -> bool:
    if host is None:
        return True
    text = host.decode() if isinstance(host, bytes) else str(host)
    text = text.strip("[]").split("%")[0]
    if text.lower() in LOCAL_NAMES:
        return True
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return False
    return address.is_loopback or address.is_unspecified


def _install() -> None:
    real_connect, real_connect_ex = socket.socket.connect, socket.socket.connect_ex
    real_getaddrinfo = socket.getaddrinfo

    def refused(self: socket.socket, address: object) -> bool:
        if self.family in (socket.AF_INET, socket.AF_INET6) and not _is_local(address[0]):  # type: ignore[index]
            _note(f"connect {address!r}")
            return True
        return False

    def connect(self: socket.socket, address: object) -> None:
        if refused(self, address):
            raise OSError(101, "Network is unreachable (blocked by the offline test)")
        return real_connect(self, address)

    def connect_ex(self: socket.socket, address: object) -> int:
        return 101 if refused(self, address) else real_connect_ex(self, address)

    def getaddrinfo(host: object, *args: object, **kwargs: object) -> list:
        if not _is_local(host):
            _note(f"lookup {host!r}")
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known (blocked by the offline test)")
        return real_getaddrinfo(host, *args, **kwargs)

    socket.socket.connect = connect  # type: ignore[method-assign]
    socket.socket.connect_ex = connect_ex  # type: ignore[method-assign]
    socket.getaddrinfo = getaddrinfo  # type: ignore[assignment]


def _kernels_check() -> None:
    module = sys.modules.get("kernels")
    if module is not None:
        _note(f"imported the hub kernels package ({getattr(module, '__file__', '?')})")


if LOG:
    _install()
    atexit.register(_kernels_check)
