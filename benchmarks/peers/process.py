"""A peer in another Python environment, driven from this one: the benchmarks' side of the peers' protocol.

The optimum peer (``optimum_peer.py``) runs in ``.venv-peers`` because optimum needs transformers < 4.58 while the
toolchain is on 5.x; ``benchmarks/suite.py`` and ``benchmarks/ladder.py`` start it with :class:`PeerProcess` and
send it one JSON object a line, reading one answer a line.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from pathlib import Path
from typing import Any


class PeerError(RuntimeError):
    """A peer process failed, or answered a request with an error."""


class PeerProcess:
    """A peer in another Python environment: a child process that answers one JSON line per request line."""

    def __init__(self, python: Path, script: Path):
        self.stderr = tempfile.TemporaryFile(mode="w+")
        self.proc = subprocess.Popen([str(python), str(script)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.stderr, text=True, bufsize=1)

    def call(self, **request: Any) -> dict[str, Any]:
        try:
            self.proc.stdin.write(json.dumps(request) + "\n")
            self.proc.stdin.flush()
            line = self.proc.stdout.readline()
        except (BrokenPipeError, OSError) as e:
            raise PeerError(f"{request.get('cmd')}: {e}; {self._stderr_tail()}") from e
        if not line:
            raise PeerError(f"{request.get('cmd')}: the peer exited ({self.proc.poll()}); {self._stderr_tail()}")
        reply = json.loads(line)
        if not reply.get("ok"):
            raise PeerError(f"{request.get('cmd')}: {reply.get('error')}")
        return reply

    def _stderr_tail(self, n: int = 1500) -> str:
        self.stderr.flush()
        self.stderr.seek(0)
        text = self.stderr.read().strip()
        return f"its stderr ends: {text[-n:]}" if text else "it wrote nothing to stderr"

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write(json.dumps({"cmd": "quit"}) + "\n")
                self.proc.stdin.close()
                self.proc.wait(timeout=30)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        self.stderr.close()
