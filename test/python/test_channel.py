"""Worker channel (NDP.md §11): msgpack subset, tensor header, batch reading, every refusal."""
import array
import socket
import struct
import threading
import unittest

from helpers import control_frame, tensor_frames
from ndp_torch.channel import Batch, WorkerChannel
from ndp_torch.dataset import NdpBatchDataset
from ndp_torch.errors import NdpError
from ndp_torch.frame import FrameSource, encode_frame
from ndp_torch.msgpack_lite import packb, unpackb
from ndp_torch.registry import DST, SRC, TYP
from ndp_torch.tensor_frame import decode_tensor_header, encode_tensor_header

INT32 = TYP["TOKEN_IDS"]


def int32_bytes(values, little_endian=True):
    return struct.pack(("<" if little_endian else ">") + f"{len(values)}i", *values)


class MsgpackTest(unittest.TestCase):
    def test_round_trips(self):
        for value in [None, True, False, 0, 127, 128, 255, 256, 65535, 65536, 2**32, 2**63, -1, -32, -33, -129, -40000, -2**31 - 1, -2**63,
                      0.5, -1e300, "", "é" * 40, "x" * 70000, b"", b"\x00" * 300, [], list(range(20)), {"w": "batch", "id": 3, "n": {"a": [1, 2.5]}}]:
            self.assertEqual(unpackb(packb(value)), value)

    def test_known_encodings(self):
        # Reference bytes from the msgpack spec: fixmap {"w": "ack"}, uint16, negative fixint.
        self.assertEqual(packb({"w": "ack"}), bytes.fromhex("81a177a361636b"))
        self.assertEqual(packb(300), bytes.fromhex("cd012c"))
        self.assertEqual(packb(-5), bytes.fromhex("fb"))
        self.assertEqual(unpackb(bytes.fromhex("ca3f800000")), 1.0)

    def test_refusals(self):
        for bad in [bytes.fromhex("81a177"), bytes.fromhex("d40100"), bytes.fromhex("c1"), bytes.fromhex("c0c0"), bytes.fromhex("a2ffff"), b"\x91" * 100000]:
            with self.assertRaises(NdpError) as ctx:
                unpackb(bad)
            self.assertEqual(ctx.exception.code, "NDP_ERR_WORKER_PROTOCOL", bad[:8].hex())


class TensorHeaderTest(unittest.TestCase):
    def test_layout(self):
        raw = encode_tensor_header(INT32, 7, 24, 8, (2, 3), "ids", little_endian=True)
        self.assertEqual(raw.hex(), "01010102" "00000007" "00000018" "00000008" "00000002" "00000003" "03" + b"ids".hex())
        at = [0]

        def read(n):
            at[0] += n
            return raw[at[0] - n:at[0]]

        header = decode_tensor_header(read, len(raw) + 16)
        self.assertEqual((header.batch, header.shape, header.name, header.frag_offset, header.header_bytes), (7, (2, 3), "ids", 8, len(raw)))

    def _decode(self, raw, payload_length=None):
        at = [0]

        def read(n):
            at[0] += n
            return raw[at[0] - n:at[0]]

        with self.assertRaises(NdpError) as ctx:
            decode_tensor_header(read, len(raw) if payload_length is None else payload_length)
        return ctx.exception.code

    def test_refusals(self):
        good = encode_tensor_header(INT32, 0, 24, 0, (2, 3), "ids")
        self.assertEqual(self._decode(good[:10]), "NDP_ERR_BAD_TENSOR")
        self.assertEqual(self._decode(b"\x02" + good[1:]), "NDP_ERR_UNSUPPORTED_VERSION")
        self.assertEqual(self._decode(good[:2] + b"\x7f" + good[3:]), "NDP_ERR_BAD_TENSOR")  # unknown dtype
        self.assertEqual(self._decode(good[:3] + b"\x09" + good[4:]), "NDP_ERR_BAD_TENSOR")  # 9 dimensions
        self.assertEqual(self._decode(encode_tensor_header(INT32, 0, 20, 0, (2, 3), "ids")), "NDP_ERR_BAD_TENSOR")  # length ≠ shape
        self.assertEqual(self._decode(good, len(good) + 25), "NDP_ERR_BAD_TENSOR")  # fragment past the end
        self.assertEqual(self._decode(good[:-3] + b"\xff\xfe\xfd"), "NDP_ERR_BAD_TENSOR")  # name not UTF-8
        self.assertEqual(self._decode(good[:16]), "NDP_ERR_BAD_TENSOR")  # name length overruns


