"""A WebSocket client of the conduit gateway, written from docs/WIRE.md with `websockets`
(threading client) and the standard library (the session is created with one POST)."""

import contextlib
import json
import socket
import struct
import urllib.request

from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

import common


class WsWire:
    def __init__(self, http, token):
        self.http = http.rstrip("/")
        self.token = token
        self.ws = None
        self.stack = contextlib.ExitStack()

    def auth(self):
        return {"Authorization": f"Bearer {self.token}"}

    def create(self):
        req = urllib.request.Request(
            f"{self.http}/v1/sessions",
            data=b"{}",
            method="POST",
            headers={**self.auth(), "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=30) as resp:
            common.check(resp.status == 201, f"POST /v1/sessions: {resp.status}")
            return json.load(resp)["id"]

    def open(self, sid, after):
        url = self.http.replace("http://", "ws://", 1)
        self.ws = self.stack.enter_context(
            connect(
                f"{url}/v1/sessions/{sid}/stream?after={after}",
                additional_headers=self.auth(),
                # Frames may be as large as the gateway's limit plus the envelope (WIRE.md).
                max_size=None,
                proxy=None,
                open_timeout=30,
            )
        )
        hello = json.loads(self.ws.recv(timeout=30))
        common.check("hello" in hello, f"the first message is the hello: {hello}")
        return hello["hello"]

    def send(self, seq, data):
        self.ws.send(struct.pack(">Q", seq) + data)
        return []

    def ack(self, n):
        self.ws.send(json.dumps({"ack": n}))

    def end_input(self):
        self.ws.send(json.dumps({"end_input": True}))

    def next_event(self):
        try:
            msg = self.ws.recv(timeout=60)
        except ConnectionClosed as e:
            raise common.Failed(f"closed without an end: {e}")
        if isinstance(msg, bytes):
            common.check(len(msg) >= 8, "a binary message starts with its seq")
            return ("frame", struct.unpack(">Q", msg[:8])[0], msg[8:])
        text = json.loads(msg)
        if "in_ack" in text:
            return ("in_ack", text["in_ack"])
        if "error" in text:
            return ("refused", text["error"])
        if "end" in text:
            # Then close 1000.
            try:
                self.ws.recv(timeout=30)
            except ConnectionClosed as e:
                common.check(e.rcvd is not None and e.rcvd.code == 1000, f"close 1000: {e}")
            return ("end", text["end"])
        raise common.Failed(f"unknown text message {text}")

    def drop(self):
        # A network failure: no close frame.
        try:
            self.ws.socket.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.ws.close()


if __name__ == "__main__":
    common.main(lambda a: WsWire(a.http, a.token))
