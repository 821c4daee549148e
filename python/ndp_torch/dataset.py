"""``NdpBatchDataset``: an ndp stream as a PyTorch ``IterableDataset`` (NDP.md §11).

A user's own training loop consumes batches the TypeScript client assembled::

    ds = NdpBatchDataset(device="cuda")          # connects to $NDP_WORKER_SOCKET
    for batch in ds:                             # dict: input_ids, attention_mask, labels, ...
        loss = my_step(**batch)
        ds.report(loss=loss.item())              # optional: streams the loss back to ndp

Each batch lands in pinned memory with one copy and moves to ``device`` asynchronously. Use it
directly or through ``DataLoader(ds, batch_size=None, num_workers=0)``: the channel is one stream,
so it cannot be split over loader worker processes. Without torch (tests) it yields the stdlib
channel's shaped ``memoryview`` objects instead of tensors.
"""
from typing import Any, Dict, Optional

from .channel import Batch, WorkerChannel
from .errors import NdpError

try:
    import torch
    from torch.utils.data import IterableDataset as _Base
except ImportError:  # the stdlib-only path: same class, memoryviews instead of tensors
    torch = None
    _Base = object


class NdpBatchDataset(_Base):
    """Iterates the batches the trainer sends until it sends ``close`` or closes the socket.

    ``path`` defaults to ``$NDP_WORKER_SOCKET``; ``device`` (default ``None`` = CPU) is where the
    tensors go; ``channel`` lets a caller pass an open ``WorkerChannel`` instead of a path.
    """

    def __init__(self, path: Optional[str] = None, device=None, channel: Optional[WorkerChannel] = None, **channel_options):
        if torch is not None:
            super().__init__()
        self._path = path
        self._device = device
        self._channel = channel
        self._channel_options = channel_options
        self.current: Optional[Batch] = None

    def _open(self) -> WorkerChannel:
        if self._channel is None:
            options = dict(self._channel_options)
            if torch is not None and "allocator" not in options:
                from .torch_io import TorchAllocator
                options["allocator"] = TorchAllocator(device=self._device)
            self._channel = WorkerChannel.connect(self._path, **options)
        return self._channel

    def __iter__(self):
        if torch is not None:
            info = torch.utils.data.get_worker_info()
            if info is not None and info.num_workers > 1:
                raise NdpError("NDP_ERR_WORKER_PROTOCOL", "one ndp stream cannot be split over DataLoader workers: use num_workers=0")
        channel = self._open()
        while True:
            item = channel.receive()
            if item is None:
                return
            if isinstance(item, Batch) and item.kind == "batch":
                self.current = item
                yield item.tensors
                continue
            if isinstance(item, Batch):
                item = item.message
            kind = item["w"]
            if kind == "close":
                channel.send({"w": "closed", "id": item.get("id")})
                channel.close()
                return
            if kind == "init":
                # A dataset has no engine of its own: it reports itself ready so the trainer can go on.
                channel.send({"w": "ready", "id": item.get("id"), "backend": "dataset", "device": str(self._device or "cpu")})
                continue
            channel.send_error("NDP_ERR_WORKER_PROTOCOL", f"an NdpBatchDataset does not handle '{kind}' requests", item.get("id"))

    def report(self, **metrics: Any) -> None:
        """Sends a ``result`` for the batch last yielded (e.g. ``loss=…``): ndp logs it as a step."""
        if self.current is None or self._channel is None:
            raise RuntimeError("report() before the first batch")
        message: Dict[str, Any] = {"w": "result", "id": self.current.id}
        message.update({k: (float(v) if not isinstance(v, (int, str, bool)) else v) for k, v in metrics.items()})
        self._channel.send(message)
