"""PEFT Lab's own kernels: tensors in, tensors out; a PyTorch reference and a Triton twin per op.

    peftlab_kernels.nf4        quantize_nf4 / quantize_fp4 / quantize_int4, dequantize_*, NF4Tensor
    peftlab_kernels.linear4bit linear_4bit(x, q, bias): frozen 4-bit weight, grad to x (QLoRA's base layer)
    peftlab_kernels.lora       lora_linear(x, W, b, A, B, scaling): fused LoRA linear, hand-written backward
    peftlab_kernels.multi_lora bgmv / sgmv: many adapters in one batch (Punica's kernels)

CPU: two memory-bound loops also have a fused C version (peftlab_kernels/csrc/, built on first use by
peftlab_kernels/_native.py with the system C compiler; the PyTorch path when there is none): 4-bit
dequantize (bit-exact with the PyTorch reference) and fp32 BGMV.

Why the long name: this layer used to be the top-level package `kernels`, which is also the import name of
the Hugging Face hub library `kernels` that transformers ≥ 5.25 depends on and imports. With the repo root
on sys.path ours answered instead and every model load failed. No top-level name of ours may equal an
import name in the dependency tree (tests/test_install.py walks the installed distributions to keep it so).
"""
