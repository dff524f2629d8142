import torch


def adalora_mask(layers: dict, budget: int, beta1: float = 0.85, beta2: float = 0.85) -> dict[str, list[bool]]:
    scores = {}
    for name, st in layers.items():
        s = {}
        for p in ("A", "E", "B"):
            ipt = (st[f"lora_{p}"] * st[f"grad_{p}"]).abs()                 # sensitivity |θ ∂L/∂θ|
            avg = beta1 * st[f"ipt_{p}"] + (1 - beta1) * ipt                 # smoothed sensitivity Ī
            unc = beta2 * st[f"unc_{p}"] + (1 - beta2) * (ipt - avg).abs()   # uncertainty Ū (uses the new Ī)
            s[p] = avg * unc
        # triplet i: Λ_i, row i of Q (r, k), column i of P (d, r)
        scores[name] = s["E"].view(-1) + s["A"].mean(dim=1) + s["B"].mean(dim=0)   # (r,)
    all_scores = torch.cat(list(scores.values()))
    k = all_scores.numel() - budget
    if k <= 0:
        return {name: [True] * v.numel() for name, v in scores.items()}
    threshold = torch.kthvalue(all_scores, k).values
    return {name: (v > threshold).tolist() for name, v in scores.items()}
