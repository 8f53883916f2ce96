"""A raw RFC 6455 client on a plain socket, for what a well-behaved library will not do.

The stream tests use the `websockets` library for ordinary clients; this module is for the rest:
a client that stops reading (with a small receive buffer), frames a library refuses to send
(binary, invalid UTF-8, unmasked, oversized), and reading the exact close frame the broker sent
after a partial event. Traffic goes to 127.0.0.1 only.
"""

import base64
import json
import os
import selectors
import socket
import struct
import time

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


class HandshakeError(Exception):
    def __init__(self, status, headers, body):
        super().__init__("HTTP %d instead of 101: %s" % (status, body[:300]))
        self.status = status
        self.headers = headers
        self.body = body


class Closed(Exception):
    """The server closed the TCP connection (EOF) or reset it."""


def http_exchange(host, port, lines, body=b"", timeout=10.0):
    """Sends one request written out by hand (lines of the head, then body) and reads one
    response. Returns (status, headers as a list of (lowercase name, value), body bytes); the
    body is what Content-Length says, or everything until EOF. Raises TimeoutError when the
    server neither answers nor closes in time, Closed on EOF before a status line."""
    sock = socket.create_connection((host, port), timeout=timeout)
    try:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        deadline = time.monotonic() + timeout
        buf = b""

        def more():
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no complete HTTP response in %.1fs: %r" % (timeout, buf[:300]))
            sock.settimeout(left)
            try:
                return sock.recv(65536)
            except socket.timeout:
                raise TimeoutError("no complete HTTP response in %.1fs: %r" % (timeout, buf[:300]))
            except ConnectionResetError:
                return b""

        while b"\r\n\r\n" not in buf:
            chunk = more()
            if not chunk:
                raise Closed("EOF before a complete HTTP response head: %r" % buf[:300])
            buf += chunk
        head, rest = buf.split(b"\r\n\r\n", 1)
        status_line, *hdr_lines = head.decode("latin-1").split("\r\n")
        headers = []
        for h in hdr_lines:
            k, _, v = h.partition(":")
            headers.append((k.strip().lower(), v.strip()))
        status = int(status_line.split()[1])
        length = [int(v) for k, v in headers if k == "content-length"]
        if status == 101:
            return status, headers, rest
        while (len(rest) < length[0]) if length else True:
            chunk = more()
            if not chunk:
                break
            rest += chunk
        return status, headers, rest
    finally:
        sock.close()


