"""Deterministic gzip output: the same bytes in, the same file out, whatever the clock or the path."""

from __future__ import annotations

import gzip
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

GZIP_LEVEL = 6  # level only changes the bytes, never the content; 6 = gzip's usual default


class GzipSink:
    """A deterministic gzip file (mtime 0, no file name in the header) compressed in a background thread:
    zlib releases the GIL, so compressing one chunk overlaps with building the next."""

    def __init__(self, path: Path) -> None:
        self._raw = open(path, "wb")
        self._gz = gzip.GzipFile(filename="", mode="wb", fileobj=self._raw, compresslevel=GZIP_LEVEL, mtime=0)
        self._pool = ThreadPoolExecutor(max_workers=1)
        self._pending: list[Future[int]] = []

    def write(self, data: bytes) -> None:
        self._pending.append(self._pool.submit(self._gz.write, data))
        while len(self._pending) > 2:  # bound the memory held by queued chunks
            self._pending.pop(0).result()

    def close(self) -> None:
        try:
            for f in self._pending:
                f.result()
            self._gz.close()
        finally:
            self._pool.shutdown()
            self._raw.close()

    def __enter__(self) -> GzipSink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
