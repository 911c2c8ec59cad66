"""SGLang on weightd's memory, in place: a model loader class for SGLang's class hook.

    from sglang.srt.configs.load_config import LoadConfig
    from weightd.sglang import WeightdModelLoader
    LoadConfig(load_format=WeightdModelLoader,
               model_loader_extra_config={"address": "unix:/run/weightd/weightd.sock"})

get_model_loader() instantiates a class given as load_format. See weightd/sglang/loader.py.
Nothing here imports SGLang until WeightdModelLoader is asked for."""

__all__ = ["WeightdModelLoader"]


def __getattr__(name):
    if name == "WeightdModelLoader":
        from weightd.sglang.loader import WeightdModelLoader

        return WeightdModelLoader
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
