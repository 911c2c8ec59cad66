"""GPU allocations: a VMM file descriptor imported and mapped into this process,
or a legacy IPC handle opened, through the CUDA driver (libcuda, via ctypes), and
tensors as PyTorch CUDA tensors over that memory (no copy): their data_ptr() is
the allocation's base plus the manifest's offset. PyTorch is imported only here,
and only when a GPU rank is attached. A tensor keeps its allocation mapped; the
memory is unmapped when the last tensor over it is gone."""
import ctypes

from weightd.errors import WeightdError

_CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR = 1
_CU_MEM_LOCATION_TYPE_DEVICE = 1
_CU_MEM_ACCESS_FLAGS_PROT_READ = 1
_CU_MEM_ACCESS_FLAGS_PROT_READWRITE = 3
_CU_IPC_MEM_LAZY_ENABLE_PEER_ACCESS = 1

_driver = None


def _cuda():
    global _driver
    if _driver is None:
        try:
            _driver = ctypes.CDLL("libcuda.so.1")
        except OSError as e:
            raise WeightdError.from_number(9, f"GPU memory needs the CUDA driver (libcuda.so.1): {e}") from None
    return _driver


def _check(result, what):
    if result != 0:
        name = ctypes.c_char_p()
        _cuda().cuGetErrorName(result, ctypes.byref(name))
        raise WeightdError.from_number(13, f"{what}: {name.value.decode() if name.value else result}")


def _torch():
    try:
        import torch
    except ImportError:
        raise WeightdError.from_number(9, "GPU ranks need PyTorch (pip install torch)") from None
    return torch


class _Location(ctypes.Structure):
    _fields_ = [("type", ctypes.c_int), ("id", ctypes.c_int)]


class _AccessDesc(ctypes.Structure):
    _fields_ = [("location", _Location), ("flags", ctypes.c_int)]


class _IpcHandle(ctypes.Structure):
    _fields_ = [("reserved", ctypes.c_char * 64)]


def torch_dtypes():
    torch = _torch()
    return {"F8_E4M3": torch.float8_e4m3fn, "BF16": torch.bfloat16, "F16": torch.float16, "F32": torch.float32}


class CudaAllocation:
    """One allocation of a GPU rank, mapped on `device` (a CUDA ordinal). `read_only`:
    a VMM allocation is mapped with read access only (a kernel that writes it faults);
    a legacy IPC handle cannot be opened read-only and is mapped read-write."""

    def __init__(self, allocation, fd, device, read_only=False):
        from weightd.v1 import loader_pb2

        torch = _torch()
        self.device = device
        self.size = allocation.size
        self._vmm = None
        self._ipc = False
        self.base = 0
        with torch.cuda.device(device):
            torch.zeros(1, device=f"cuda:{device}")  # makes the primary context current for the driver calls
            if allocation.handle_type == loader_pb2.HANDLE_TYPE_CUDA_VMM_FD:
                self._import_vmm(fd, device, read_only)
            elif allocation.handle_type == loader_pb2.HANDLE_TYPE_CUDA_IPC:
                self._open_ipc(allocation.cuda_ipc_handle)
            else:
                raise WeightdError.from_number(3, f"allocation {allocation.id} is not GPU memory")

    def _import_vmm(self, fd, device, read_only):
        cu = _cuda()
        handle = ctypes.c_ulonglong()
        _check(cu.cuMemImportFromShareableHandle(ctypes.byref(handle), ctypes.c_void_p(fd),
                                                 _CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR),
               "cuMemImportFromShareableHandle")
        self._vmm = handle.value
        address = ctypes.c_ulonglong()
        size = ctypes.c_size_t(self.size)
        _check(cu.cuMemAddressReserve(ctypes.byref(address), size, ctypes.c_size_t(0), ctypes.c_ulonglong(0),
                                      ctypes.c_ulonglong(0)), "cuMemAddressReserve")
        self.base = address.value
        _check(cu.cuMemMap(address, size, ctypes.c_size_t(0), handle, ctypes.c_ulonglong(0)), "cuMemMap")
        flags = _CU_MEM_ACCESS_FLAGS_PROT_READ if read_only else _CU_MEM_ACCESS_FLAGS_PROT_READWRITE
        access = _AccessDesc(_Location(_CU_MEM_LOCATION_TYPE_DEVICE, device), flags)
        _check(cu.cuMemSetAccess(address, size, ctypes.byref(access), ctypes.c_size_t(1)), "cuMemSetAccess")

    def _open_ipc(self, handle_bytes):
        if len(handle_bytes) != 64:
            raise WeightdError.from_number(15, f"IPC handle of {len(handle_bytes)} bytes, expected 64")
        cu = _cuda()
        open_handle = getattr(cu, "cuIpcOpenMemHandle_v2", None) or cu.cuIpcOpenMemHandle
        pointer = ctypes.c_ulonglong()
        _check(open_handle(ctypes.byref(pointer), _IpcHandle.from_buffer_copy(bytes(handle_bytes)),
                           ctypes.c_uint(_CU_IPC_MEM_LAZY_ENABLE_PEER_ACCESS)), "cuIpcOpenMemHandle")
        self.base = pointer.value
        self._ipc = True

    def tensor(self, entry):
        torch = _torch()
        dtype = torch_dtypes().get(entry.dtype)
        if dtype is None:
            raise ValueError(f"{entry.name}: dtype {entry.dtype} has no PyTorch equivalent")
        raw = torch.as_tensor(_CudaBytes(self, self.base + entry.offset, entry.size), device=f"cuda:{self.device}")
        return raw.view(dtype).reshape(tuple(entry.shape))

    def close(self):
        """Nothing to do: unmapping happens when the last tensor (and this object) is gone."""

    def __del__(self):
        if not self.base and not self._vmm:
            return
        try:
            cu = _cuda()
            if self._ipc:
                cu.cuIpcCloseMemHandle(ctypes.c_ulonglong(self.base))
                return
            if self.base:
                cu.cuMemUnmap(ctypes.c_ulonglong(self.base), ctypes.c_size_t(self.size))
                cu.cuMemAddressFree(ctypes.c_ulonglong(self.base), ctypes.c_size_t(self.size))
            if self._vmm:
                cu.cuMemRelease(ctypes.c_ulonglong(self._vmm))
        except Exception:  # interpreter shutdown: the process exit frees everything
            pass


class _CudaBytes:
    """__cuda_array_interface__ over `size` bytes at `pointer`; holds its
    allocation, so a tensor made from it keeps the memory mapped."""

    def __init__(self, allocation, pointer, size):
        self._allocation = allocation
        self.__cuda_array_interface__ = {"shape": (size,), "typestr": "|u1", "data": (pointer, False),
                                         "version": 3, "strides": None}
