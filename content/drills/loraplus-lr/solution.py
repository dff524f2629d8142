def loraplus_learning_rates(params: list[tuple[str, bool]], lr: float, ratio: float = 16.0) -> dict[str, float]:
    """LoRA+ (Hayou et al. 2024): B learns ratio times faster than A."""
    out = {}
    for name, trainable in params:
        if not trainable:
            continue                                  # frozen: not in any optimizer group
        out[name] = lr * ratio if name.endswith("lora_B.weight") else lr
    if not any(name.endswith("lora_B.weight") for name in out):
        raise ValueError("no trainable lora_B: apply LoRA before building LoRA+ groups")
    return out
