"""The worker end of the worker channel (NDP.md §11): NDP frames over a local stream socket.

The trainer (TypeScript) listens on a Unix socket and starts the worker with the socket's path in
``NDP_WORKER_SOCKET``. Requests are msgpack maps in CONTROL frames (key ``w`` names the kind); a
``batch`` request is followed by its tensors in TENSOR frames. The worker answers with msgpack maps
in CONTROL frames. Every frame is CRC-checked; the channel is a reliable local stream, so any bad
frame means a broken peer and is fatal (the worker reports the code and closes, §11.5).
"""
import os
import socket
import sys
import time
from typing import Any, Dict, List, Optional, Union

from .errors import NdpError
from .frame import FrameSource, encode_frame
from .msgpack_lite import packb, unpackb
from .registry import DST, SRC, TYP
from .tensor_frame import DTYPES, HOST_LITTLE_ENDIAN, decode_tensor_header

SOCKET_ENV = "NDP_WORKER_SOCKET"
#: Default bound on one tensor's bytes: base weights sent with ``init`` include the embedding
#: (151,936 × 1,024 float32 = 622 MB for a 1024-wide model); a [64, 8192] int32 batch tensor is 2 MiB.
DEFAULT_MAX_TENSOR_BYTES = 1024 * 1024 * 1024
#: Default bound on the tensors of one batch (a Batch has five).
DEFAULT_MAX_BATCH_TENSORS = 16
#: Default bound on the base-weight tensors of an ``init`` (a 28-layer Qwen2 has 339).
DEFAULT_MAX_INIT_TENSORS = 4096


class Batch:
    """A request that came with tensors (a ``batch``, or an ``init`` with base weights):
    ``tensors`` maps a name to what the allocator built; ``kind`` is the message's ``w``."""

    __slots__ = ("id", "kind", "mode", "tensors", "message", "receive_ms")

    def __init__(self, batch_id: int, mode: str, tensors: Dict[str, Any], message: Dict[str, Any], receive_ms: float = 0.0):
        self.id = batch_id
        #: Time from the end of the request message to the last tensor byte (socket reads and CRC checks).
        self.receive_ms = receive_ms
        self.kind = message.get("w", "batch")
        self.mode = mode
        self.tensors = tensors
        self.message = message

    def __getitem__(self, name: str):
        return self.tensors[name]

    def __repr__(self) -> str:
        return f"Batch(id={self.id}, mode={self.mode!r}, tensors={list(self.tensors)})"


class BytesAllocator:
    """Lands each tensor in a ``bytearray`` and hands it out as a shaped ``memoryview`` (stdlib only).

    Elements in the other byte order than the host's are swapped (one copy); bfloat16, which has
    no ``memoryview`` format, stays a flat byte view.
    """

    def allocate(self, name: str, dtype: int, shape, byte_length: int, little_endian: bool):
        buf = bytearray(byte_length)
        return (buf, dtype, tuple(shape), little_endian), memoryview(buf)

    def finish(self, handle):
        buf, dtype, shape, little_endian = handle
        _, size, fmt = DTYPES[dtype]
        if fmt is None:
            return memoryview(buf)
        if little_endian != HOST_LITTLE_ENDIAN and size > 1:
            import array
            swapped = array.array(fmt, bytes(buf))
            swapped.byteswap()
            buf = bytearray(swapped.tobytes())
        view = memoryview(buf)
        if 0 in shape:
            return view.cast(fmt)
        return view.cast(fmt, shape) if shape else view.cast(fmt)


