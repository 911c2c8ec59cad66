"""Layout vllm with tensor parallelism, against vLLM's own sharding, in two real
tensor_parallel_size=2 vLLM engines on the CPU. weightd (host backend,
--host-devices=2) loads the tiny BF16 Llama with tp_size 2 and layout vllm.

1. vLLM's own sharding: the same model as an FP8 checkpoint in the fused layout
(tiny_llama.write_fused_fp8, with the manifest's config_json), loaded by vLLM's
default loader, so vLLM's own weight loaders slice it per rank (fused qkv_proj /
gate_up_proj from the checkpoint, RowParallelLinear's dim-1 split,
VocabParallelEmbedding / ParallelLMHead padding to 64 and the even split) and its
process_weights_after_loading processes it. Each rank's weightd tensors, in vLLM's
processed form (weightd/vllm/tensors.py: a per-tensor FP8 weight the transposed
[in, out] view, its scale a scalar), must equal the parameters vLLM builds for that
rank in bytes, shape, stride and dtype, with the same parameter names.

2. The plugin with tensor parallelism: vLLM with load_format "weightd" on the BF16
checkpoint (model_loader_extra_config: the daemon's sockets). Each worker's own
LoadModel (tp_size 2, layout vllm; model id and path default to the model dir)
attaches to the test's load (one model resident after the run), and each worker
leases its own rank. Per rank: every parameter's storage lies inside that worker's
lease mapping, at the manifest's offset; every parameter equals the default-loader
run's for the same rank (bytes, shape, stride, dtype, names); the arena's bytes
(hashed through test-side leases on both ranks) are unchanged after the run. Both
runs generate greedily on engine_run.PROMPTS, and the tokens must be equal.

TP is not simulated: each engine is a real tensor_parallel_size=2 run
(distributed_executor_backend "mp", two worker processes over gloo); on a 2-core
machine each starts, loads, generates and dumps in about 25 s (mostly the workers
importing vLLM), so no rank patching is needed. vLLM's CPU platform forces the spawn
start method for its workers, so patches made in the launching process do not reach
them: this module is also the engine's worker_extension_cls, which every worker
imports before it builds the model. Imported there, WEIGHTD_TP_TEST_WORKER says which
run it is in. The default-loader run's workers get cpu_workarounds (the FP8 quant op,
AMX state, and weightd's unpacked CPU kernels in the default loader, so the
parameters keep the processed [in, out] form instead of a VNNI-packed copy and both
runs compute with the same kernels). The weightd run's workers get only the AMX one
(cpu_workarounds.init_amx): the plugin adapts the kernels itself, and that run is
otherwise free of test patches. ParamDump.weightd_tp_dump, called on both workers
through collective_rpc, writes each rank's parameters (torch.save), with their
storage and, in the weightd run, the lease's mapping. Each engine runs in its own
subprocess (vLLM keeps process-wide state): this file run as a script.

    python test_vllm_tp_layout.py MODEL_DIR OUT_DIR [EXTRA_JSON]
        # OUT_DIR/rank{0,1}.pt and OUT_DIR/tokens.pt; EXTRA_JSON: load_format weightd
"""
import json
import os
import pathlib
import subprocess
import sys

import torch

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parents[1] / "client" / "python" / "tests"))

TP = 2
WORKER_ENV = "WEIGHTD_TP_TEST_WORKER"  # "default" or "weightd": which run's worker this is

if os.environ.get(WORKER_ENV):  # in a vLLM worker process, before it builds the model
    import cpu_workarounds

    cpu_workarounds.init_amx()
    if os.environ[WORKER_ENV] != "weightd":
        cpu_workarounds.install_scaled_fp8_quant()
        cpu_workarounds.weightd_kernels_in_default_loader()


class ParamDump:
    """vLLM worker extension: this rank's parameters after loading (and generating),
    with their storage and the weightd lease's mapping if any, to OUT_DIR/rank{r}.pt."""

    def weightd_tp_dump(self, out_dir):
        from vllm.distributed import get_tensor_model_parallel_rank, get_tensor_model_parallel_world_size
        from vllm.model_executor.layers.quantization.fp8 import Fp8LinearMethod

        model = self.model_runner.model
        modules = dict(model.named_modules(remove_duplicate=False))
        rank, world = get_tensor_model_parallel_rank(), get_tensor_model_parallel_world_size()
        params = {}
        for name, p in model.named_parameters(remove_duplicate=False):
            method = getattr(modules[name.rpartition(".")[0]], "quant_method", None)
            storage = p.untyped_storage()
            params[name] = {"shape": tuple(p.shape), "stride": tuple(p.stride()), "dtype": str(p.dtype),
                            "values": p.detach().contiguous().clone(), "data_ptr": p.data_ptr(),
                            "storage": (storage.data_ptr(), storage.data_ptr() + storage.nbytes()),
                            "per_tensor_fp8": isinstance(method, Fp8LinearMethod) and not method.block_quant}
        dump = {"rank": rank, "world": world, "params": params}
        lease = getattr(model, "_weightd_lease", None)
        if lease is not None:
            dump["lease"] = {
                "model_id": lease.model_id, "rank": lease.rank, "manifest_rank": lease.manifest.rank,
                "allocations": [(lease.allocation_base(i), lease.allocation_base(i) + a.size)
                                for i, a in enumerate(lease.manifest.allocations)],
                "entries": {e.name: (e.allocation, e.offset) for e in lease.manifest.tensors}}
        torch.save(dump, os.path.join(out_dir, f"rank{rank}.pt"))
        return rank


