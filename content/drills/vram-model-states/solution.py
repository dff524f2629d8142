BYTES = {  # weight, grad, optimizer state per element, fp32 master copy
    "fp32": (4, 4, 4, 0), "bf16-mixed": (2, 2, 4, 4), "bf16-true": (2, 2, 2, 0)}


def _linears(c: dict) -> dict[str, tuple[int, int]]:
    h, I = c["hidden_size"], c["intermediate_size"]
    a = c["num_attention_heads"]
    kv = c.get("num_key_value_heads") or a
    hd = h // a
    return {"q": (a * hd, h), "k": (kv * hd, h), "v": (kv * hd, h), "o": (h, a * hd),
            "gate": (I, h), "up": (I, h), "down": (h, I)}                    # (out, in)


def model_state_bytes(config: dict, method: str, rank: int, precision: str) -> dict[str, int]:
    c, L = config, config["num_hidden_layers"]
    V, h = c["vocab_size"], c["hidden_size"]
    per_layer = sum(o * i for o, i in _linears(c).values()) + 2 * h           # linears + two RMSNorms
    P = V * h * (1 if c.get("tie_word_embeddings") else 2) + L * per_layer + h  # + final norm
    w, g, s, master = BYTES[precision]
    if method == "full":
        T, frozen = P, 0
    else:
        T = L * sum(rank * (o + i) for o, i in _linears(c).values())           # r (in + out) per linear
        frozen = P
    return {"weights": frozen * w + T * w, "gradients": T * g, "optimizer": T * (2 * s + master)}
