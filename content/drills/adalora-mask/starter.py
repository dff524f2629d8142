import torch


def adalora_mask(layers: dict, budget: int, beta1: float = 0.85, beta2: float = 0.85) -> dict[str, list[bool]]:
    """layers: {name: {"lora_A" (r, k), "lora_E" (r, 1), "lora_B" (d, r), "grad_A", "grad_E", "grad_B",
                       "ipt_A", "ipt_E", "ipt_B", "unc_A", "unc_E", "unc_B"}}  (EMA state before this step)
    budget: how many triplets to keep over all layers
    returns {name: [kept?] * r}
    """
    raise NotImplementedError
