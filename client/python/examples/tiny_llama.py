"""A tiny Llama for the integration example: written by transformers'
save_pretrained when transformers is importable, otherwise by a plain-PyTorch
Llama with the same parameter names, shapes and config.json (safetensors).
`make_model()` builds an empty model of either kind on the GPU in BF16, and
`logits()` runs it."""
import json
import os

import torch
import torch.nn.functional as F
from torch import nn

CONFIG = {
    "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_act": "silu",
    "vocab_size": 2048, "hidden_size": 256, "intermediate_size": 768, "num_hidden_layers": 2,
    "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 256,
    "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "tie_word_embeddings": False, "initializer_range": 0.02,
    "attention_bias": False, "mlp_bias": False, "torch_dtype": "bfloat16",
}


def transformers_or_none():
    try:
        import transformers
        from transformers import LlamaConfig, LlamaForCausalLM  # noqa: F401
        return transformers
    except Exception:
        return None


class _RMSNorm(nn.Module):
    def __init__(self, dim, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x):
        dtype = x.dtype
        x = x.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x.to(dtype)


def _rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


class _Attention(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.heads, self.kv_heads = c["num_attention_heads"], c["num_key_value_heads"]
        self.head_dim = c["hidden_size"] // self.heads
        self.q_proj = nn.Linear(c["hidden_size"], self.heads * self.head_dim, bias=False)
        self.k_proj = nn.Linear(c["hidden_size"], self.kv_heads * self.head_dim, bias=False)
        self.v_proj = nn.Linear(c["hidden_size"], self.kv_heads * self.head_dim, bias=False)
        self.o_proj = nn.Linear(self.heads * self.head_dim, c["hidden_size"], bias=False)

    def forward(self, x, cos, sin):
        b, t, _ = x.shape
        q = self.q_proj(x).view(b, t, self.heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(b, t, self.kv_heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(b, t, self.kv_heads, self.head_dim).transpose(1, 2)
        q, k = q * cos + _rotate_half(q) * sin, k * cos + _rotate_half(k) * sin
        k = k.repeat_interleave(self.heads // self.kv_heads, dim=1)
        v = v.repeat_interleave(self.heads // self.kv_heads, dim=1)
        o = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.o_proj(o.transpose(1, 2).reshape(b, t, -1))


class _MLP(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.gate_proj = nn.Linear(c["hidden_size"], c["intermediate_size"], bias=False)
        self.up_proj = nn.Linear(c["hidden_size"], c["intermediate_size"], bias=False)
        self.down_proj = nn.Linear(c["intermediate_size"], c["hidden_size"], bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class _Layer(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.self_attn = _Attention(c)
        self.mlp = _MLP(c)
        self.input_layernorm = _RMSNorm(c["hidden_size"], c["rms_norm_eps"])
        self.post_attention_layernorm = _RMSNorm(c["hidden_size"], c["rms_norm_eps"])

    def forward(self, x, cos, sin):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin)
        return x + self.mlp(self.post_attention_layernorm(x))


class _Body(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.embed_tokens = nn.Embedding(c["vocab_size"], c["hidden_size"])
        self.layers = nn.ModuleList(_Layer(c) for _ in range(c["num_hidden_layers"]))
        self.norm = _RMSNorm(c["hidden_size"], c["rms_norm_eps"])


class PlainLlamaForCausalLM(nn.Module):
    """Llama as transformers names it (model.layers.N.self_attn.q_proj.weight, ...)."""

    def __init__(self, c):
        super().__init__()
        self.config = c
        self.model = _Body(c)
        self.lm_head = nn.Linear(c["hidden_size"], c["vocab_size"], bias=False)

    def forward(self, ids):
        head_dim = self.config["hidden_size"] // self.config["num_attention_heads"]
        inv_freq = 1.0 / (self.config["rope_theta"] ** (torch.arange(0, head_dim, 2, device=ids.device).float()
                                                          / head_dim))
        freqs = torch.outer(torch.arange(ids.shape[1], device=ids.device).float(), inv_freq)
        emb = torch.cat((freqs, freqs), dim=-1)
        x = self.model.embed_tokens(ids)
        cos, sin = emb.cos().to(x.dtype), emb.sin().to(x.dtype)
        for layer in self.model.layers:
            x = layer(x, cos, sin)
        return self.lm_head(self.model.norm(x))


def make_model():
    """An initialized tiny Llama on the GPU, BF16 (transformers' class when importable)."""
    transformers = transformers_or_none()
    if transformers is not None:
        # rope_theta is LlamaConfig's default (10000); newer versions spell it differently.
        skip = ("architectures", "model_type", "torch_dtype", "rope_theta")
        fields = {k: v for k, v in CONFIG.items() if k not in skip}
        model = transformers.LlamaForCausalLM(transformers.LlamaConfig(**fields))
    else:
        model = PlainLlamaForCausalLM(CONFIG)
        for name, p in model.named_parameters():
            if not name.endswith("norm.weight"):
                nn.init.normal_(p, std=CONFIG["initializer_range"])
    return model.to(device="cuda", dtype=torch.bfloat16).eval()


def write_checkpoint(directory, seed=0):
    """Writes the BF16 checkpoint; returns a line that says how."""
    torch.manual_seed(seed)
    model = make_model()
    transformers = transformers_or_none()
    if transformers is not None:
        model.save_pretrained(directory)  # safetensors
        return f"checkpoint written by transformers {transformers.__version__} save_pretrained"
    from safetensors.torch import save_file
    os.makedirs(directory, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, os.path.join(directory, "model.safetensors"))
    with open(os.path.join(directory, "config.json"), "w") as f:
        json.dump(CONFIG, f, indent=2)
    return ("transformers is not importable: checkpoint written with safetensors from a plain-PyTorch Llama "
            "with the same names, shapes and config.json")


@torch.no_grad()
def logits(model, ids):
    out = model(ids)
    return (out.logits if hasattr(out, "logits") else out).float()
