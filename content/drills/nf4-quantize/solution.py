import torch

NF4_LEVELS = torch.tensor([
    -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635,
    -0.18477343022823334, -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725,
    0.24611230194568634, 0.33791524171829224, 0.44070982933044434, 0.5626170039176941,
    0.7229568362236023, 1.0])


def quantize_nf4(w: torch.Tensor, blocksize: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    flat = w.reshape(-1).float()                                      # (n,)
    n = flat.numel()
    n_blocks = -(-n // blocksize)                                     # ceil: a partial tail is its own block
    padded = torch.nn.functional.pad(flat, (0, n_blocks * blocksize - n))
    blocks = padded.view(n_blocks, blocksize)                         # (B, bs)
    absmax = blocks.abs().amax(dim=1)                                 # (B,)  zero padding never raises a max
    s = blocks / absmax.clamp(min=1e-38)[:, None]                     # (B, bs) in [-1, 1]
    midpoints = (NF4_LEVELS[1:] + NF4_LEVELS[:-1]) / 2                # (15,) sorted
    codes = torch.bucketize(s.reshape(-1), midpoints)                 # nearest level, one binary search
    return codes[:n].to(torch.uint8), absmax
