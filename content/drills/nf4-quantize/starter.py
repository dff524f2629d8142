import torch

# The 16 NF4 levels in bitsandbytes' order (QLoRA, Dettmers et al. 2023, appendix E).
NF4_LEVELS = torch.tensor([
    -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635,
    -0.18477343022823334, -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725,
    0.24611230194568634, 0.33791524171829224, 0.44070982933044434, 0.5626170039176941,
    0.7229568362236023, 1.0])


def quantize_nf4(w: torch.Tensor, blocksize: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """Blockwise absmax NF4 quantization of w (any shape, float32 or bfloat16).

    returns codes (w.numel(),) uint8 in 0..15   index of the nearest NF4 level to w / absmax[block]
            absmax (ceil(numel / blocksize),) float32   max |w| per block (the last block may be partial)
    """
    raise NotImplementedError
