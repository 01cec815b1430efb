"""Safetensors files read without memory-mapping, and written in parts (the packed CPU weights' cache).

``read_safetensors`` reads each tensor with plain file reads into its own freshly allocated tensor: the pages of a
memory-mapped file count as resident memory for as long as any tensor views them, and the low-bit kernels need
aligned copies anyway, so ``safetensors.torch.load_file`` held a packed cache twice. ``PartWriter`` writes the
tensors handed to it as files of about ``PART_BYTES``, straight from their memory, so only one part is queued.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

PART_BYTES = 256 * 1024**2
"""Packed bytes per cache file: what is held beside the model while it is written."""
_DTYPES = {"BF16": torch.bfloat16, "F16": torch.float16, "F32": torch.float32, "F64": torch.float64,
           "I8": torch.int8, "U8": torch.uint8, "I16": torch.int16, "I32": torch.int32, "I64": torch.int64,
           "BOOL": torch.bool}
_NAMES = {dtype: name for name, dtype in _DTYPES.items()}


def read_safetensors(file: Path) -> Iterator[tuple[str, torch.Tensor]]:
    """The tensors of a safetensors file, each read into its own freshly allocated (aligned) tensor.

    ValueError for a file that is not complete safetensors (bad header, a tensor past the end); OSError when
    it cannot be read.
    """
    size = file.stat().st_size
    with file.open("rb", buffering=0) as f:
        length, header = _header(f, file.name, size)
        try:
            entries = sorted(((name, _DTYPES[e["dtype"]], [int(d) for d in e["shape"]],
                               [int(o) for o in e["data_offsets"]]) for name, e in header.items()),
                             key=lambda entry: entry[3][0])
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise ValueError(f"{file.name}: a tensor entry of the header is not valid ({exc!r})") from None
        for name, dtype, shape, (start, end) in entries:
            nbytes = math.prod(shape) * dtype.itemsize
            if end - start != nbytes or 8 + length + end > size:
                raise ValueError(f"{file.name}: tensor {name} lies outside the file (truncated?)")
            buf = torch.empty(nbytes, dtype=torch.uint8)
            f.seek(8 + length + start)
            view, got = memoryview(buf.numpy()), 0
            while got < nbytes:
                n = f.readinto(view[got:])
                if not n:
                    raise ValueError(f"{file.name}: ends inside tensor {name} (truncated)")
                got += n
            yield name, buf.view(dtype).reshape(shape)


def _header(f: Any, name: str, size: int) -> tuple[int, dict[str, Any]]:
    length = int.from_bytes(f.read(8), "little")
    if not 2 <= length <= min(size - 8, 100 << 20):
        raise ValueError(f"{name}: header length {length} does not fit the file ({size} bytes)")
    header = json.loads(f.read(length))
    if not isinstance(header, dict):
        raise ValueError(f"{name}: the header is not a JSON object")
    header.pop("__metadata__", None)
    return length, header


def tensor_names(file: Path) -> set[str]:
    """The tensor names in a safetensors file's header (ValueError / OSError for a file that is not one)."""
    with file.open("rb") as f:
        return set(_header(f, file.name, file.stat().st_size)[1])


class PartWriter:
    """Writes tensors as ``model-NNNNN.safetensors`` parts of about ``PART_BYTES``; an OSError is kept in
    ``error`` (writing stops, the load goes on)."""

    def __init__(self, folder: Path | None) -> None:
        self.folder, self.files, self.error = folder, [], None
        self._pending: dict[str, torch.Tensor] = {}
        self._bytes = 0

    def add(self, name: str, tensor: torch.Tensor) -> None:
        """Queue ``tensor`` under ``name``; write a part when enough is queued."""
        if self.folder is None or self.error is not None:
            return
        self._pending[name] = tensor.contiguous()
        self._bytes += tensor.numel() * tensor.element_size()
        if self._bytes >= PART_BYTES:
            self.flush()

    def flush(self) -> None:
        """Write what is queued as one part."""
        if self.folder is None or self.error is not None or not self._pending:
            return
        name = f"model-{len(self.files) + 1:05d}.safetensors"
        try:
            write_safetensors(self.folder / name, self._pending)
        except OSError as exc:
            self.error = exc
        self.files.append(name)
        self._pending, self._bytes = {}, 0


def write_safetensors(file: Path, tensors: dict[str, torch.Tensor]) -> None:
    """Write ``tensors`` as a safetensors file straight from their memory (``safetensors.torch.save_file`` first
    copies every tensor into a bytes object: a part's size more held while it writes)."""
    header: dict[str, Any] = {}
    offset = 0
    for name, t in tensors.items():
        nbytes = t.numel() * t.element_size()
        header[name] = {"dtype": _NAMES[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)  # the data starts 8-byte aligned
    with file.open("wb") as f:
        f.write(len(raw).to_bytes(8, "little") + raw)
        for t in tensors.values():
            if t.numel():
                f.write(memoryview(t.contiguous().reshape(-1).view(torch.uint8).numpy()))