def run_vllm_tp(model_dir, out_dir, extra=None):
    from vllm import LLM, SamplingParams

    from engine_run import PROMPTS

    loader = {} if extra is None else {"load_format": "weightd", "model_loader_extra_config": json.loads(extra)}
    llm = LLM(model=model_dir, dtype="bfloat16", enforce_eager=True, max_model_len=256, max_num_seqs=4,
              max_num_batched_tokens=256, seed=0, tensor_parallel_size=TP, distributed_executor_backend="mp",
              worker_extension_cls=f"{pathlib.Path(__file__).stem}.ParamDump", **loader)
    outputs = llm.generate(PROMPTS, SamplingParams(temperature=0.0, max_tokens=12, ignore_eos=True), use_tqdm=False)
    torch.save([list(o.outputs[0].token_ids) for o in outputs], os.path.join(out_dir, "tokens.pt"))
    ranks = llm.collective_rpc("weightd_tp_dump", args=(out_dir,))
    assert sorted(ranks) == list(range(TP)), ranks


if __name__ == "__main__":
    run_vllm_tp(*sys.argv[1:4])
    sys.exit(0)

import pytest  # noqa: E402

import tiny_llama  # noqa: E402
from daemon import lease_digest  # noqa: E402

import weightd  # noqa: E402
from weightd.engine_lease import as_torch  # noqa: E402


@pytest.fixture(scope="module")
def daemon():
    d = tiny_llama.daemon([f"--host-devices={TP}"])
    yield d
    d.stop()