class WorkerChannel:
    """One connection to the trainer.

    ``receive()`` returns the next request: a ``Batch`` once all its tensors arrived (the channel
    then sends the ``ack`` the trainer's flow control waits for), a message ``dict`` otherwise, or
    ``None`` when the trainer closed the stream. Limits: ``max_tensor_bytes`` (default 256 MiB) and
    ``max_batch_tensors`` (default 16; an ``init`` with weights is bounded by ``max_init_tensors``, default 4096); past either the batch is refused with NDP_ERR_BAD_TENSOR.
    """

    def __init__(self, stream, allocator=None, max_tensor_bytes: int = DEFAULT_MAX_TENSOR_BYTES, max_batch_tensors: int = DEFAULT_MAX_BATCH_TENSORS,
                 max_init_tensors: int = DEFAULT_MAX_INIT_TENSORS):
        self._stream = stream
        self._source = FrameSource(stream)
        self._send = stream.sendall if hasattr(stream, "sendall") else self._write_stream
        self.allocator = allocator if allocator is not None else BytesAllocator()
        self.max_tensor_bytes = max_tensor_bytes
        self.max_batch_tensors = max_batch_tensors
        self.max_init_tensors = max_init_tensors
        self.closed = False

    @classmethod
    def connect(cls, path: Optional[str] = None, **options) -> "WorkerChannel":
        """Connects to the trainer's socket (``path`` defaults to ``$NDP_WORKER_SOCKET``)."""
        path = path if path is not None else os.environ.get(SOCKET_ENV)
        if not path:
            raise NdpError("NDP_ERR_WORKER_START", f"no worker socket: pass a path or set {SOCKET_ENV}")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(path)
        return cls(sock, **options)

    def _write_stream(self, data: bytes) -> None:
        self._stream.write(data)
        self._stream.flush()

    # -- sending -----------------------------------------------------------------------------
    def send(self, message: Dict[str, Any]) -> None:
        """Sends one worker message (a msgpack map with key ``w``) in a CONTROL frame."""
        self._send(encode_frame(SRC["TRAINER"], DST["WORKER"], TYP["CONTROL"], packb(message)))

    def send_error(self, code: str, message: str, request_id: Optional[int] = None, fatal: bool = False) -> None:
        reply = {"w": "error", "code": code, "message": message, "fatal": fatal}
        if request_id is not None:
            reply["id"] = request_id
        self.send(reply)

    # -- receiving ---------------------------------------------------------------------------
    def _read_message(self, header) -> Dict[str, Any]:
        payload = self._source.read_payload(header.length)
        if not self._source.finish():
            raise NdpError("NDP_ERR_BAD_CRC", f"CRC-16 mismatch on a {header.length}-byte CONTROL frame from the trainer")
        message = unpackb(payload)
        if not isinstance(message, dict) or not isinstance(message.get("w"), str):
            raise NdpError("NDP_ERR_WORKER_PROTOCOL", "a worker message must be a msgpack map with a string key 'w'")
        return message

    def receive(self) -> Union[Batch, Dict[str, Any], None]:
        header = self._source.read_header()
        if header is None:
            self.closed = True
            return None
        if header.typ == TYP["TENSOR"]:
            raise NdpError("NDP_ERR_WORKER_PROTOCOL", "TENSOR frame outside a batch (no 'batch' message announced it)")
        if header.typ != TYP["CONTROL"]:
            raise NdpError("NDP_ERR_WORKER_PROTOCOL", f"frame of TYP 0x{header.typ:02x} on the worker channel (only CONTROL and TENSOR)")
        message = self._read_message(header)
        if message["w"] != "batch" and "tensors" not in message:
            return message
        batch = self._read_batch(message)
        if batch.kind == "batch":
            self.send({"w": "ack", "id": batch.id})
        return batch

    def _read_batch(self, message: Dict[str, Any]) -> Batch:
        batch_id = message.get("id")
        names = message.get("tensors")
        if not isinstance(batch_id, int) or not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise NdpError("NDP_ERR_WORKER_PROTOCOL", f"a '{message['w']}' message with tensors needs an integer 'id' and a list of tensor names 'tensors'")
        limit = self.max_batch_tensors if message["w"] == "batch" else self.max_init_tensors
        if len(names) > limit:
            raise NdpError("NDP_ERR_BAD_TENSOR", f"'{message['w']}' {batch_id} announces {len(names)} tensors, the limit is {limit}")
        started = time.perf_counter()
        tensors: Dict[str, Any] = {}
        for name in names:
            tensors[name] = self._read_tensor(batch_id, name)
        return Batch(batch_id, str(message.get("mode", "train")), tensors, message, (time.perf_counter() - started) * 1000)

    def _read_tensor(self, batch_id: int, name: str):
        received = 0
        handle = None
        dest = None
        byte_length = -1
        while handle is None or received < byte_length:
            header = self._source.read_header()
            if header is None:
                raise NdpError("NDP_ERR_TRUNCATED", f"stream ended inside tensor '{name}' of batch {batch_id}")
            if header.typ != TYP["TENSOR"]:
                raise NdpError("NDP_ERR_WORKER_PROTOCOL", f"frame of TYP 0x{header.typ:02x} inside batch {batch_id} before tensor '{name}' was complete")
            th = decode_tensor_header(self._source.read_payload, header.length)
            if th.batch != batch_id or th.name != name:
                raise NdpError("NDP_ERR_WORKER_PROTOCOL", f"expected tensor '{name}' of batch {batch_id}, got '{th.name}' of batch {th.batch}")
            if handle is None:
                if th.byte_length > self.max_tensor_bytes:
                    raise NdpError("NDP_ERR_BAD_TENSOR", f"tensor '{name}' of {th.byte_length} bytes exceeds the limit of {self.max_tensor_bytes}")
                byte_length = th.byte_length
                handle, dest = self.allocator.allocate(name, th.dtype, th.shape, byte_length, th.little_endian)
                first = th
            elif (th.byte_length, th.shape, th.dtype, th.flags) != (first.byte_length, first.shape, first.dtype, first.flags):
                raise NdpError("NDP_ERR_BAD_TENSOR", f"fragments of tensor '{name}' disagree on its shape, dtype or length")
            if th.frag_offset != received:
                raise NdpError("NDP_ERR_BAD_TENSOR", f"fragment of '{name}' at offset {th.frag_offset}, expected {received} (a stream delivers fragments in order)")
            part = self._source.payload_left
            # The fragment goes straight from the socket into the tensor's final memory.
            self._source.read_payload_part(dest[received:received + part])
            if not self._source.finish():
                raise NdpError("NDP_ERR_BAD_CRC", f"CRC-16 mismatch on a TENSOR frame of '{name}' (batch {batch_id})")
            received += part
        return self.allocator.finish(handle)

    def close(self) -> None:
        self.closed = True
        try:
            if hasattr(self._stream, "shutdown"):
                self._stream.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._stream.close()


def report_fatal(channel: Optional[WorkerChannel], err: BaseException) -> int:
    """Sends a fatal ``error`` for ``err`` if the channel still works; returns the exit status to use."""
    code = err.code if isinstance(err, NdpError) else "NDP_ERR_WORKER_FAILED"
    message = err.message if isinstance(err, NdpError) else f"{type(err).__name__}: {err}"
    print(f"ndp worker: {code}: {message}", file=sys.stderr)
    if channel is not None and not channel.closed:
        try:
            channel.send_error(code, message, fatal=True)
        except OSError:
            pass
    return 3
