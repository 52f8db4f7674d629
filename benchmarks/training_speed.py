"""Where a VAE training step's time goes on this machine, and what threads, batch size and memory layout change.

Part 1 times each part of the real training step (:class:`geoinv.prior.training._Trainer`,
the shipped architecture on the shipped training image): drawing the batch of
crops, the VAE's forward pass and loss, the backward pass, Adam's update, and
the adversarial stage (decoding prior draws, the critic's loss and update).
Part 2 measures training throughput (crops per second) of the whole step
side by side in one process, for each variant: torch threads (1 and all
cores), batch size, the adversarial stage on or off, channels-last memory
layout and ``torch.compile`` (``TrainConfig(compile=True)``; its one-off compile
is timed apart, as ``first_step_s``); each variant is timed for ``--seconds`` after a warm-up, alternating
so that machine noise falls on all of them alike (``--rounds``).

Run: ``python -m benchmarks training_speed [--quick]``. Writes ``results/training_speed.json``.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from _common import print_table, write_json

from geoinv.prior import default_training_image
from geoinv.prior.adversarial import discriminator_loss, generator_loss
from geoinv.prior.training import TrainConfig, _Trainer
from geoinv.prior.vae import VAEConfig, vae_loss


def trainer(folder: Path, batch_size: int, adversarial: float, channels_last: bool = False,
            compiled: bool = False, device: str = "cpu", mixed_precision: str = "off") -> _Trainer:
    config = TrainConfig(batch_size=batch_size, adversarial=adversarial, seed=0, compile=compiled,
                         mixed_precision=mixed_precision)
    name = f"speed-{batch_size}-{adversarial}-{compiled}-{mixed_precision}.pt"
    run = _Trainer(default_training_image(), folder / name, VAEConfig(),
                   config, device, 0.1, "")
    if channels_last:
        run.vae.to(memory_format=torch.channels_last)
        if run.critic is not None:
            run.critic.to(memory_format=torch.channels_last)
    run.vae.train()
    return run


def part_times(run: _Trainer, steps: int) -> dict[str, float]:
    """Mean seconds per step of each part of ``_Trainer.train_step``, timed one after another.

    A copy of that step with timers between its parts; it leaves out the adversarial term's adaptive
    weight (one more gradient of the last decoder layer), so the adversarial share is a lower bound.
    The throughput rows run the real step.
    """
    config, totals = run.config, dict.fromkeys(("batch", "forward", "backward", "adam", "adversarial"), 0.0)
    for _ in range(steps):
        started = time.perf_counter()
        batch = run.sampler.train_batch(config.batch_size, run.generator)
        totals["batch"] += time.perf_counter() - started
        started = time.perf_counter()
        logits, mean, logvar = run.vae(batch, generator=run.generator)
        loss = vae_loss(logits, batch, mean, logvar, config.kl_weight(1000), config.reconstruction)[0]
        totals["forward"] += time.perf_counter() - started
        started = time.perf_counter()
        if run.critic is not None and run.critic_optimizer is not None:
            latent = torch.randn(config.adversarial_batch, run.vae.latent_dim, generator=run.generator)
            fake = run.vae.decode(latent)
            loss = loss + generator_loss(run.critic, fake, run.sampler.train_proportion, config.proportion_weight)
        adversarial = time.perf_counter() - started
        started = time.perf_counter()
        run.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        totals["backward"] += time.perf_counter() - started
        started = time.perf_counter()
        run.optimizer.step()
        totals["adam"] += time.perf_counter() - started
        started = time.perf_counter()
        if run.critic is not None and run.critic_optimizer is not None:
            real = run.sampler.train_batch(config.adversarial_batch, run.generator)
            critic_loss = discriminator_loss(run.critic, real, fake.detach())
            run.critic_optimizer.zero_grad(set_to_none=True)
            critic_loss.backward()
            run.critic_optimizer.step()
        totals["adversarial"] += adversarial + time.perf_counter() - started
    return {key: value / steps for key, value in totals.items()}


def throughput(run: _Trainer, seconds: float) -> float:
    """Crops per second of the whole training step."""
    steps, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        run.train_step()
        steps += 1
    if run.device.type == "cuda":
        torch.cuda.synchronize(run.device)  # the queued steps count only once they are done
    return steps * run.config.batch_size / (time.perf_counter() - started)


VARIANTS = {  # name: (threads, batch size, adversarial, channels-last, compiled[, mixed precision]); threads 0 = all
    "1 thread, batch 100": (1, 100, 0.0, False, False),
    "all cores, batch 100": (0, 100, 0.0, False, False),
    "all cores, batch 200": (0, 200, 0.0, False, False),
    "all cores, batch 50": (0, 50, 0.0, False, False),
    "all cores, batch 100, channels-last": (0, 100, 0.0, True, False),
    "1 thread, batch 100, compiled": (1, 100, 0.0, False, True),
    "all cores, batch 100, compiled": (0, 100, 0.0, False, True),
    "1 thread, batch 100, adversarial": (1, 100, 2.0, False, False),
    "all cores, batch 100, adversarial": (0, 100, 2.0, False, False),
    "1 thread, batch 100, bf16": (1, 100, 0.0, False, False, "bf16"),
    "all cores, batch 100, bf16": (0, 100, 0.0, False, False, "bf16"),
    "all cores, batch 100, adversarial, bf16": (0, 100, 2.0, False, False, "bf16"),
}

#: with --device cuda: the same fields (threads unused); "device, batch 100" is the baseline
DEVICE_VARIANTS = {
    "device, batch 100": (0, 100, 0.0, False, False),
    "device, batch 400": (0, 400, 0.0, False, False),
    "device, batch 100, channels-last": (0, 100, 0.0, True, False),
    "device, batch 100, compiled": (0, 100, 0.0, False, True),
    "device, batch 100, adversarial": (0, 100, 2.0, False, False),
    "device, batch 100, bf16": (0, 100, 0.0, False, False, "bf16"),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="two variants, half a second each: checks the script")
    parser.add_argument("--seconds", type=float, default=20.0, help="timed seconds per variant and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--part-steps", type=int, default=20, help="steps timed part by part")
    parser.add_argument("--name", default="training_speed")
    parser.add_argument("--variants", nargs="+", choices=sorted(VARIANTS), metavar="VARIANT",
                        help="time only these variants (default all; '1 thread, batch 100' is always timed)")
    parser.add_argument("--no-parts", action="store_true", help="skip part 1 (the step's time by part)")
    parser.add_argument("--device", default="cpu", help="cuda: time DEVICE_VARIANTS on the GPU (no part 1)")
    args = parser.parse_args()
    on_device = args.device != "cpu"
    variants, baseline_name = (dict(DEVICE_VARIANTS), "device, batch 100") if on_device else \
        (dict(VARIANTS), "1 thread, batch 100")
    args.no_parts = args.no_parts or on_device
    if args.variants:
        variants = {name: variants[name] for name in dict.fromkeys([baseline_name, *args.variants])}
    if args.quick:
        args.seconds, args.rounds, args.part_steps = 0.5, 1, 1
        variants = {name: variants[name] for name in ("1 thread, batch 100", "all cores, batch 100")}
    cores = len(os.sched_getaffinity(0))
    with tempfile.TemporaryDirectory() as folder:
        torch.set_num_threads(cores)
        parts = []
        for adversarial in () if args.no_parts else (0.0, 2.0):
            run = trainer(Path(folder), 100, adversarial)
            part_times(run, 1)  # warm-up
            times = part_times(run, args.part_steps)
            total = sum(times.values())
            parts.append({"adversarial": adversarial, "total_s": total,
                          **{f"{key}_s": value for key, value in times.items()},
                          **{f"{key}_pct": 100 * value / total for key, value in times.items()}})
        runs = {name: trainer(Path(folder), batch, adversarial, layout, compiled, args.device, *precision)
                for name, (_, batch, adversarial, layout, compiled, *precision) in variants.items()}
        compile_s = {}
        for name, run in runs.items():  # the first step compiles: timed apart from the throughput
            torch.set_num_threads(variants[name][0] or cores)
            started = time.perf_counter()
            run.train_step()
            compile_s[name] = time.perf_counter() - started
        rates: dict[str, list[float]] = {name: [] for name in variants}
        for _ in range(args.rounds):
            for name, (threads, *_) in variants.items():
                torch.set_num_threads(threads or cores)
                throughput(runs[name], min(2.0, args.seconds))  # warm-up at this thread count
                rates[name].append(throughput(runs[name], args.seconds))
    baseline = float(np.median(rates[baseline_name]))
    rows = [{"variant": name, "crops_per_s": float(np.median(values)), "spread": float(np.ptp(values)),
             "vs_1_thread": float(np.median(values)) / baseline, "first_step_s": compile_s[name]}
            for name, values in rates.items()]
    if parts:
        print_table(parts, [("adversarial", "adversarial", ".0f"), ("total_s", "s/step", ".3f"),
                            ("batch_pct", "batch %", ".1f"), ("forward_pct", "forward+loss %", ".1f"),
                            ("backward_pct", "backward %", ".1f"), ("adam_pct", "Adam %", ".1f"),
                            ("adversarial_pct", "adversarial %", ".1f")])
        print()
    print_table(rows, [("variant", "variant", ""), ("crops_per_s", "crops/s", ".0f"), ("spread", "spread", ".0f"),
                       ("vs_1_thread", f"× {baseline_name}", ".2f"), ("first_step_s", "first step s", ".1f")])
    where = torch.cuda.get_device_name(args.device) if on_device else f"{cores} cores"
    print(f"\n{where}; median over {args.rounds} rounds of {args.seconds:g} s per variant, side by side.")
    write_json(args.name, {"cores": cores, "device": where, "baseline": baseline_name, "parts": parts, "rows": rows,
                           "args": vars(args)})


if __name__ == "__main__":
    main()
