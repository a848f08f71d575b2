"""A minimal Redis client (RESP over a socket), enough for the counter: no dependency needed."""

from __future__ import annotations

import socket


class RedisError(Exception):
    """Redis answered with an error or could not be reached."""


class Redis:
    """One connection to a Redis server; commands are sent one at a time."""

    def __init__(self, host: str = "localhost", port: int = 6379, timeout: float = 5.0) -> None:
        self.host, self.port, self.timeout = host, port, timeout
        self._sock: socket.socket | None = None
        self._buffer = b""

    def _connect(self) -> socket.socket:
        if self._sock is None:
            try:
                self._sock = socket.create_connection((self.host, self.port), self.timeout)
            except OSError as exc:
                raise RedisError(f"cannot reach redis at {self.host}:{self.port}: {exc}") from exc
        return self._sock

    def close(self) -> None:
        """Close the connection."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def command(self, *args: str | int) -> object:
        """Send one command and return its decoded reply."""
        parts = [f"*{len(args)}\r\n".encode()]
        for arg in args:
            data = str(arg).encode()
            parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
        self._connect().sendall(b"".join(parts))
        return self._reply()

    def _line(self) -> bytes:
        while b"\r\n" not in self._buffer:
            chunk = self._connect().recv(4096)
            if not chunk:
                raise RedisError("redis closed the connection")
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\r\n")
        return line

    def _exactly(self, size: int) -> bytes:
        while len(self._buffer) < size + 2:
            chunk = self._connect().recv(4096)
            if not chunk:
                raise RedisError("redis closed the connection")
            self._buffer += chunk
        data, self._buffer = self._buffer[:size], self._buffer[size + 2 :]
        return data

    def _reply(self) -> object:
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise RedisError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            size = int(rest)
            return None if size < 0 else self._exactly(size).decode()
        if kind == b"*":
            count = int(rest)
            return None if count < 0 else [self._reply() for _ in range(count)]
        raise RedisError(f"unexpected reply {line!r}")

    def ping(self) -> bool:
        """True when the server answers PING."""
        return self.command("PING") == "PONG"

    def incr(self, key: str) -> int:
        """Increment `key` and return the new value."""
        value = self.command("INCR", key)
        assert isinstance(value, int)
        return value
