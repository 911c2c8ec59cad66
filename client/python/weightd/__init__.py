"""weightd: the Python client of the weightd daemon.

    import weightd
    client = weightd.Client("unix:/run/weightd/weightd.sock", "/run/weightd/handles.sock")
    for event in client.load("llama", path="llama-8b"):
        print(event.phase, event.bytes_done, event.bytes_total)
    with client.attach("llama", rank=0) as tensors:
        ...  # NumPy arrays (host devices) or PyTorch CUDA tensors (GPUs), no copy

PyTorch and CUDA are imported only when a GPU rank is attached.
"""
from weightd.client import Client, NONFINITE, SCHEMES
from weightd.errors import WeightdError
from weightd.lease import Lease

__all__ = ["Client", "Lease", "WeightdError", "SCHEMES", "NONFINITE"]
__version__ = "0.1.0"
