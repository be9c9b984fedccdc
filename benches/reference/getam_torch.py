"""GETAM's attention gradients in PyTorch on timm's DeiT-S/16 (random weights), CPU: the
same-machine reference for `cam_224|448/getam_*` in benches/benches/cam.rs.

Two forms, K = 3 classes, medians of N timed runs after warm-up:
- `authors`: one `.backward()` per class with the graph retained and the weights requiring
  grad, so weight gradients are formed too (GETAM's code);
- `best`: one forward, then one backward carrying the K cotangents at once
  (`is_grads_batched`), activations only (no weight requires grad), the graph starting at
  block `start_layer` (its input is the only leaf);
- `activations-only loop`: the same graph, K backwards.
Plus the plain forward for scale.

    pip install torch timm && python3 benches/reference/getam_torch.py [--threads 2] [--size 224]
"""
import argparse
import statistics
import time

import timm
import timm.layers
import torch

parser = argparse.ArgumentParser()
parser.add_argument("--threads", type=int, default=2)
parser.add_argument("--runs", type=int, default=10)
parser.add_argument("--size", type=int, default=224)
parser.add_argument("--start-layer", type=int, default=6)
args = parser.parse_args()
torch.set_num_threads(args.threads)
timm.layers.set_fused_attn(False)  # the attention matrix must exist to be differentiated
model = timm.create_model("deit_small_patch16_224", pretrained=False, num_classes=20,
                          img_size=args.size).eval()
classes = [3, 7, 11]
attn = []
for blk in model.blocks:
    # timm's Attention applies attn_drop right after the softmax: its input is A.
    blk.attn.attn_drop.register_forward_hook(lambda m, i, o: attn.append(o))
x = torch.randn(1, 3, args.size, args.size)


def median_ms(fn):
    for _ in range(2):
        fn()
    times = []
    for _ in range(args.runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def forward():
    attn.clear()
    with torch.inference_mode():
        model(x)


def authors():
    """GETAM's code: weights require grad, `.backward()` per class on the retained graph
    (weight gradients included), the attention gradients read from `retain_grad`."""
    for p in model.parameters():
        p.requires_grad_(True)
    attn.clear()
    logits = model(x)
    for a in attn:
        a.retain_grad()
    grads = []
    for c in classes:
        model.zero_grad()
        for a in attn:
            a.grad = None
        logits[0, c].backward(retain_graph=True)
        grads.append([a.grad for a in attn[args.start_layer:]])
    return grads


def partial_graph():
    """Logits from a graph that starts at block `start_layer` (no weight requires grad)."""
    for p in model.parameters():
        p.requires_grad_(False)
    attn.clear()
    with torch.no_grad():
        h = model.pos_drop(model._pos_embed(model.patch_embed(x)))
        for blk in model.blocks[: args.start_layer]:
            h = blk(h)
    h = h.detach().requires_grad_(True)
    attn.clear()
    for blk in model.blocks[args.start_layer:]:
        h = blk(h)
    return model.forward_head(model.norm(h))


def best():
    logits = partial_graph()
    cot = torch.zeros(len(classes), 1, logits.shape[1])
    for k, c in enumerate(classes):
        cot[k, 0, c] = 1.0
    return torch.autograd.grad(logits, attn, grad_outputs=cot, is_grads_batched=True)


print(f"torch {torch.__version__}, {args.threads} threads, {args.size}x{args.size}, "
      f"K = {len(classes)}, start_layer {args.start_layer}, {args.runs} runs")
print(f"forward: {median_ms(forward):.1f} ms")
def activations_loop():
    logits = partial_graph()
    return [torch.autograd.grad(logits[0, c], attn, retain_graph=True) for c in classes]


print(f"getam best form (batched cotangents): {median_ms(best):.1f} ms")
print(f"getam activations-only loop: {median_ms(activations_loop):.1f} ms")
print(f"getam authors' loop: {median_ms(authors):.1f} ms")
