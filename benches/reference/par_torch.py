"""Careful PyTorch PAR (AFA/ToCo): 48 shifted slices, weights precomputed, one thread.

The same-machine reference for `crates/wsss-refine/src/par.rs` (issue 5's "careful
rewrite"). Run: `python3 benches/reference/par_torch.py` (needs torch).
"""
import time, torch, torch.nn.functional as F
torch.set_num_threads(1)
def par_torch(img, masks, dil=(1,2,4,8,12,24), T=10, w1=0.3, w2=0.01):
    B,_,H,W = img.shape; K = masks.shape[1]; P = max(dil)
    offs = [(dy,dx) for d in dil for (dy,dx) in [(-d,-d),(-d,0),(-d,d),(0,-d),(0,d),(d,-d),(d,0),(d,d)]]
    ip = F.pad(img, (P,P,P,P), mode='replicate')
    nb = torch.stack([ip[:,:,P+dy:P+dy+H,P+dx:P+dx+W] for dy,dx in offs], 2)  # B,3,48,H,W
    std = nb.std(2, keepdim=True)
    aff = -((nb - img.unsqueeze(2)).abs() / (std + 1e-8) / w1) ** 2
    aff = aff.mean(1, keepdim=True).softmax(2)
    rho = torch.tensor([ (dy*dy+dx*dx)**0.5 for dy,dx in offs])
    pos = (-(rho / (rho.std() + 1e-8) / w1) ** 2).softmax(0) * w2
    wts = aff + pos.view(1,1,-1,1,1)   # B,1,48,H,W
    del nb, aff
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
    img = torch.rand(1,3,side,side, generator=g); masks = torch.rand(1,21,side,side, generator=g)
    c0, t0 = time.process_time(), time.time()
    par_torch(img, masks)
    print(f"torch careful PAR {side}x{side} K=21: {time.process_time()-c0:.2f} s cpu, {time.time()-t0:.2f} s wall")
