"""vLLM's `--load-format weightd`: vLLM runs on weightd's memory in place.

    pip install ./client/python            # registers the plugin (vllm.general_plugins)
    vllm serve /models/llama --load-format weightd \\
        --model-loader-extra-config '{"address": "unix:/run/weightd/weightd.sock"}'

See weightd/vllm/loader.py and docs/integrations.md. Nothing here imports vLLM until
vLLM itself calls register()."""


def register():
    """The `vllm.general_plugins` entry point: vLLM calls it in every process it starts;
    importing the loader registers the format (once)."""
    from weightd.vllm import loader  # noqa: F401
