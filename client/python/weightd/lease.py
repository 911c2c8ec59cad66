"""A worker's lease on one rank of a resident model, as a context manager:

    with client.attach("llama", rank=0) as tensors:       # dict: name -> tensor
        w = tensors["model.layers.0.mlp.down_proj.weight"]  # FP8, no copy

Host ranks give NumPy arrays over the mapped memfd; GPU ranks give PyTorch CUDA
tensors over the imported device memory. The lease lasts until close() (or the
end of the `with` block, or the process's death). Tensors still referenced after
that keep their memory mapped and readable: the daemon may unload the model, but
the pages stay until the last tensor is gone.
"""
from weightd import handoff, host_memory
from weightd.v1 import loader_pb2


class Lease:
    def __init__(self, socket_path, model_id, rank, timeout, read_only=False):
        self.model_id = model_id
        self._read_only = read_only
        self.rank = rank
        self._sock, self.manifest, self.lease_id, fds = handoff.attach(socket_path, model_id, rank, timeout)
        self._allocations = []
        try:
            for allocation, fd in zip(self.manifest.allocations, fds):
                self._allocations.append(self._map(allocation, fd))
            self.tensors = {}
            self._entries = {}
            for entry in self.manifest.tensors:
                if entry.allocation >= len(self._allocations) or \
                        entry.offset + entry.size > self.manifest.allocations[entry.allocation].size:
                    from weightd.errors import WeightdError
                    raise WeightdError.from_number(15, f"manifest places {entry.name} outside allocation "
                                                       f"{entry.allocation}")
                self._entries[entry.name] = entry
                self.tensors[entry.name] = self._allocations[entry.allocation].tensor(entry)
        except BaseException:
            self.close()
            raise
        finally:
            for fd in fds:
                host_memory.close_fd(fd)

    def _map(self, allocation, fd):
        if allocation.handle_type == loader_pb2.HANDLE_TYPE_MEMFD:
            return host_memory.HostAllocation(fd, allocation.size)
        from weightd import cuda_memory  # PyTorch and the driver only for GPU ranks

        return cuda_memory.CudaAllocation(allocation, fd, self.manifest.device, self._read_only)

    @property
    def device_kind(self):
        """"host" or "cuda"."""
        return "cuda" if self.manifest.device_kind == loader_pb2.DEVICE_KIND_CUDA else "host"

    def allocation_base(self, index):
        """The address (host or device) where allocation `index` starts in this process."""
        return self._allocations[index].base

    def data_pointer(self, name):
        """Allocation base + the manifest's offset: where tensor `name`'s bytes are."""
        entry = self._entries[name]
        return self.allocation_base(entry.allocation) + entry.offset

    def entry(self, name):
        """The manifest's TensorEntry (dtype, shape, allocation, offset, size)."""
        return self._entries[name]

    @property
    def held(self):
        return self._sock is not None

    def close(self):
        """Ends the lease. Idempotent."""
        for allocation in self._allocations:
            allocation.close()
        self._allocations = []
        self.tensors = {}
        if self._sock is not None:
            handoff.release(self._sock)
            self._sock = None

    def __enter__(self):
        return self.tensors

    def __exit__(self, *exc):
        self.close()
        return False

    def __del__(self):
        if getattr(self, "_sock", None) is not None:
            self._sock.close()
