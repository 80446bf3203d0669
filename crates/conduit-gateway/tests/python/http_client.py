"""An HTTP + server-sent events client of the conduit gateway, written from docs/WIRE.md with
`httpx`; the event stream is read by hand (lines, fields, a blank line ends an event)."""

import json

import httpx

import common


class HttpWire:
    def __init__(self, http, token):
        self.base = http.rstrip("/")
        self.client = httpx.Client(
            headers={"Authorization": f"Bearer {token}"},
            timeout=httpx.Timeout(60.0),
            trust_env=False,
        )
        self.sid = None
        self.response = None
        self.lines = None

    def url(self, tail=""):
        return f"{self.base}/v1/sessions/{self.sid}{tail}"

    def create(self):
        r = self.client.post(f"{self.base}/v1/sessions", json={})
        common.check(r.status_code == 201, f"POST /v1/sessions: {r.status_code} {r.text}")
        return r.json()["id"]

    def open(self, sid, after):
        self.sid = sid
        headers = {"Accept": "text/event-stream"}
        if after:
            headers["Last-Event-ID"] = str(after)
        request = self.client.build_request("GET", self.url("/events"), headers=headers)
        self.response = self.client.send(request, stream=True)
        common.check(self.response.status_code == 200, f"events: {self.response.status_code}")
        self.lines = self.response.iter_lines()
        event = self.event()
        common.check(event[0] == "hello", f"the stream starts with hello: {event}")
        return json.loads(event[2])

    def event(self):
        """The next event as (name, id, data); comments (`: ping`) are skipped."""
        name, ident, data = "message", None, []
        for line in self.lines:
            if line == "":
                if data or name != "message":
                    return (name, ident, "\n".join(data))
                continue
            if line.startswith(":"):
                continue
            field, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if field == "event":
                name = value
            elif field == "id":
                ident = value
            elif field == "data":
                data.append(value)
        raise common.Failed("the event stream ended without an end")

    def send(self, seq, data):
        r = self.client.post(
            self.url("/frames"),
            content=data + b"\n",
            headers={"Conduit-Seq": str(seq), "Content-Type": "application/x-ndjson"},
        )
        if r.status_code == 200:
            return []
        body = r.json()
        common.check("error" in body, f"a refusal says why: {r.status_code} {body}")
        return [body["error"]]

    def ack(self, n):
        r = self.client.post(self.url("/ack"), json={"ack": n})
        common.check(r.status_code == 204, f"ack: {r.status_code}")

    def end_input(self):
        r = self.client.post(self.url("/end_input"))
        common.check(r.status_code == 204, f"end_input: {r.status_code}")

    def next_event(self):
        name, ident, data = self.event()
        if name == "message":
            return ("frame", int(ident), data.encode())
        if name == "end":
            return ("end", json.loads(data))
        if name == "error":
            raise common.Failed(f"the stream ended with an error: {data}")
        raise common.Failed(f"unknown event {name}")

    def drop(self):
        self.response.close()


if __name__ == "__main__":
    common.main(lambda a: HttpWire(a.http, a.token))
