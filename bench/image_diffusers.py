"""Training throughput of genlab's diffusion U-Net step against Hugging Face diffusers' UNet2DModel
with the closest configuration, same batch, same loss and optimizer, measured side by side in one process
(rounds alternate between the two so that CPU contention hits both alike).

    pip install diffusers   # for this bench only; genlab does not depend on it
    python bench/image_diffusers.py --side 8 --batch 64 --rounds 5 --steps 10

Writes bench/results/image_diffusers.json.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from genlab.models.unet import UNet
from genlab.sampling.diffusion import NoiseSchedule


def main() -> None:
    load_at_start = list(os.getloadavg())  # stated beside the figures: a busy machine understates them
    ap = argparse.ArgumentParser()
    ap.add_argument("--side", type=int, default=8)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=10, help="optimizer steps per round and model")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads; 1 because on a shared CPU two threads can run 30x slower (oversubscription)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from diffusers import UNet2DModel

    torch.manual_seed(0)
    ours = UNet(UNet.Config(channels=32, channel_mult=[1, 2], n_res=1, heads=4), (1, args.side, args.side), num_classes=10)
    # Closest diffusers layout: 2 levels (32, 64), one resnet per level, attention at the low level and in
    # the middle, GroupNorm(8), learned class embedding added to the time embedding.
    theirs = UNet2DModel(sample_size=args.side, in_channels=1, out_channels=1, layers_per_block=1, block_out_channels=(32, 64),
                         down_block_types=("DownBlock2D", "AttnDownBlock2D"), up_block_types=("AttnUpBlock2D", "UpBlock2D"),
                         norm_num_groups=8, attention_head_dim=16, num_class_embeds=11)
    schedule = NoiseSchedule("cosine", 1000)
    x0 = torch.rand(args.batch, 1, args.side, args.side) * 2 - 1
    y = torch.randint(0, 10, (args.batch,))
    models = {
        "genlab": (ours, lambda xt, t: ours(xt, t, y)),
        "diffusers": (theirs, lambda xt, t: theirs(xt, t, class_labels=y).sample),
    }
    opts = {k: torch.optim.AdamW(m.parameters(), lr=1e-4) for k, (m, _) in models.items()}
    times = {k: [] for k in models}

    def step(name):
        model, forward = models[name]
        t = torch.randint(0, 1000, (args.batch,))
        noise = torch.randn_like(x0)
        loss = F.mse_loss(forward(schedule.add_noise(x0, noise, t), t), noise)
        loss.backward()
        opts[name].step()
        opts[name].zero_grad(set_to_none=True)

    for name in models:  # warm up
        for _ in range(2):
            step(name)
    for _ in range(args.rounds):
        for name in models:
            t0 = time.perf_counter()
            for _ in range(args.steps):
                step(name)
            times[name].append((time.perf_counter() - t0) / args.steps)
    result = {"side": args.side, "batch": args.batch, "threads": torch.get_num_threads(),
              "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "load_avg_at_start": load_at_start,
              "params": {k: sum(p.numel() for p in m.parameters()) for k, (m, _) in models.items()}}
    for name in models:
        best = min(times[name])
        median = sorted(times[name])[len(times[name]) // 2]
        result[name] = {"median_step_s": median, "best_step_s": best, "images_per_s_median": args.batch / median}
    result["genlab_speedup_median"] = result["diffusers"]["median_step_s"] / result["genlab"]["median_step_s"]
    print(json.dumps(result, indent=2))
    dest = Path(__file__).parent / "results" / "image_diffusers.json"
    dest.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
