"""The PyTorch training worker: ``python -m ndp_torch.worker`` (NDP.md §11).

Started by the trainer (client/torch-backend.ts) with ``NDP_WORKER_SOCKET`` set. Serves ``init``,
``batch`` (train or eval), ``save`` and ``close`` until ``close`` or the end of the stream; a
broken channel or a failed engine is reported as a fatal ``error`` and ends the process with
status 3 (a missing torch: status 2, also reported).
"""
import sys

from .channel import WorkerChannel, report_fatal, Batch
from .errors import NdpError


def serve(channel: WorkerChannel) -> int:
    import torch

    from .torch_engine import LoraEngine
    from .torch_io import TorchAllocator

    engine = None
    # Base weights sent with init stay in ordinary memory: they are copied to the device once.
    channel.allocator = TorchAllocator(pin_memory=False)
    while True:
        item = channel.receive()
        if item is None:
            return 0
        if isinstance(item, Batch) and item.kind == "batch":
            if engine is None:
                raise NdpError("NDP_ERR_WORKER_PROTOCOL", f"batch {item.id} before 'init'")
            try:
                result = engine.evaluate(item.tensors) if item.mode == "eval" else engine.step(item.tensors)
            except NdpError as err:  # a bad batch (token id out of range) fails that batch only
                channel.send_error(err.code, err.message, item.id)
                continue
            channel.send({"w": "result", "id": item.id, "receive_ms": item.receive_ms, **result})
            continue
        weights = item.tensors if isinstance(item, Batch) else None
        message = item.message if isinstance(item, Batch) else item
        kind, request_id = message["w"], message.get("id")
        if kind == "init":
            if engine is not None:
                raise NdpError("NDP_ERR_WORKER_PROTOCOL", "a second 'init' on one channel")
            engine = LoraEngine(message, weights)
            weights = None
            # Batches land in pinned host memory; the engine checks them there, then copies them asynchronously.
            channel.allocator = TorchAllocator()
            channel.send({
                "w": "ready", "id": request_id, "backend": "transformers+peft" if engine.hf else "builtin",
                "device": str(engine.device), "model": engine.description, "vocab_size": engine.vocab_size,
                "trainable": engine.trainable, "notes": engine.notes, "torch": torch.__version__,
            })
        elif kind == "save":
            if engine is None:
                channel.send_error("NDP_ERR_WORKER_PROTOCOL", "'save' before 'init'", request_id)
                continue
            try:
                files = engine.save(str(message["dir"]))
            except OSError as e:
                channel.send_error("NDP_ERR_WORKER_FAILED", f"cannot write the adapter to {message.get('dir')}: {e}", request_id)
                continue
            channel.send({"w": "saved", "id": request_id, "files": files})
        elif kind == "close":
            channel.send({"w": "closed", "id": request_id})
            return 0
        else:
            channel.send_error("NDP_ERR_WORKER_PROTOCOL", f"unknown request kind '{kind}'", request_id)


def main() -> int:
    channel = None
    try:
        channel = WorkerChannel.connect()
        try:
            import torch  # noqa: F401
        except ImportError as e:
            report_fatal(channel, NdpError("NDP_ERR_WORKER_START", f"{sys.executable} cannot import torch ({e}); install PyTorch or point NDP_PYTHON at a Python that has it"))
            return 2
        return serve(channel)
    except Exception as err:  # every failure is reported on the channel with a code, then the process ends
        return report_fatal(channel, err)
    finally:
        if channel is not None and not channel.closed:
            channel.close()


if __name__ == "__main__":
    sys.exit(main())
