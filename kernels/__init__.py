"""PEFT Lab's own kernels: tensors in, tensors out; a PyTorch reference and a Triton twin per op.

    kernels.nf4        quantize_nf4 / quantize_fp4 / quantize_int4, dequantize_*, NF4Tensor
    kernels.linear4bit linear_4bit(x, q, bias): frozen 4-bit weight, grad to x (QLoRA's base layer)
    kernels.lora       lora_linear(x, W, b, A, B, scaling): fused LoRA linear, hand-written backward
    kernels.multi_lora bgmv / sgmv: many adapters in one batch (Punica's kernels)

CPU: two memory-bound loops also have a fused C version (kernels/csrc/, built on first use by
kernels/_native.py with the system C compiler; the PyTorch path when there is none): 4-bit
dequantize (bit-exact with the PyTorch reference) and fp32 BGMV.

A name to watch: the Hugging Face hub library is also called `kernels` (`pip install kernels`), and
bitsandbytes and transformers probe for it (`from kernels import get_kernel`,
`importlib.util.find_spec("kernels")`). When the repo root is on sys.path this package answers
instead. It therefore stays import-light, defines no `__version__` (transformers reads the version to
decide the hub library is usable: "N/A" means no), and answers the hub API names with an ImportError
that says what happened, which both libraries already treat as "hub kernels not installed".
"""

_HUB_NAMES = frozenset({
    "get_kernel", "get_local_kernel", "get_locked_kernel", "load_kernel", "has_kernel", "kernelize",
    "Device", "Mode", "LayerRepository", "LocalLayerRepository", "LockedLayerRepository", "FuncRepository",
    "register_kernel_mapping", "replace_kernel_forward_from_hub", "use_kernel_forward_from_hub",
    "use_kernel_mapping", "use_kernelized_func",
})


def __getattr__(name: str):
    if name in _HUB_NAMES:
        raise ImportError(
            f"'{name}' belongs to the Hugging Face hub library `kernels`; this `kernels` is PEFT Lab's local "
            "package (repo root on sys.path), so hub kernels are off and the caller's fallback is used"
        )
    raise AttributeError(f"module 'kernels' has no attribute {name!r}")
