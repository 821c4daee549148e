"""Lands received tensors in (pinned) torch memory with one copy: kernel → final buffer.

The channel asks an allocator for a writable byte view per tensor; this one hands out a view of a
torch tensor's own storage (page-locked when CUDA is there, so ``.to('cuda', non_blocking=True)``
is a real asynchronous DMA), built with ``ctypes`` over ``data_ptr()`` so neither numpy nor an
intermediate ``bytes`` object is involved.
"""
import ctypes

import torch

from .tensor_frame import DTYPES, HOST_LITTLE_ENDIAN

TORCH_DTYPES = {
    "int32": torch.int32,
    "float32": torch.float32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
}


class TorchAllocator:
    """Allocates each tensor as torch storage.

    ``pin_memory`` defaults to ``torch.cuda.is_available()``; ``device`` (default ``None``: stay on
    the CPU) is where ``finish`` sends the tensor, asynchronously from pinned memory.
    """

    def __init__(self, device=None, pin_memory=None):
        self.device = torch.device(device) if device is not None else None
        self.pin_memory = torch.cuda.is_available() if pin_memory is None else pin_memory

    def allocate(self, name, dtype, shape, byte_length, little_endian):
        raw = torch.empty(byte_length, dtype=torch.uint8, pin_memory=self.pin_memory)
        view = memoryview((ctypes.c_uint8 * byte_length).from_address(raw.data_ptr())) if byte_length else memoryview(bytearray(0))
        return (raw, dtype, tuple(shape), little_endian), view.cast("B")

    def finish(self, handle):
        raw, dtype, shape, little_endian = handle
        name, size, _ = DTYPES[dtype]
        if little_endian != HOST_LITTLE_ENDIAN and size > 1:
            raw = raw.view(-1, size).flip(1).reshape(-1)
        tensor = raw.view(TORCH_DTYPES[name]).view(shape)
        if self.device is not None and self.device.type != "cpu":
            tensor = tensor.to(self.device, non_blocking=raw.is_pinned())
        return tensor
