def model_state_bytes(config: dict, method: str, rank: int, precision: str) -> dict[str, int]:
    """config: {"vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                "num_key_value_heads", "tie_word_embeddings"}
    method: "full" | "lora" (all seven linears per layer);  precision: "fp32" | "bf16-mixed" | "bf16-true"
    returns {"weights": bytes, "gradients": bytes, "optimizer": bytes}   (AdamW)
    """
    raise NotImplementedError
