"""A gRPC client of the conduit gateway, written from docs/WIRE.md and proto/conduit.proto with
`grpcio`; the stubs are generated from the repository's .proto when the client starts."""

import importlib
import os
import queue
import sys
import tempfile

import grpc
from grpc_tools import protoc

import common


def stubs(proto):
    """Generate conduit_pb2 / conduit_pb2_grpc from `proto` and import them."""
    out = tempfile.mkdtemp(prefix="conduit-stubs-")
    include = os.path.join(os.path.dirname(protoc.__file__), "_proto")
    rc = protoc.main(
        [
            "grpc_tools.protoc",
            f"-I{os.path.dirname(os.path.abspath(proto))}",
            f"-I{include}",
            f"--python_out={out}",
            f"--grpc_python_out={out}",
            os.path.basename(proto),
        ]
    )
    common.check(rc == 0, f"protoc failed on {proto}")
    sys.path.insert(0, out)
    return importlib.import_module("conduit_pb2"), importlib.import_module("conduit_pb2_grpc")


class GrpcWire:
    def __init__(self, target, token, proto):
        self.pb, pb_grpc = stubs(proto)
        self.channel = grpc.insecure_channel(
            target,
            # Frames may be as large as the gateway's limit plus the envelope (docs/WIRE.md).
            options=[("grpc.max_receive_message_length", -1)],
        )
        self.stub = pb_grpc.ConduitStub(self.channel)
        self.metadata = [("authorization", f"Bearer {token}")]
        self.outbox = None
        self.call = None

    def create(self):
        info = self.stub.CreateSession(
            self.pb.CreateSessionRequest(), metadata=self.metadata, timeout=30
        )
        return info.id

    def open(self, sid, after):
        outbox = queue.Queue()
        self.outbox = outbox

        def requests():
            while True:
                m = outbox.get()
                if m is None:
                    return
                yield m

        outbox.put(self.pb.ClientMessage(attach=self.pb.Attach(session_id=sid, after=after)))
        self.call = self.stub.Stream(requests(), metadata=self.metadata)
        first = next(self.call)
        common.check(first.WhichOneof("msg") == "hello", f"the first message is hello: {first}")
        h = first.hello
        return {"session": h.session, "in_seq": h.in_seq, "max_frame_bytes": h.max_frame_bytes}

    def send(self, seq, data):
        self.outbox.put(self.pb.ClientMessage(frame=self.pb.Frame(seq=seq, data=data)))
        return []

    def ack(self, n):
        self.outbox.put(self.pb.ClientMessage(ack=self.pb.Ack(seq=n)))

    def end_input(self):
        self.outbox.put(self.pb.ClientMessage(end_input=self.pb.EndInput()))

    def next_event(self):
        try:
            m = next(self.call)
        except StopIteration:
            raise common.Failed("the stream ended without an end")
        except grpc.RpcError as e:
            raise common.Failed(f"the stream failed: {e.code()} {e.details()}")
        kind = m.WhichOneof("msg")
        if kind == "frame":
            return ("frame", m.frame.seq, m.frame.data)
        if kind == "in_ack":
            return ("in_ack", m.in_ack.seq)
        if kind == "refused":
            r = m.refused
            return ("refused", {"kind": r.kind, "seq": r.seq, "message": r.message})
        if kind == "end":
            e = m.end
            end = {
                "code": e.code if e.HasField("code") else None,
                "signal": e.signal if e.HasField("signal") else None,
                "stderr_tail": e.stderr_tail,
            }
            # Then status OK.
            try:
                next(self.call)
            except StopIteration:
                pass
            common.check(self.call.code() == grpc.StatusCode.OK, f"status {self.call.code()}")
            self.outbox.put(None)
            return ("end", end)
        raise common.Failed(f"unknown message {m}")

    def drop(self):
        self.call.cancel()
        self.outbox.put(None)


if __name__ == "__main__":
    common.main(lambda a: GrpcWire(a.grpc, a.token, a.proto))
