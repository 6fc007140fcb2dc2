"""Who is at the other end of a Unix socket, as the kernel saw it at connect().

SO_PEERCRED cannot be forged by the peer, unlike anything it could send. Both
ends use it: the agent serves only its own uid, and the client talks only to an
agent of its own uid, so a process that replaced the socket file in a shared
directory gets nothing and gives nothing.
"""

from __future__ import annotations

import socket
import struct
from typing import NamedTuple

_UCRED = struct.Struct("iII")  # struct ucred { pid_t pid; uid_t uid; gid_t gid; }


class PeerCredentials(NamedTuple):
    pid: int
    uid: int
    gid: int


def peer_credentials(sock: socket.socket) -> PeerCredentials:
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
    return PeerCredentials(*_UCRED.unpack(raw))
