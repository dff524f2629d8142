def prefix_tuning_shapes(config: dict, num_virtual_tokens: int, batch: int, prefix_projection: bool = False,
                         encoder_hidden_size: int | None = None) -> dict:
    """config: {"num_hidden_layers", "num_attention_heads", "num_key_value_heads", "hidden_size"}

    returns {"key_shape": (batch, heads?, n, head_dim), "value_shape": (...), "num_layers": L,
             "trainable_params": int}
    """
    raise NotImplementedError
