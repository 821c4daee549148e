"""ndp_torch: the PyTorch side of ndp's worker channel (protocol-spec/NDP.md §11).

The TypeScript client does the transport work (reassembly, CRC, drops, batching, prefetch) and
hands ready batches to this package over a local socket as NDP frames. The frame reader, the
channel and ``NdpBatchDataset`` run with the standard library alone; tensors and the training
worker (``python -m ndp_torch.worker``) need ``torch``. ``NdpBatchDataset`` is loaded on first use
so that importing the package does not import torch.
"""
from .channel import Batch, WorkerChannel
from .errors import NdpError

__all__ = ["NdpError", "WorkerChannel", "Batch", "NdpBatchDataset"]


def __getattr__(name):
    if name == "NdpBatchDataset":
        from .dataset import NdpBatchDataset
        return NdpBatchDataset
    raise AttributeError(name)