class RawWs:
    """One WebSocket connection. recv_frame() returns (opcode, payload) of each server frame."""

    def __init__(self, host, port, path="/v1/stream", headers=None, rcvbuf=None, timeout=10.0, version="13"):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            # Before connect(), so the window the client announces stays small.
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.sock.connect((host, port))
        self.buf = b""
        self.close_frame = None  # (code, reason) once the server's close frame has been read
        key = base64.b64encode(os.urandom(16)).decode()
        lines = ["GET %s HTTP/1.1" % path, "Host: %s:%d" % (host, port), "Upgrade: websocket",
                 "Connection: Upgrade", "Sec-WebSocket-Key: " + key, "Sec-WebSocket-Version: " + version]
        for k, v in (headers or {}).items():
            lines.append("%s: %s" % (k, v))
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        deadline = time.monotonic() + timeout
        while b"\r\n\r\n" not in self.buf:
            if time.monotonic() > deadline:
                raise TimeoutError("no HTTP response to the upgrade")
            chunk = self.sock.recv(65536)
            if not chunk:
                raise Closed("EOF during the handshake")
            self.buf += chunk
        head, rest = self.buf.split(b"\r\n\r\n", 1)
        self.buf = bytearray(rest)
        self.pos = 0
        status_line, *hdr_lines = head.decode("latin-1").split("\r\n")
        self.status = int(status_line.split()[1])
        self.headers = {}
        for h in hdr_lines:
            k, _, v = h.partition(":")
            self.headers[k.strip().lower()] = v.strip()
        if self.status != 101:
            body = bytes(self.buf)
            n = int(self.headers.get("content-length", "0") or 0)
            while len(body) < n and time.monotonic() < deadline:
                chunk = self.sock.recv(65536)
                if not chunk:
                    break
                body += chunk
            self.sock.close()
            raise HandshakeError(self.status, self.headers, body.decode("utf-8", "replace"))

    # ---- sending -------------------------------------------------------------------------------

    def send_frame(self, opcode, payload=b"", fin=True, mask=True, rsv=0, length_override=None):
        if isinstance(payload, str):
            payload = payload.encode()
        n = len(payload) if length_override is None else length_override
        b0 = (0x80 if fin else 0) | (rsv << 4) | opcode
        m = 0x80 if mask else 0
        if n < 126:
            head = struct.pack("!BB", b0, m | n)
        elif n < 65536:
            head = struct.pack("!BBH", b0, m | 126, n)
        else:
            head = struct.pack("!BBQ", b0, m | 127, n)
        if mask:
            key = os.urandom(4)
            body = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
            head += key
        else:
            body = payload
        self.sock.sendall(head + body)

    def send_text(self, text):
        self.send_frame(OP_TEXT, text.encode() if isinstance(text, str) else text)

    def send_json(self, obj):
        self.send_text(json.dumps(obj))

    # ---- receiving -----------------------------------------------------------------------------

    def _fill(self, need, deadline):
        """Makes sure need bytes past self.pos are buffered."""
        if self.pos and self.pos > 1 << 20:
            del self.buf[:self.pos]
            self.pos = 0
        while len(self.buf) - self.pos < need:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no complete frame in time")
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(262144)
            except socket.timeout:
                raise TimeoutError("no complete frame in time")
            except ConnectionResetError as e:
                raise Closed("connection reset: %s" % e)
            if not chunk:
                raise Closed("EOF")
            self.buf += chunk

    def recv_frame(self, timeout=10.0):
        """The next server frame as (opcode, payload bytes). Raises TimeoutError or Closed."""
        deadline = time.monotonic() + timeout
        self._fill(2, deadline)
        p = self.pos
        b0, b1 = self.buf[p], self.buf[p + 1]
        if b1 & 0x80:
            raise AssertionError("the server sent a masked frame")
        if not b0 & 0x80:
            raise AssertionError("the server sent a fragmented frame (not expected from this broker)")
        n, off = b1 & 0x7F, 2
        if n == 126:
            self._fill(4, deadline)
            n, off = struct.unpack("!H", self.buf[p + 2:p + 4])[0], 4
        elif n == 127:
            self._fill(10, deadline)
            n, off = struct.unpack("!Q", self.buf[p + 2:p + 10])[0], 10
        self._fill(off + n, deadline)
        payload = bytes(self.buf[p + off:p + off + n])
        self.pos = p + off + n
        op = b0 & 0x0F
        if op == OP_CLOSE:
            code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
            self.close_frame = (code, payload[2:].decode("utf-8", "replace"))
        return op, payload

    def recv_message(self, timeout=10.0, answer_pings=True):
        """The next text message as a decoded JSON value; returns None for a close frame."""
        deadline = time.monotonic() + timeout
        while True:
            op, payload = self.recv_frame(max(0.0, deadline - time.monotonic()))
            if op == OP_PING:
                if answer_pings:
                    self.send_frame(OP_PONG, payload)
                continue
            if op == OP_PONG:
                continue
            if op == OP_CLOSE:
                return None
            if op != OP_TEXT:
                raise AssertionError("unexpected opcode %d" % op)
            return json.loads(payload)

    def read_until_close(self, timeout=30.0):
        """Reads every remaining frame until the server's close frame and EOF. Returns the text
        messages (decoded) seen before the close frame; the close frame is in .close_frame."""
        msgs = []
        deadline = time.monotonic() + timeout
        while self.close_frame is None:
            try:
                m = self.recv_message(max(0.0, deadline - time.monotonic()), answer_pings=False)
            except Closed:
                break
            if m is not None:
                msgs.append(m)
        return msgs

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


