"""An MCAP file's data records in file order, framed by us, so that a file whose writer was killed
reads up to its last complete record.

The mcap library's readers need the summary at the end of the file (the indexed reader) or raise
at a cut-off record (the stream reader); a killed recorder leaves neither a summary nor, always,
a whole last record. McapRecords yields the data section's Header, Schema, Channel, Message
(taken out of their chunks), Metadata and Attachment records and stops quietly at a torn tail: a
record that runs past the end of the file, or zeros to the end (a file system's unwritten
blocks). Anything else that does not parse raises DamagedRecord with its byte offset; the summary
section (after DataEnd) is not read, it only repeats what came before.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

MAGIC = b"\x89MCAP0\r\n"
_HEADER, _FOOTER, _SCHEMA, _CHANNEL, _MESSAGE, _CHUNK = 1, 2, 3, 4, 5, 6
_METADATA, _ATTACHMENT, _DATA_END = 0x0C, 0x09, 0x0F


class DamagedRecord(ValueError):
    """A record that is there in full but does not parse (a bad CRC, bad compression, ...)."""

    def __init__(self, offset: int, what: str):
        super().__init__(f"{what} (at byte {offset})")
        self.offset, self.what = offset, what


class McapRecords:
    """Iterate over it once for (offset, record) pairs; afterwards `complete` says whether a
    footer and the closing magic ended the file, `end` where the last complete record ends
    (`size` for a whole file), `header` is its Header record and `compression` its first chunk's
    ("" = none, None = no chunks)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.size = 0
        self.end = 0
        self.complete = False
        self.header: Any = None
        self.compression: str | None = None

    @property
    def torn_bytes(self) -> int:
        """Bytes after the last complete record (a half-written record, or zeros)."""
        return 0 if self.complete else self.size - self.end

    def __iter__(self) -> Iterator[tuple[int, Any]]:
        from mcap.data_stream import ReadDataStream
        from mcap.records import Attachment, Channel, Chunk, Header, Message, Metadata, Schema
        from mcap.stream_reader import breakup_chunk

        with open(self.path, "rb") as f:
            self.size = size = f.seek(0, io.SEEK_END)
            f.seek(0)
            magic = f.read(len(MAGIC))
            if len(magic) < len(MAGIC):
                if MAGIC.startswith(magic):
                    return  # killed before the header reached the file: an empty recording
                raise DamagedRecord(0, "not an MCAP file")
            if magic != MAGIC:
                raise DamagedRecord(0, "not an MCAP file (bad magic)")
            pos = self.end = len(MAGIC)
            in_data = True
            while pos < size:
                head = f.read(9)
                if len(head) < 9:
                    break  # a torn record header
                opcode, length = struct.unpack("<BQ", head)
                if pos + 9 + length > size:
                    break  # torn: the record was being written when the writer died
                if opcode == 0 and _zeros_to_end(f, pos + 9):
                    break
                body = f.read(length)
                stream = ReadDataStream(io.BytesIO(body))
                try:
                    if opcode == _FOOTER:
                        self.complete = f.read(len(MAGIC)) == MAGIC
                        if self.complete:
                            self.end = size
                        return
                    records: list[Any] = []
                    if opcode == _DATA_END:
                        in_data = False
                    elif opcode == 0:
                        raise DamagedRecord(pos, "an invalid record (opcode 0)")
                    elif not in_data:
                        pass
                    elif opcode == _HEADER:
                        self.header = Header.read(stream)
                    elif opcode == _SCHEMA:
                        records = [Schema.read(stream)]
                    elif opcode == _CHANNEL:
                        records = [Channel.read(stream)]
                    elif opcode == _MESSAGE:
                        records = [Message.read(stream, length)]
                    elif opcode == _METADATA:
                        records = [Metadata.read(stream)]
                    elif opcode == _ATTACHMENT:
                        records = [Attachment.read(stream)]
                    elif opcode == _CHUNK:
                        chunk = Chunk.read(stream)
                        records = breakup_chunk(chunk, validate_crc=True)
                        if self.compression is None:
                            self.compression = chunk.compression
                except DamagedRecord:
                    raise
                except Exception as exc:  # struct errors, bad compression, CRC, bad UTF-8, ...
                    raise DamagedRecord(pos, f"damaged record (opcode {opcode:#04x}: {exc})"
                                        ) from None
                start, pos = pos, pos + 9 + length
                self.end = pos
                for record in records:
                    yield start, record


def _zeros_to_end(f, start: int) -> bool:
    """Whether the file holds only zero bytes from `start` on (the file pointer is put back)."""
    back = f.tell()
    f.seek(start)
    try:
        while block := f.read(1 << 20):
            if block.count(0) != len(block):
                return False
        return True
    finally:
        f.seek(back)
