import torch

NF4_LEVELS = torch.tensor([
    -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635,
    -0.18477343022823334, -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725,
    0.24611230194568634, 0.33791524171829224, 0.44070982933044434, 0.5626170039176941,
    0.7229568362236023, 1.0])


def dequantize_nf4_dq(packed: torch.Tensor, qabsmax: torch.Tensor, absmax_scale: torch.Tensor,
                      absmax_offset: torch.Tensor, code8: torch.Tensor, shape: tuple,
                      blocksize: int = 64) -> torch.Tensor:
    """packed (ceil(n/2),) uint8, high nibble first; qabsmax (n_blocks,) uint8; absmax_scale (ceil(n_blocks/256),)
    float32; absmax_offset () float32; code8 (256,) float32  ->  float32 tensor of `shape`.

    absmax[b] = code8[qabsmax[b]] * absmax_scale[b // 256] + absmax_offset
    w[i]      = NF4_LEVELS[code[i]] * absmax[i // blocksize]
    """
    raise NotImplementedError
