"""Index snapshots under the storage URI: named bundles of NumPy arrays plus a JSON description.

Layout::

    <storage>/snapshots/<name>/<stamp>/<array>.npy     one file per array
    <storage>/snapshots/<name>/<stamp>/info.json       the description (watermarks, index type...)
    <storage>/snapshots/<name>/CURRENT                 the stamp of the latest complete snapshot

A snapshot is written into a new folder and becomes current only when ``CURRENT`` is replaced (temp
name, then rename), so a crash mid-write leaves the previous snapshot current. Older snapshots are
removed after a new one is current (the last ``keep`` stay).
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Mapping
from typing import Any

import numpy as np
import pyarrow.fs as pafs

from storage.errors import SnapshotError
from storage.vector_files import resolve_filesystem

logger = logging.getLogger(__name__)

#: Folder of index snapshots under the storage root.
SNAPSHOT_DIR = "snapshots"
#: File naming a snapshot folder's current stamp.
CURRENT_FILE = "CURRENT"


class SnapshotStore:
    def __init__(self, uri: str, *, keep: int = 2) -> None:
        self.uri = uri
        self.fs, self.root = resolve_filesystem(uri)
        self.keep = keep

    def _folder(self, name: str) -> str:
        return f"{self.root}/{SNAPSHOT_DIR}/{name}"

    def save(self, name: str, arrays: Mapping[str, np.ndarray], info: Mapping[str, Any]) -> str:
        """Write a snapshot and make it current; returns its stamp."""
        # Microseconds in the stamp: pruning keeps the newest by name, so two snapshots saved in one second
        # must sort in the order they were made (a random suffix alone would sort them by chance).
        now = time.time()
        second = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now))
        stamp = f"{second}.{int(now % 1 * 1e6):06d}-{uuid.uuid4().hex[:6]}"
        folder = f"{self._folder(name)}/{stamp}"
        self.fs.create_dir(folder, recursive=True)
        for key, array in arrays.items():
            with self.fs.open_output_stream(f"{folder}/{key}.npy") as sink:
                np.lib.format.write_array(sink, np.ascontiguousarray(array), allow_pickle=False)
        payload = {**info, "arrays": sorted(arrays), "stamp": stamp}
        with self.fs.open_output_stream(f"{folder}/info.json") as sink:
            sink.write(json.dumps(payload).encode())
        current = f"{self._folder(name)}/{CURRENT_FILE}"
        tmp = f"{current}.tmp-{uuid.uuid4().hex[:8]}"
        with self.fs.open_output_stream(tmp) as sink:
            sink.write(stamp.encode())
        self.fs.move(tmp, current)
        self._prune(name, stamp)
        return stamp

    def _prune(self, name: str, current: str) -> None:
        selector = pafs.FileSelector(self._folder(name), allow_not_found=True)
        stamps = sorted(
            info.base_name for info in self.fs.get_file_info(selector) if info.type == pafs.FileType.Directory
        )
        for stamp in [s for s in stamps if s != current][: max(0, len(stamps) - self.keep)]:
            self.fs.delete_dir(f"{self._folder(name)}/{stamp}")

    def current_info(self, name: str) -> dict[str, Any] | None:
        """The current snapshot's description (``info.json``, with its stamp) without its arrays, or
        ``None`` when there is none."""
        current = f"{self._folder(name)}/{CURRENT_FILE}"
        if self.fs.get_file_info(current).type == pafs.FileType.NotFound:
            return None
        try:
            with self.fs.open_input_stream(current) as source:
                stamp = source.read().decode().strip()
            with self.fs.open_input_stream(f"{self._folder(name)}/{stamp}/info.json") as source:
                info: dict[str, Any] = json.loads(source.read())
        except (OSError, ValueError) as exc:
            raise SnapshotError(name, str(exc)) from exc
        return info

    def load(self, name: str) -> tuple[dict[str, np.ndarray], dict[str, Any]] | None:
        """The current snapshot's arrays and description, or ``None`` when there is none."""
        current = f"{self._folder(name)}/{CURRENT_FILE}"
        if self.fs.get_file_info(current).type == pafs.FileType.NotFound:
            return None
        try:
            with self.fs.open_input_stream(current) as source:
                stamp = source.read().decode().strip()
            folder = f"{self._folder(name)}/{stamp}"
            with self.fs.open_input_stream(f"{folder}/info.json") as source:
                info: dict[str, Any] = json.loads(source.read())
            arrays = {}
            for key in info["arrays"]:
                with self.fs.open_input_file(f"{folder}/{key}.npy") as source:
                    arrays[key] = np.lib.format.read_array(source, allow_pickle=False)
        except (OSError, ValueError, KeyError) as exc:
            raise SnapshotError(name, str(exc)) from exc
        return arrays, info
