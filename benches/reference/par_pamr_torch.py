"""Careful PyTorch PAR (AFA/ToCo) and PAMR (GETAM): the 48 neighbours as shifted slices of
a replicate-padded tensor, the affinity computed once, 10 propagation steps; one thread.

The same-machine reference ("careful rewrite" of issue 5) for
`crates/wsss-refine/src/{par,pamr}.rs` and `cargo bench -p wsss-benches --bench refine`.

    pip install torch && python3 benches/reference/par_pamr_torch.py
"""
import time

import torch
import torch.nn.functional as F

torch.set_num_threads(1)
DILATIONS = (1, 2, 4, 8, 12, 24)
OFFSETS = [(dy, dx) for d in DILATIONS
           for (dy, dx) in [(-d, -d), (-d, 0), (-d, d), (0, -d), (0, d), (d, -d), (d, 0), (d, d)]]
PAD = max(DILATIONS)


def neighbours(x):
    """[B, C, 48, H, W]: x at each ring offset (replicate padding)."""
    h, w = x.shape[-2:]
    xp = F.pad(x, (PAD, PAD, PAD, PAD), mode="replicate")
    return torch.stack([xp[:, :, PAD + dy:PAD + dy + h, PAD + dx:PAD + dx + w]
                        for dy, dx in OFFSETS], 2)


def propagate(weights, masks, steps=10):
    """masks(p) <- sum_j weights_j(p) masks(p + offset_j), `steps` times."""
    h, w = masks.shape[-2:]
    for _ in range(steps):
        mp = F.pad(masks, (PAD, PAD, PAD, PAD), mode="replicate")
        out = torch.zeros_like(masks)
        for j, (dy, dx) in enumerate(OFFSETS):
            out.addcmul_(weights[:, :, j], mp[:, :, PAD + dy:PAD + dy + h, PAD + dx:PAD + dx + w])
        masks = out
    return masks


def par(img, masks, w1=0.3, w2=0.01):
    nb = neighbours(img)
    std = nb.std(2, keepdim=True)
    aff = (-((nb - img.unsqueeze(2)).abs() / (std + 1e-8) / w1) ** 2).mean(1, keepdim=True)
    rho = torch.tensor([(dy * dy + dx * dx) ** 0.5 for dy, dx in OFFSETS])
    pos = (-(rho / (rho.std() + 1e-8) / w1) ** 2).softmax(0) * w2
    return propagate(aff.softmax(2) + pos.view(1, 1, -1, 1, 1), masks)


def pamr(img, masks):
    nb = neighbours(img)
    samples = torch.cat([nb, img.unsqueeze(2).expand(-1, -1, len(DILATIONS), -1, -1)], 2)
    std = samples.std(2, keepdim=True)
    aff = (-(img.unsqueeze(2) - nb).abs() / (1e-8 + 0.1 * std)).mean(1, keepdim=True)
    return propagate(aff.softmax(2), masks)


for name, fn, scale in (("PAR", par, 1.0), ("PAMR", pamr, 255.0)):
    for side in (256, 512):
        g = torch.Generator().manual_seed(0)
        img = torch.rand(1, 3, side, side, generator=g) * scale
        masks = torch.rand(1, 21, side, side, generator=g)
        c0, t0 = time.process_time(), time.time()
        fn(img, masks)
        print(f"torch careful {name} {side}x{side} K=21: {time.process_time() - c0:.2f} s cpu, "
              f"{time.time() - t0:.2f} s wall")
