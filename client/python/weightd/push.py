"""Pushing local shard files into a load (PushShards): one stream per file. On a
Unix socket each goes on its own raw push connection (weightd.raw_push), unless
the daemon takes none; otherwise on its own gRPC channel, since streams sharing
one HTTP/2 connection share its window."""
import os
import threading

import grpc

from weightd.channel import grpc_target, is_unix, open_channel
from weightd.errors import WeightdError
from weightd.raw_push import CHUNK_BYTES, push_file_raw
from weightd.v1 import loader_pb2, loader_pb2_grpc


def local_shards(path):
    """(shard file paths, config.json bytes) of a directory or one .safetensors file."""
    if os.path.isdir(path):
        files = sorted(os.path.join(path, f) for f in os.listdir(path) if f.endswith(".safetensors"))
        directory = path
    elif os.path.isfile(path):
        files, directory = [path], os.path.dirname(path)
    else:
        raise WeightdError.from_number(5, f"{path} does not exist")
    if not files:
        raise WeightdError.from_number(5, f"no .safetensors file in {path}")
    config = os.path.join(directory, "config.json")
    config_json = open(config, "rb").read() if os.path.isfile(config) else b""
    return files, config_json


def _chunks(model_id, path):
    yield loader_pb2.ShardChunk(open=loader_pb2.ShardOpen(model_id=model_id, shard_file=os.path.basename(path),
                                                          size=os.path.getsize(path)))
    with open(path, "rb") as f:
        while True:
            data = f.read(CHUNK_BYTES)
            if not data:
                return
            yield loader_pb2.ShardChunk(data=data)


class Pusher:
    """Pushes every file on its own thread: on a raw push connection when `target`
    is a Unix socket and `raw` (the default) and the daemon takes raw pushes, else
    on its own gRPC channel (`tls` as in weightd.channel.open_channel); join()
    returns the first failure (a WeightdError), if any."""

    def __init__(self, target, model_id, files, tls=None, raw=True):
        self._errors = []
        self._tls = tls
        self._raw = raw
        target = grpc_target(target)
        self._threads = [threading.Thread(target=self._push, args=(target, model_id, f), daemon=True) for f in files]
        for t in self._threads:
            t.start()

    def _push(self, target, model_id, path):
        try:
            if self._raw and is_unix(target) and push_file_raw(target, model_id, path):
                return
            self._push_grpc(target, model_id, path)
        except WeightdError as e:
            self._errors.append(e)
        except grpc.RpcError as e:
            self._errors.append(WeightdError.from_rpc(e))

    def _push_grpc(self, target, model_id, path):
        options = [("weightd.push_file", path), ("grpc.use_local_subchannel_pool", 1)]
        with open_channel(target, self._tls, options) as channel:
            # The metadata names the shard even if the stream ends before its first message.
            metadata = (("weightd-model-id", model_id), ("weightd-shard-file", os.path.basename(path)))
            loader_pb2_grpc.LoaderStub(channel).PushShards(_chunks(model_id, path), metadata=metadata)

    def join(self):
        for t in self._threads:
            t.join()
        return self._errors[0] if self._errors else None
