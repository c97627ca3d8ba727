"""Seconds per training step (batch 8, 224 crops, bf16 autocast where supported) for every model.

Planning aid for long training runs: multiply by steps per epoch (ceil(train images / 8)).
Usage: python benchmarks/train_step_time.py [--steps 4] [--models NAME ...]
"""

import argparse
import time

import torch
import torch.nn.functional as F

from garbseg.models import build_model, list_models
from garbseg.core.machine import cpu_supports_bf16


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--models", nargs="*", default=list_models())
    args = parser.parse_args()
    bf16 = cpu_supports_bf16()
    print(f"threads {torch.get_num_threads()}, bf16 {bf16}, batch {args.batch_size}, size {args.size}")
    x = torch.randn(args.batch_size, 3, args.size, args.size)
    y = torch.randint(0, 7, (args.batch_size, args.size, args.size))
    for name in args.models:
        model = build_model(name, num_classes=7, aux_loss=not name.endswith("lraspp")).train()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
        times = []
        for step in range(args.steps + 1):  # the first step warms up
            t0 = time.perf_counter()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                out = model(x)
            loss = sum(F.cross_entropy(v.float(), y) for v in out.values())
            opt.zero_grad()
            loss.backward()
            opt.step()
            if step:
                times.append(time.perf_counter() - t0)
        times.sort()
        print(f"{name:32s} {times[len(times) // 2]:.2f} s/step")


if __name__ == "__main__":
    main()
