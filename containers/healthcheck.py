"""HEALTHCHECK of Clipper's images (standard library only; copied into every image).

`healthcheck.py frontend`: the query API answers GET /healthz ($CLIPPER_QUERY_PORT, default 1337).
`healthcheck.py replica`: a process of this container holds an established TCP connection to the
frontend's RPC port ($CLIPPER_RPC_PORT; any port when unset), i.e. the replica is connected.
"""

import os
import sys
import urllib.request

ESTABLISHED = "01"


def frontend_healthy() -> bool:
    port = int(os.environ.get("CLIPPER_QUERY_PORT", "1337"))
    host = os.environ.get("CLIPPER_HEALTH_HOST", "127.0.0.1")
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(f"http://{host}:{port}/healthz", timeout=2.0) as response:
            return 200 <= response.status < 300
    except OSError:
        return False


def _socket_inodes() -> set[str]:
    """Inodes of the sockets held by the processes this container can see (its own pid namespace)."""
    inodes = set()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
        except OSError:
            continue
    return inodes


def replica_healthy() -> bool:
    wanted_port = os.environ.get("CLIPPER_RPC_PORT")
    inodes = _socket_inodes()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table, encoding="ascii") as rows:
                next(rows)
                for row in rows:
                    fields = row.split()
                    remote_port = int(fields[2].rsplit(":", 1)[1], 16)
                    if fields[3] != ESTABLISHED or fields[9] not in inodes:
                        continue
                    if wanted_port is None or remote_port == int(wanted_port):
                        return True
        except OSError:
            continue
    return False


if __name__ == "__main__":
    role = sys.argv[1] if len(sys.argv) > 1 else ""
    checks = {"frontend": frontend_healthy, "replica": replica_healthy}
    if role not in checks:
        sys.exit("usage: healthcheck.py frontend|replica")
    sys.exit(0 if checks[role]() else 1)
