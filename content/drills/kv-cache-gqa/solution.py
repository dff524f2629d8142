def kv_cache_bytes(config: dict, batch: int, seq_len: int, bytes_per_element: int) -> int:
    heads = config["num_attention_heads"]
    kv_heads = config.get("num_key_value_heads") or heads           # GQA: fewer K/V heads than query heads
    head_dim = config.get("head_dim") or config["hidden_size"] // heads
    return 2 * config["num_hidden_layers"] * kv_heads * head_dim * batch * seq_len * bytes_per_element
