"""Careful PyTorch PAMR (GETAM): 48 shifted slices, weights precomputed, one thread.

The same-machine reference for `crates/wsss-refine/src/pamr.rs` (issue 5's "careful
rewrite"). Run: `python3 benches/reference/pamr_torch.py` (needs torch).
"""
import time, torch, torch.nn.functional as F
torch.set_num_threads(1)
def pamr_torch(img, masks, dil=(1,2,4,8,12,24), T=10):
    B,_,H,W = img.shape; P = max(dil)
    offs = [(dy,dx) for d in dil for (dy,dx) in [(-d,-d),(-d,0),(-d,d),(0,-d),(0,d),(d,-d),(d,0),(d,d)]]
    ip = F.pad(img, (P,P,P,P), mode='replicate')
    nb = torch.stack([ip[:,:,P+dy:P+dy+H,P+dx:P+dx+W] for dy,dx in offs], 2)
    samples = torch.cat([nb, img.unsqueeze(2).expand(-1,-1,len(dil),-1,-1)], 2)
    std = samples.std(2, keepdim=True)
    aff = -(img.unsqueeze(2) - nb).abs() / (1e-8 + 0.1 * std)
    wts = aff.mean(1, keepdim=True).softmax(2)
    del nb, samples, aff
    m = masks
    for _ in range(T):
        mp = F.pad(m, (P,P,P,P), mode='replicate')
        out = torch.zeros_like(m)
        for j,(dy,dx) in enumerate(offs):
            out.addcmul_(wts[:,:,j], mp[:,:,P+dy:P+dy+H,P+dx:P+dx+W])
        m = out
    return m
for side in (256, 512):
    g = torch.Generator().manual_seed(0)
    img = torch.rand(1,3,side,side, generator=g)*255; masks = torch.rand(1,21,side,side, generator=g)
    c0, t0 = time.process_time(), time.time()
    pamr_torch(img, masks)
    print(f"torch careful PAMR {side}x{side} K=21: {time.process_time()-c0:.2f} s cpu, {time.time()-t0:.2f} s wall")
