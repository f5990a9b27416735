"""Read the metadata entries of a .tflite file with the standard library alone (no TensorFlow, no flatbuffers).

A .tflite file is a FlatBuffer whose root ``Model`` table has a ``metadata`` vector of
``{name, buffer}`` entries pointing into its ``buffers`` vector (schema.fbs, fields 4 and 6).
edgecifar stores its artifact metadata (edgecifar.device.metadata) there under the name
``edgecifar``, so a model file carries its class names, input contract and output kind with
it: the ``.json`` sidecar is only a readable copy. Writing happens at export, with
TensorFlow's own flatbuffer_utils (edgecifar.export.tflite_export.embed_metadata).

FlatBuffer layout used here: a table starts with an int32 offset back to its vtable; the vtable
holds uint16 byte offsets of each field (0 = absent); references are uint32 offsets forward
from where they are stored; vectors and strings start with a uint32 length.
"""

from __future__ import annotations

import struct
from pathlib import Path

METADATA_NAME = "edgecifar"
_MODEL_BUFFERS, _MODEL_METADATA = 4, 6  # field indices in schema.fbs' Model table
_BUFFER_DATA, _BUFFER_OFFSET, _BUFFER_SIZE = 0, 1, 2
_META_NAME, _META_BUFFER = 0, 1


class TFLiteFormatError(ValueError):
    """The bytes are not a well-formed .tflite FlatBuffer."""


def read_entries(data: bytes) -> dict[str, bytes]:
    """{metadata name: bytes} of a .tflite file's contents."""
    buf = memoryview(data)
    try:
        root = _u32(buf, 0)
        buffers = _vector_of_tables(buf, _field_ref(buf, root, _MODEL_BUFFERS))
        entries = _vector_of_tables(buf, _field_ref(buf, root, _MODEL_METADATA))
        out = {}
        for entry in entries:
            name_at = _field_ref(buf, entry, _META_NAME)
            index_at = _field_pos(buf, entry, _META_BUFFER)
            if name_at is None or index_at is None:
                continue
            index = _u32(buf, index_at)
            if index >= len(buffers):
                raise TFLiteFormatError(f"metadata points at buffer {index} of {len(buffers)}")
            out[_string(buf, name_at)] = _buffer_bytes(buf, buffers[index])
        return out
    except (struct.error, IndexError, UnicodeDecodeError) as e:
        raise TFLiteFormatError(f"truncated or corrupt FlatBuffer ({e})") from None


def read_entry(path, name: str = METADATA_NAME) -> bytes | None:
    return read_entries(Path(path).read_bytes()).get(name)


# --- FlatBuffer primitives ------------------------------------------------------------------


def _u32(buf, at: int) -> int:
    return struct.unpack_from("<I", buf, at)[0]


def _field_pos(buf, table: int, field: int) -> int | None:
    """Absolute position of a table field's value, or None when the field is absent."""
    vtable = table - struct.unpack_from("<i", buf, table)[0]
    vt_size = struct.unpack_from("<H", buf, vtable)[0]
    slot = 4 + 2 * field
    if slot + 2 > vt_size:
        return None
    off = struct.unpack_from("<H", buf, vtable + slot)[0]
    return table + off if off else None


def _field_ref(buf, table: int, field: int) -> int | None:
    """Target of a reference field (table, vector or string), or None."""
    pos = _field_pos(buf, table, field)
    return None if pos is None else pos + _u32(buf, pos)


def _vector_of_tables(buf, vec: int | None) -> list[int]:
    if vec is None:
        return []
    n = _u32(buf, vec)
    if 4 + 4 * n > len(buf) - vec:
        raise TFLiteFormatError(f"vector of {n} entries runs past the end of the file")
    return [vec + 4 + 4 * i + _u32(buf, vec + 4 + 4 * i) for i in range(n)]


def _string(buf, at: int) -> str:
    n = _u32(buf, at)
    return bytes(buf[at + 4 : at + 4 + n]).decode("utf-8")


def _buffer_bytes(buf, table: int) -> bytes:
    data = _field_ref(buf, table, _BUFFER_DATA)
    if data is not None:
        n = _u32(buf, data)
        if data + 4 + n > len(buf):
            raise TFLiteFormatError("buffer runs past the end of the file")
        return bytes(buf[data + 4 : data + 4 + n])
    # Models over 2 GB keep buffers after the FlatBuffer: (offset, size) from the file start.
    off_at, size_at = _field_pos(buf, table, _BUFFER_OFFSET), _field_pos(buf, table, _BUFFER_SIZE)
    if off_at is None or size_at is None:
        return b""
    offset, size = struct.unpack_from("<Q", buf, off_at)[0], struct.unpack_from("<Q", buf, size_at)[0]
    if offset + size > len(buf):
        raise TFLiteFormatError("buffer runs past the end of the file")
    return bytes(buf[offset : offset + size])
