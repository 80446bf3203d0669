"""What the three wire clients share: the scenario docs/WIRE.md describes, run over any wire.

Each client (ws_client.py, http_client.py, grpc_client.py) was written from docs/WIRE.md alone,
with its wire's usual Python library, and provides a `Wire` with:

    create() -> session id
    open(session_id, after) -> hello dict {"session", "in_seq", "max_frame_bytes"}
    send(seq, data: bytes) -> list of refusals the send itself answered (HTTP) or []
    ack(n)
    end_input()
    next_event() -> ("frame", seq, bytes) | ("in_ack", n) | ("refused", dict) | ("end", dict)
    drop()  -- cut the connection without a goodbye, as a network failure would

The scenario: create a session, send a bad frame (numbered 1) and a user message (2), read the
CLI's frames, acking at least every 16, cut the connection mid-turn and resume after the last
frame seen, then end the input after the result and read to the end. It checks that every frame
arrives once and in order (seq 1, 2, 3, ...), that the bad frame was refused with `bad_frame` and
took its number, and that the CLI exited 0. It prints one JSON line with what it saw.
"""

import argparse
import json
import sys

ACK_EVERY = 16

USER = json.dumps(
    {
        "type": "user",
        "message": {"role": "user", "content": "go"},
        "parent_tool_use_id": None,
        "session_id": "default",
    },
    separators=(",", ":"),
).encode()

BAD = b"[1,2,3]"


class Failed(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Failed(what)


def args():
    p = argparse.ArgumentParser()
    p.add_argument("--http", help="http://host:port of the gateway (HTTP, WebSocket)")
    p.add_argument("--grpc", help="host:port of the gateway's gRPC listener")
    p.add_argument("--token", required=True)
    p.add_argument("--messages", type=int, required=True, help="assistant messages per turn")
    p.add_argument("--drop-at", type=int, required=True, help="cut after this frame")
    p.add_argument("--proto", help="proto/conduit.proto (gRPC)")
    return p.parse_args()


def scenario(wire, messages, drop_at):
    sid = wire.create()
    hello = wire.open(sid, 0)
    check(hello["session"] == sid, f"hello names the session: {hello}")
    check(hello["in_seq"] == 0, f"a new session has none of our frames: {hello}")
    check(hello["max_frame_bytes"] > 0, f"hello says the frame limit: {hello}")

    refusals = list(wire.send(1, BAD))
    refusals += wire.send(2, USER)

    seqs, types = [], []
    acked = 0
    in_acks = []
    resumed_hello = None
    end = None
    while end is None:
        ev = wire.next_event()
        if ev[0] == "frame":
            _, seq, data = ev
            check(seq == len(seqs) + 1, f"frame {seq} after {len(seqs)}: lost or repeated")
            seqs.append(seq)
            frame = json.loads(data)
            check(isinstance(frame, dict), "a frame is one JSON object")
            types.append(frame.get("type"))
            if seq - acked >= ACK_EVERY:
                wire.ack(seq)
                acked = seq
            if resumed_hello is None and seq == drop_at:
                wire.drop()
                resumed_hello = wire.open(sid, seq)
                # The resume point counts as an ack.
                acked = seq
            if frame.get("type") == "result":
                wire.end_input()
        elif ev[0] == "in_ack":
            in_acks.append(ev[1])
        elif ev[0] == "refused":
            refusals.append(ev[1])
        elif ev[0] == "end":
            end = ev[1]
        else:
            raise Failed(f"unknown event {ev!r}")

    check(resumed_hello is not None, f"the turn had {len(seqs)} frames, not past {drop_at}")
    check(
        resumed_hello["in_seq"] == 2,
        f"after the cut the gateway has both our frames (the refused one took its number): "
        f"{resumed_hello}",
    )
    check(types[0] == "system" and types[-1] == "result", f"a whole turn: {types[:3]}...")
    check(types.count("assistant") == messages, f"{types.count('assistant')} assistant frames")
    check(len(refusals) == 1, f"one refusal: {refusals}")
    check(refusals[0].get("kind") == "bad_frame", f"typed refusal: {refusals}")
    check(end.get("code") == 0, f"the CLI exited 0: {end}")
    return {
        "frames": len(seqs),
        "last_seq": seqs[-1],
        "assistants": types.count("assistant"),
        "refusal": refusals[0].get("kind"),
        "resumed_in_seq": resumed_hello["in_seq"],
        "in_acks": len(in_acks),
        "end_code": end.get("code"),
    }


def main(make_wire):
    a = args()
    try:
        wire = make_wire(a)
        summary = scenario(wire, a.messages, a.drop_at)
    except Failed as e:
        print(f"FAILED: {e}", file=sys.stderr)
        sys.exit(1)
    print(json.dumps(summary, sort_keys=True))
