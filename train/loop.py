"""The training loop of `pairforge train`, to be read top to bottom: run folder, data, model, loop.

Steps are counted globally; epoch e covers steps [e * steps_per_epoch, (e + 1) * steps_per_epoch). Everything
random is either a function of (seed, epoch) (the data plan) or in the checkpointed RNG state (init, dropout,
noise, CycleGAN's pool draws; the pools' contents are checkpointed too), so `--continue` from any checkpoint
continues exactly as the uninterrupted run would have.
"""

from __future__ import annotations

import shutil
import sys
import time

import torch

from pairforge.errors import PairforgeError, UsageError
from pairforge.invocation import command_line
from pairforge.train import checkpoints
from pairforge.train.config import TrainConfig
from pairforge.train.data import PairCache, TrainBatches, UnalignedBatches, UnalignedCache, find_pairs, find_unaligned
from pairforge.train.fast import Speed, build_step, resolve_device
from pairforge.train.loggers import Loggers
from pairforge.train.models import build_model
from pairforge.train.runlog import JsonlLog, LossMeter, RunDir, non_finite, progress_bar, save_grid, write_atomic
from pairforge.train.streaming import ShardStream, StreamBatches, find_shards, shard_urls


def train(cfg: TrainConfig, resume: bool = False, overwrite: bool = False, quiet: bool = False) -> dict:
    """Train pix2pix or CycleGAN as `cfg` says (resuming from the run's latest checkpoint if `resume`);
    returns a summary."""
    # ---- run folder ------------------------------------------------------------------------------------
    cycle = cfg.model == "cycle_gan"  # unaligned <phase>A, <phase>B; else paired ab/split, or webdataset shards
    stream = not cycle and shard_urls(cfg.dataroot, cfg.phase) is not None
    if cycle:  # a wrong --dataroot fails before any write
        files = find_unaligned(cfg.dataroot, cfg.phase, cfg.direction, cfg.max_dataset_size)
    elif stream:
        files = find_shards(cfg.dataroot, cfg.phase, cfg.max_dataset_size)
    else:
        files = find_pairs(cfg.dataroot, cfg.phase, cfg.max_dataset_size)
    run = RunDir(cfg.runs_dir / cfg.name)
    latest = run.checkpoint("latest")
    if overwrite and not resume:
        shutil.rmtree(run.root, ignore_errors=True)
    if resume and not latest.is_file():
        raise UsageError(f"--continue: no checkpoint to continue from at {latest}")
    if not resume and run.checkpoints.is_dir() and any(run.checkpoints.iterdir()):
        raise UsageError(f"run {run.root} already has checkpoints: use --continue, --overwrite or another --name")
    run.root.mkdir(parents=True, exist_ok=True)
    device = resolve_device(cfg.device)
    speed = Speed.choose(cfg, device)
    torch.backends.cudnn.benchmark = True  # every batch has the same shape

    # ---- data: decode once into a cache of the stored dtype (on the GPU when it fits), crops on its device --
    source, batcher = (UnalignedCache, UnalignedBatches) if cycle else (PairCache, TrainBatches)
    if stream:  # webdataset shards: read each epoch, nothing cached (streaming.py)
        source, batcher = ShardStream, StreamBatches
    cache = source.load(files, cfg).place(device)
    cfg = cfg.model_copy(update={"codings": cache.codings})  # what the values mean: test and translate read it
    write_atomic(run.config, cfg.model_dump_json(indent=2).encode())
    batches = batcher(cache, cfg, device, speed.channels_last)
    steps_per_epoch = batches.steps_per_epoch
    total_steps = steps_per_epoch * cfg.total_epochs
    stop_at = min(total_steps, cfg.max_steps or total_steps)

    # ---- model, optimizers, state ------------------------------------------------------------------------
    model = build_model(cfg, device, speed)
    step = checkpoints.load(latest, model) if resume else 0
    plan_epoch = step // steps_per_epoch
    plan = batches.plan(plan_epoch)
    model.set_lr(cfg.lr * cfg.lr_factor(plan_epoch + 1))
    if speed.compile and not quiet:
        print(f"{cfg.name}: {speed.describe()}: compiling the training step (a minute or two)", file=sys.stderr)
    train_step = build_step(model, speed, *batches.batch(plan, 0))

    # ---- loop ------------------------------------------------------------------------------------------
    meter = LossMeter(model.loss_names, device)
    last_good = latest if resume else None
    losses: dict[str, float] = {}
    started, mark_time, mark_step, first_step = time.perf_counter(), time.perf_counter(), step, step
    loggers = Loggers(cfg.logger.split(",") if cfg.logger else [], cfg, run.root)
    with JsonlLog(run.log) as log, loggers, progress_bar(quiet) as progress:
        event = {"event": "resume" if resume else "start", "step": step, "mode": speed.describe()}
        log.write(event | {"device": str(device), "command": command_line()})
        task = progress.add_task(cfg.name, total=stop_at, completed=step, rate="")
        while step < stop_at:
            epoch, index = divmod(step, steps_per_epoch)
            if epoch != plan_epoch:  # a new epoch: new order, crops and flips; the lr of the linear decay
                plan_epoch, plan = epoch, batches.plan(epoch)
                model.set_lr(cfg.lr * cfg.lr_factor(epoch + 1))
            inputs, targets = batches.batch(plan, index)  # cycle_gan: real A, real B
            step_losses, outputs = train_step(inputs, targets)
            meter.add(step_losses)
            step += 1
            progress.update(task, completed=step)

            end_of_epoch = step % steps_per_epoch == 0
            save_epoch = end_of_epoch and (epoch + 1) % cfg.save_epoch_freq == 0
            save_latest = save_epoch or step % cfg.save_latest_freq == 0 or step == stop_at
            if step % cfg.print_freq == 0 or save_latest:  # the only host sync: read the loss means back
                losses = meter.read()
                now = time.perf_counter()
                rate = (step - mark_step) * cfg.batch_size / (now - mark_time)
                record = {"step": step, "epoch": epoch + 1, "lr": cfg.lr * cfg.lr_factor(epoch + 1)}
                if device.type == "cuda":  # what `pairforge run --pack` sizes its packing by
                    record["gpu_mib"] = round(torch.cuda.max_memory_reserved(device) / 2**20)
                log.write(record | {"img_per_s": round(rate, 2), "seconds": round(now - mark_time, 4)} | losses)
                loggers.scalars(
                    step, {"lr": record["lr"], "img_per_s": rate} | {f"loss/{k}": v for k, v in losses.items()}
                )
                progress.update(task, rate=f"{rate:,.1f} img/s")
                mark_time, mark_step = now, step
                bad = non_finite(losses)
                if bad:
                    log.write({"event": "nonfinite", "step": step, "loss": bad, "last_good": str(last_good)})
                    raise PairforgeError(
                        f"loss {bad} is {losses[bad]} by step {step}: training stopped; last good checkpoint:"
                        f" {last_good or 'none yet'} (try a lower --lr or check the data)"
                    )
            if step % cfg.display_freq == 0:  # cycle_gan: real A | fake B | real B
                grid = save_grid(run.samples / f"step_{step:07d}.png", [inputs, outputs, targets])
                loggers.image(step, grid)
            if save_epoch:
                checkpoints.save(run.checkpoint(epoch + 1), model, step)
                checkpoints.link(run.checkpoint(epoch + 1), latest)
            elif save_latest:
                checkpoints.save(latest, model, step)
            last_good = latest if save_latest else last_good

        seconds = time.perf_counter() - started
        summary = {
            "run": str(run.root),
            "steps": step,
            "epochs": round(step / steps_per_epoch, 3),
            "images_per_s": round((step - first_step) * cfg.batch_size / seconds, 2) if step > first_step else 0.0,
            "seconds": round(seconds, 2),
            "losses": losses,
            "checkpoint": str(latest),
            "device": str(device),
            "mode": speed.describe(),
            "cache": f"{cache.nbytes / 2**20:.1f} MiB on {cache.device}",
        }
        log.write({"event": "stop", **summary})
    return summary
