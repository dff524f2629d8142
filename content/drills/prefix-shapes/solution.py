def prefix_tuning_shapes(config: dict, num_virtual_tokens: int, batch: int, prefix_projection: bool = False,
                         encoder_hidden_size: int | None = None) -> dict:
    L = config["num_hidden_layers"]
    heads = config["num_attention_heads"]
    kv_heads = config.get("num_key_value_heads") or heads          # GQA: the cache has kv_heads heads
    head_dim = config["hidden_size"] // heads
    n, kv_dim = num_virtual_tokens, kv_heads * head_dim
    if prefix_projection:                                          # embedding -> Linear -> tanh -> Linear
        e = encoder_hidden_size or kv_dim
        params = n * kv_dim + (kv_dim * e + e) + (e * 2 * L * kv_dim + 2 * L * kv_dim)
    else:
        params = n * L * 2 * kv_dim                                # K and V, every layer
    shape = (batch, kv_heads, n, head_dim)
    return {"key_shape": shape, "value_shape": shape, "num_layers": L, "trainable_params": params}