class ChannelTest(unittest.TestCase):
    def setUp(self):
        self.trainer, self.worker_sock = socket.socketpair()
        self.addCleanup(self.trainer.close)
        self.addCleanup(self.worker_sock.close)

    def feed(self, data: bytes, then_close: bool = False):
        # A writer thread: the socket buffer is smaller than some test streams.
        trainer = self.trainer

        def write():
            try:
                trainer.sendall(data)
                if then_close:
                    trainer.shutdown(socket.SHUT_WR)
            except OSError:
                pass  # the reader refused the stream and closed: what the test checks

        thread = threading.Thread(target=write)
        thread.start()
        self.addCleanup(thread.join)

    def replies(self, n):
        source = FrameSource(self.trainer)
        return [unpackb(source.read_frame().payload) for _ in range(n)]

    def batch_stream(self, batch_id=0, rows=2, cols=5, max_payload=65535, little_endian=True):
        ids = list(range(rows * cols))
        labels = [-100 if i % 3 == 0 else i for i in ids]
        return (
            control_frame({"w": "batch", "id": batch_id, "mode": "train", "tensors": ["input_ids", "labels"], "tokens": rows * cols})
            + tensor_frames(batch_id, "input_ids", INT32, (rows, cols), int32_bytes(ids, little_endian), little_endian, max_payload)
            + tensor_frames(batch_id, "labels", INT32, (rows, cols), int32_bytes(labels, little_endian), little_endian, max_payload)
        ), ids, labels

    def test_reads_a_batch_and_acks_it(self):
        stream, ids, labels = self.batch_stream(batch_id=4)
        self.feed(stream + control_frame({"w": "close", "id": 5}))
        channel = WorkerChannel(self.worker_sock)
        batch = channel.receive()
        self.assertIsInstance(batch, Batch)
        self.assertEqual((batch.id, batch.mode, batch.message["tokens"]), (4, "train", 10))
        self.assertEqual(batch["input_ids"].shape, (2, 5))
        self.assertEqual(batch["input_ids"].tolist(), [ids[:5], ids[5:]])
        self.assertEqual(batch["labels"].tolist(), [labels[:5], labels[5:]])
        self.assertEqual(channel.receive(), {"w": "close", "id": 5})
        self.assertEqual(self.replies(1), [{"w": "ack", "id": 4}])

    def test_many_fragments_and_big_endian(self):
        stream, ids, _ = self.batch_stream(rows=64, cols=100, max_payload=1000, little_endian=False)
        self.feed(stream)
        batch = WorkerChannel(self.worker_sock).receive()
        self.assertEqual(array.array("i", batch["input_ids"].cast("B").cast("i")).tolist(), ids)

    def test_zero_length_tensor(self):
        self.feed(control_frame({"w": "batch", "id": 1, "tensors": ["empty"]}) + tensor_frames(1, "empty", INT32, (0, 7), b""))
        batch = WorkerChannel(self.worker_sock).receive()
        self.assertEqual(len(batch["empty"]), 0)

    def test_clean_end_of_stream_is_none(self):
        self.trainer.shutdown(socket.SHUT_WR)
        self.assertIsNone(WorkerChannel(self.worker_sock).receive())

    def refusal(self, stream, **options):
        self.feed(stream, then_close=True)
        channel = WorkerChannel(self.worker_sock, **options)
        with self.assertRaises(NdpError) as ctx:
            while channel.receive() is not None:
                pass
        self.worker_sock.close()
        return ctx.exception.code

    def test_bad_crc_is_fatal(self):
        stream = bytearray(self.batch_stream()[0])
        stream[-3] ^= 0x40  # a payload byte of the last TENSOR frame
        self.assertEqual(self.refusal(bytes(stream)), "NDP_ERR_BAD_CRC")
        bad_control = bytearray(control_frame({"w": "close"}))
        bad_control[-1] ^= 1
        self.setUp()
        self.assertEqual(self.refusal(bytes(bad_control)), "NDP_ERR_BAD_CRC")

    def test_tensor_outside_a_batch(self):
        self.assertEqual(self.refusal(tensor_frames(0, "x", INT32, (1,), int32_bytes([1]))), "NDP_ERR_WORKER_PROTOCOL")

    def test_other_typ(self):
        self.assertEqual(self.refusal(encode_frame(SRC["TRAINER"], DST["WORKER"], TYP["TOKEN_IDS"], b"\0\0\0\1")), "NDP_ERR_WORKER_PROTOCOL")

    def test_message_without_kind(self):
        self.assertEqual(self.refusal(encode_frame(SRC["TRAINER"], DST["WORKER"], TYP["CONTROL"], packb({"t": 1}))), "NDP_ERR_WORKER_PROTOCOL")

    def test_wrong_tensor_name_or_batch(self):
        head = control_frame({"w": "batch", "id": 1, "tensors": ["a"]})
        self.assertEqual(self.refusal(head + tensor_frames(1, "b", INT32, (1,), int32_bytes([1]))), "NDP_ERR_WORKER_PROTOCOL")
        self.setUp()
        self.assertEqual(self.refusal(head + tensor_frames(2, "a", INT32, (1,), int32_bytes([1]))), "NDP_ERR_WORKER_PROTOCOL")

    def test_control_inside_a_batch(self):
        head = control_frame({"w": "batch", "id": 1, "tensors": ["a"]})
        self.assertEqual(self.refusal(head + control_frame({"w": "close"})), "NDP_ERR_WORKER_PROTOCOL")

    def test_fragment_out_of_order(self):
        frames = tensor_frames(0, "a", INT32, (100,), int32_bytes(list(range(100))), max_payload=200)
        source = FrameSource(__import__("io").BytesIO(frames))
        parts = []
        while (f := source.read_frame()) is not None:
            parts.append(encode_frame(SRC["TRAINER"], DST["WORKER"], TYP["TENSOR"], f.payload))
        swapped = parts[1] + parts[0] + b"".join(parts[2:])
        self.assertEqual(self.refusal(control_frame({"w": "batch", "id": 0, "tensors": ["a"]}) + swapped), "NDP_ERR_BAD_TENSOR")

    def test_stream_ends_inside_a_batch(self):
        stream = self.batch_stream()[0]
        self.assertEqual(self.refusal(stream[: len(stream) - 40]), "NDP_ERR_TRUNCATED")

    def test_tensor_byte_limit(self):
        stream = self.batch_stream(rows=2, cols=5)[0]  # 40-byte tensors
        self.feed(stream)
        self.assertIsInstance(WorkerChannel(self.worker_sock, max_tensor_bytes=40).receive(), Batch)
        self.setUp()
        self.assertEqual(self.refusal(stream, max_tensor_bytes=39), "NDP_ERR_BAD_TENSOR")

    def test_batch_tensor_count_limit(self):
        stream = self.batch_stream()[0]  # two tensors
        self.assertEqual(self.refusal(stream, max_batch_tensors=1), "NDP_ERR_BAD_TENSOR")
        self.setUp()
        self.feed(stream)
        self.assertIsInstance(WorkerChannel(self.worker_sock, max_batch_tensors=2).receive(), Batch)


    def test_init_tensor_count_limit(self):
        weights = [("w%d" % i, int32_bytes([i])) for i in range(3)]
        stream = control_frame({"w": "init", "id": 0, "tensors": [n for n, _ in weights]})
        for name, data in weights:
            stream += tensor_frames(0, name, INT32, (1,), data)
        self.feed(stream)
        init = WorkerChannel(self.worker_sock, max_init_tensors=3).receive()
        self.assertEqual((init.kind, sorted(init.tensors)), ("init", ["w0", "w1", "w2"]))
        self.setUp()
        self.assertEqual(self.refusal(stream, max_init_tensors=2), "NDP_ERR_BAD_TENSOR")


