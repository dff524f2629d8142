def loraplus_learning_rates(params: list[tuple[str, bool]], lr: float, ratio: float = 16.0) -> dict[str, float]:
    """params: [(name, requires_grad), ...] -> {name: learning rate} for trainable params only.

    lora_B weights: lr * ratio; every other trainable parameter: lr.
    Raise ValueError when there is no trainable lora_B.
    """
    raise NotImplementedError