class HandshakeStorm:
    """n WebSocket handshakes at once on non-blocking sockets, driven by step(); no thread per
    client. Each client's state: "connecting", "waiting" (request sent, no answer yet), "open"
    (101 and no close frame so far), "closed" (101 then a close frame: .code), "refused" (an HTTP
    answer other than 101: .status, .body) or "eof" (the server closed without an answer)."""

    class Client:
        def __init__(self, sock):
            self.sock = sock
            self.state = "connecting"
            self.buf = b""
            self.status = self.code = None
            self.body = b""

    def __init__(self, host, port, n, path="/v1/stream"):
        self.sel = selectors.DefaultSelector()
        self.request = ("GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                        "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n")
        self.host, self.port, self.path = host, port, path
        self.clients = []
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            s.connect_ex((host, port))
            c = self.Client(s)
            self.clients.append(c)
            self.sel.register(s, selectors.EVENT_WRITE, c)

    def count(self, state):
        return sum(1 for c in self.clients if c.state == state)

    def states(self):
        out = {}
        for c in self.clients:
            out[c.state] = out.get(c.state, 0) + 1
        return out

    def _finish(self, c, state):
        c.state = state
        try:
            self.sel.unregister(c.sock)
        except (KeyError, ValueError):
            pass
        c.sock.close()

    def _read(self, c):
        try:
            chunk = c.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            chunk = b""
        was_open = c.state == "open"
        if c.state == "waiting":
            c.buf += chunk
            if b"\r\n\r\n" in c.buf:
                head, rest = c.buf.split(b"\r\n\r\n", 1)
                c.status = int(head.split(b" ", 2)[1])
                if c.status == 101:
                    c.state, c.buf = "open", rest
                else:
                    length = 0
                    for line in head.split(b"\r\n")[1:]:
                        k, _, v = line.partition(b":")
                        if k.strip().lower() == b"content-length":
                            length = int(v)
                    c.body = rest
                    if len(rest) >= length or not chunk:
                        c.body = rest[:length]
                        self._finish(c, "refused")
                    else:
                        c.state = "body"
                        c.length = length
            elif not chunk:
                self._finish(c, "eof")
        elif c.state == "body":
            c.body += chunk
            if len(c.body) >= c.length or not chunk:
                self._finish(c, "refused")
        if c.state == "open":
            if was_open:
                c.buf += chunk
            while len(c.buf) >= 2:
                n = c.buf[1] & 0x7F
                if n >= 126 or len(c.buf) < 2 + n:
                    break
                op, payload, c.buf = c.buf[0] & 0x0F, c.buf[2:2 + n], c.buf[2 + n:]
                if op == OP_CLOSE:
                    c.code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
                    self._finish(c, "closed")
                    return
            if was_open and not chunk:
                self._finish(c, "closed")

    def step(self, seconds):
        """Drives every socket for up to seconds."""
        deadline = time.monotonic() + seconds
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not self.sel.get_map():
                return
            for key, events in self.sel.select(min(left, 0.05)):
                c = key.data
                if c.state == "connecting":
                    err = c.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                    if err:
                        self._finish(c, "eof")
                        continue
                    key_b64 = base64.b64encode(os.urandom(16)).decode()
                    c.sock.sendall((self.request % (self.path, self.host, self.port, key_b64)).encode())
                    c.state = "waiting"
                    self.sel.modify(c.sock, selectors.EVENT_READ, c)
                else:
                    self._read(c)

    def close(self):
        for c in self.clients:
            if c.state not in ("refused", "closed", "eof"):
                self._finish(c, c.state)
        self.sel.close()
