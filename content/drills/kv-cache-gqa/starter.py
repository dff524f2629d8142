def kv_cache_bytes(config: dict, batch: int, seq_len: int, bytes_per_element: int) -> int:
    """config: {"num_hidden_layers", "num_attention_heads", "num_key_value_heads", "hidden_size", ["head_dim"]}
    returns the bytes of the K and V cache of all layers for `batch` sequences of `seq_len` positions."""
    raise NotImplementedError
