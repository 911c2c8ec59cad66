"""The one exception of the package: a weightd refusal or failure, with the
daemon's status code and message (gRPC's numbering, on gRPC and on the handle
socket alike)."""
import grpc

_CODES = {code.value[0]: code for code in grpc.StatusCode}


class WeightdError(Exception):
    """`code` is a grpc.StatusCode (NOT_FOUND, ALREADY_EXISTS, FAILED_PRECONDITION,
    RESOURCE_EXHAUSTED, INVALID_ARGUMENT, DATA_LOSS, UNAVAILABLE, ...)."""

    def __init__(self, code, message):
        super().__init__(f"{code.name}: {message}")
        self.code = code
        self.message = message

    @classmethod
    def from_number(cls, number, message):
        return cls(_CODES.get(number, grpc.StatusCode.UNKNOWN), message)

    @classmethod
    def from_rpc(cls, error):
        """From a grpc.RpcError raised by a stub call."""
        return cls(error.code(), error.details() or "")