class ChannelFuzzTest(unittest.TestCase):
    """Damaged streams (seeded bit flips, byte changes, truncation): only NdpError escapes."""

    def test_only_known_errors_escape(self):
        import io
        import random
        import time

        base = ChannelTest.batch_stream(None, rows=3, cols=40, max_payload=120)[0] + control_frame({"w": "close", "id": 9})
        rng = random.Random(7)
        deadline = time.monotonic() + 3.0  # time box: the suite's length does not depend on the machine
        runs = 0
        while time.monotonic() < deadline and runs < 3000:
            data = bytearray(base)
            for _ in range(rng.randint(1, 3)):
                at = rng.randrange(len(data))
                data[at] = rng.randrange(256) if rng.random() < 0.5 else data[at] ^ (1 << rng.randrange(8))
            if rng.random() < 0.2:
                data = data[: rng.randrange(len(data))]

            class Sink(io.BytesIO):
                def sendall(self, _):
                    pass

            channel = WorkerChannel(Sink(bytes(data)), max_tensor_bytes=1 << 20)
            try:
                while channel.receive() is not None:
                    pass
            except NdpError:
                pass
            runs += 1
        self.assertGreater(runs, 50)


class DatasetWithoutTorchTest(unittest.TestCase):
    """The dataset over a real socket; runs with or without torch (tensors or memoryviews)."""

    def test_iterates_until_close_and_reports(self):
        trainer, worker = socket.socketpair()
        self.addCleanup(trainer.close)
        stream = b""
        for batch_id in range(3):
            stream += control_frame({"w": "batch", "id": batch_id, "tensors": ["input_ids"]})
            stream += tensor_frames(batch_id, "input_ids", INT32, (1, 4), int32_bytes([batch_id] * 4))
        trainer.sendall(stream + control_frame({"w": "close", "id": 9}))
        ds = NdpBatchDataset(channel=WorkerChannel(worker, **({"allocator": None})))
        seen = []
        for batch in ds:
            seen.append(sum(batch["input_ids"].tolist()[0]))
            ds.report(loss=0.5, tokens=4)
        self.assertEqual(seen, [0, 4, 8])
        source = FrameSource(trainer)
        replies = [unpackb(source.read_frame().payload) for _ in range(7)]
        self.assertEqual([r["w"] for r in replies], ["ack", "result"] * 3 + ["closed"])
        self.assertEqual(replies[1], {"w": "result", "id": 0, "loss": 0.5, "tokens": 4})


if __name__ == "__main__":
    unittest.main()
