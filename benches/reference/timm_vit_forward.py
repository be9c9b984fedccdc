"""timm's DeiT-S/16 forward at 224 on the CPU, batch 1 and 8: the reference for
benches/benches/vit_forward.rs. Prints the median of N timed runs after warm-up.

    pip install torch timm && python3 benches/reference/timm_vit_forward.py [--threads 2]
"""
import argparse
import statistics
import time

import timm
import torch

parser = argparse.ArgumentParser()
parser.add_argument("--threads", type=int, default=2)
parser.add_argument("--runs", type=int, default=10)
args = parser.parse_args()
torch.set_num_threads(args.threads)
model = timm.create_model("deit_small_patch16_224", pretrained=False).eval()
for batch in (1, 8):
    x = torch.zeros(batch, 3, 224, 224)
    with torch.inference_mode():
        for _ in range(3):
            model(x)
        times = []
        for _ in range(args.runs):
            t0 = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - t0)
    print(f"timm deit_small_patch16_224 batch {batch}: median {statistics.median(times) * 1e3:.1f} ms "
          f"(torch {torch.__version__}, {args.threads} threads, {args.runs} runs)")