def vllm_ranks(model_dir, out_dir, extra=None):
    """One tensor_parallel_size=2 engine in a subprocess: each rank's dump and the greedy tokens."""
    out_dir.mkdir()
    env = dict(os.environ, **{WORKER_ENV: "default" if extra is None else "weightd", "PYTHONPATH": os.pathsep.join(
        [str(HERE)] + [p for p in [os.environ.get("PYTHONPATH")] if p])})
    env["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"  # the engine core in the launching process: one spawn fewer
    env.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")  # GiB; vLLM takes most of the RAM otherwise
    env.setdefault("VLLM_CPU_OMP_THREADS_BIND", "nobind")
    env.setdefault("HF_HUB_OFFLINE", "1")
    args = [str(model_dir), str(out_dir)] + ([] if extra is None else [extra])
    result = subprocess.run([sys.executable, __file__, *args], env=env, capture_output=True, text=True, timeout=600)
    what = "default loader" if extra is None else "load_format weightd"
    assert result.returncode == 0, f"vLLM tensor_parallel_size={TP}, {what}:\n{result.stderr[-6000:]}"
    dumps = [torch.load(out_dir / f"rank{r}.pt", weights_only=False) for r in range(TP)]
    assert [(d["rank"], d["world"]) for d in dumps] == [(r, TP) for r in range(TP)]
    return dumps, torch.load(out_dir / "tokens.pt")


def processed(name, array, per_tensor_fp8):
    """weightd's tensor as vLLM's parameter after process_weights_after_loading."""
    tensor = as_torch(array)
    if per_tensor_fp8 and name.endswith(".weight"):
        return tensor.t()  # the [in, out] view of the [out, in] weight
    if per_tensor_fp8 and name.endswith(".weight_scale"):
        return tensor.reshape(())
    return tensor


def raw(values):
    return values.contiguous().reshape(-1).view(torch.uint8)


def test_each_rank_equals_vllms_own_tp_sharding_of_the_fused_checkpoint(daemon, tmp_path):
    model_dir = str(daemon.model_root / "llama")
    with weightd.Client(daemon.address, daemon.handle_socket) as client:
        manifest = client.load_and_wait(model_dir, path=model_dir, tp_size=TP, layout="vllm")
        reference_dir = tiny_llama.write_fused_fp8(model_dir, tmp_path / "reference", manifest.config_json.decode())
        dumps, their_tokens = vllm_ranks(reference_dir, tmp_path / "ranks")
        theirs = [d["params"] for d in dumps]

        # vLLM really sharded: rank r's fused qkv is [in, out] = 256 x (2 q heads + 1 k + 1 v) x 64.
        for params in theirs:
            assert params["model.layers.0.self_attn.qkv_proj.weight"]["shape"] == (256, 256)
            assert params["model.layers.0.self_attn.o_proj.weight"]["shape"] == (128, 256)
            assert params["model.layers.0.mlp.gate_up_proj.weight"]["shape"] == (256, 512)
            assert params["model.embed_tokens.weight"]["shape"] == (512, 256)  # 1000 padded to 1024, halved
            assert params["model.layers.0.self_attn.qkv_proj.weight_scale"]["shape"] == ()
        assert not torch.equal(raw(theirs[0]["model.embed_tokens.weight"]["values"]),
                               raw(theirs[1]["model.embed_tokens.weight"]["values"]))

        failures = []
        for rank in range(TP):
            with client.attach(model_dir, rank=rank) as ours:
                missing = sorted(set(theirs[rank]) - set(ours))
                extra = sorted(set(ours) - set(theirs[rank]))
                assert not missing and not extra, (f"rank {rank}: names differ: vLLM's not in weightd's {missing}, "
                                                   f"weightd's not in vLLM's {extra}")
                assert len(ours) == 23  # 2 layers x 10, embed_tokens, norm, lm_head
                for name, q in sorted(theirs[rank].items()):
                    p = processed(name, ours[name], q["per_tensor_fp8"])
                    got = (tuple(p.shape), tuple(p.stride()), str(p.dtype))
                    want = (q["shape"], q["stride"], q["dtype"])
                    if got != want:
                        failures.append(f"rank {rank} {name}: weightd (shape, stride, dtype) {got}, vLLM's {want}")
                    elif not torch.equal(raw(p), raw(q["values"])):
                        differ = int((raw(p) != raw(q["values"])).sum())
                        failures.append(f"rank {rank} {name}: {differ} of {raw(p).numel()} bytes differ from "
                                        f"vLLM's own rank {rank} parameter"
                                        + (f" (weightd {p.item()}, vLLM {q['values'].item()})" if p.ndim == 0 else ""))
        assert not failures, (f"{len(failures)} parameters differ from vLLM's own TP={TP} sharding:\n"
                              + "\n".join(failures))

        # The plugin at TP=2 on the BF16 checkpoint: its workers' LoadModel attaches to the load above.
        leases = [client.attach(model_dir, rank=rank) for rank in range(TP)]
        try:
            before = [lease_digest(lease) for lease in leases]
            sizes = [[a.size for a in lease.manifest.allocations] for lease in leases]
            extra = json.dumps({"address": daemon.address, "handle_socket": daemon.handle_socket})
            plugin_dumps, our_tokens = vllm_ranks(model_dir, tmp_path / "weightd", extra)
            after = [lease_digest(lease) for lease in leases]
        finally:
            for lease in leases:
                lease.close()
        assert [m.model_id for m in client.list()] == [model_dir], "the plugin's LoadModel made another load"
    assert before == after, "vLLM (load_format weightd, TP=2) changed weightd's memory"

    failures = []
    for rank, dump in enumerate(plugin_dumps):
        lease = dump.get("lease")
        assert lease is not None, f"rank {rank}: the weightd run's model has no _weightd_lease"
        assert (lease["model_id"], lease["rank"], lease["manifest_rank"]) == (model_dir, rank, rank), lease
        allocations = lease["allocations"]
        assert [hi - lo for lo, hi in allocations] == sizes[rank], f"rank {rank}: not the test's rank {rank} lease"
        mine, reference = dump["params"], theirs[rank]
        assert sorted(mine) == sorted(reference), f"rank {rank}: names differ from the default loader's"
        for name, p in sorted(mine.items()):
            q = reference[name]
            if (p["shape"], p["stride"], p["dtype"]) != (q["shape"], q["stride"], q["dtype"]):
                failures.append(f"rank {rank} {name}: (shape, stride, dtype) {(p['shape'], p['stride'], p['dtype'])},"
                                f" the default loader's {(q['shape'], q['stride'], q['dtype'])}")
            elif not torch.equal(raw(p["values"]), raw(q["values"])):
                failures.append(f"rank {rank} {name}: bytes differ from the default loader's rank {rank} parameter")
            # In place: the parameter's storage is the rank's lease mapping, at the manifest's offset.
            if not any(lo <= p["storage"][0] and p["storage"][1] <= hi for lo, hi in allocations):
                failures.append(f"rank {rank} {name}: storage {p['storage']} outside the lease's {allocations}")
            allocation, offset = lease["entries"][name]
            if p["data_ptr"] != allocations[allocation][0] + offset:
                failures.append(f"rank {rank} {name}: data_ptr not at the manifest's offset")
    assert not failures, (f"{len(failures)} parameters of the weightd TP={TP} run differ:\n" + "\n".join(failures))
    assert our_tokens == their_tokens, f"greedy tokens: weightd {our_tokens}, default loader {their_tokens}"
    assert all(len(t) == 12 for t in our_tokens) and len(our_tokens) == 2
