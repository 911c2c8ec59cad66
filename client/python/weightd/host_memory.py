"""Host-backend allocations: each memfd mapped read-only once, tensors as NumPy
arrays over that mapping (no copy). FP8 is ml_dtypes.float8_e4m3fn, BF16
ml_dtypes.bfloat16. An array keeps its mapping alive; the memory is unmapped when
the last array over it is gone."""
import mmap
import os

import ml_dtypes
import numpy as np

NUMPY_DTYPES = {
    "F8_E4M3": np.dtype(ml_dtypes.float8_e4m3fn),
    "BF16": np.dtype(ml_dtypes.bfloat16),
    "F16": np.dtype(np.float16),
    "F32": np.dtype(np.float32),
}


class HostAllocation:
    def __init__(self, fd, size):
        self.size = size
        # mmap dup()s the descriptor: the lease's copy can close independently.
        self._map = mmap.mmap(fd, size, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ) if size else None
        self._base_array = np.frombuffer(self._map, dtype=np.uint8) if size else np.zeros(0, np.uint8)
        self.base = self._base_array.__array_interface__["data"][0] if size else 0

    def tensor(self, entry):
        dtype = NUMPY_DTYPES.get(entry.dtype)
        if dtype is None:
            raise ValueError(f"{entry.name}: dtype {entry.dtype} has no NumPy equivalent")
        view = self._base_array[entry.offset: entry.offset + entry.size]
        return view.view(dtype).reshape(tuple(entry.shape))

    def close(self):
        """Unmaps now when no array uses the memory any more; otherwise the last
        array's release does."""
        self._base_array = None
        if self._map is not None:
            try:
                self._map.close()
            except BufferError:
                pass
            self._map = None


def close_fd(fd):
    if fd is not None:
        os.close(fd)
