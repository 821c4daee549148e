"""A user's own training loop around NdpBatchDataset, as the TypeScript channel tests start it.

It reports, per batch, the sum and shape of every tensor so the trainer side can check each byte
arrived. NDP_FIXTURE selects a misbehaviour the tests need: ``crash`` (exit 7 after the first
batch), ``bad-crc`` (answer with a corrupted frame), ``mute`` (read, never answer), ``slow`` (sleep
before each batch), ``stubborn`` (never exits on its own), ``exit-early`` (exit 5 before connecting), ``no-connect`` (never connect).
``NDP_FIXTURE_MAX_TENSOR_BYTES`` sets the channel's tensor limit.
"""
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "python"))

from ndp_torch.channel import BytesAllocator, WorkerChannel, report_fatal  # noqa: E402
from ndp_torch.dataset import NdpBatchDataset  # noqa: E402
from ndp_torch.errors import NdpError  # noqa: E402
from ndp_torch.frame import encode_frame  # noqa: E402
from ndp_torch.registry import DST, SRC, TYP  # noqa: E402

mode = os.environ.get("NDP_FIXTURE", "")
if mode == "exit-early":
    print("fixture: refusing to start", file=sys.stderr)
    sys.exit(5)
if mode == "no-connect":
    time.sleep(60)
    sys.exit(0)

options = {"allocator": BytesAllocator()}
if "NDP_FIXTURE_MAX_TENSOR_BYTES" in os.environ:
    options["max_tensor_bytes"] = int(os.environ["NDP_FIXTURE_MAX_TENSOR_BYTES"])
channel = WorkerChannel.connect(**options)
if mode == "mute":
    while channel.receive() is not None:
        pass
    sys.exit(0)
if mode == "stubborn":
    while channel.receive() is not None:
        pass
    time.sleep(60)
    sys.exit(0)
dataset = NdpBatchDataset(channel=channel)
try:
    for n, batch in enumerate(dataset):
        if mode == "bad-crc":
            frame = bytearray(encode_frame(SRC["TRAINER"], DST["WORKER"], TYP["CONTROL"], b"\x81\xa1w\xa6result"))
            frame[-1] ^= 0xFF
            channel._send(bytes(frame))
            continue
        report = {}
        for name, values in batch.items():
            flat = values.cast("B").cast("i") if hasattr(values, "cast") else values.reshape(-1)
            report[name] = sum(flat.tolist())
            report["shape"] = list(values.shape)
        dataset.report(**{k: v for k, v in report.items() if k != "shape"}, rows=report["shape"][0], cols=report["shape"][1])
        if mode == "crash":
            print("fixture: crashing on purpose after batch", n, file=sys.stderr, flush=True)
            os._exit(7)
        if mode == "slow":
            time.sleep(0.2)
except NdpError as err:
    sys.exit(report_fatal(channel, err))
