"""The training loop of `pairforge train`, to be read top to bottom: run folder, data, model, loop.

Steps are counted globally; epoch e covers steps [e * steps_per_epoch, (e + 1) * steps_per_epoch). Everything
random is either a function of (seed, epoch) (the data plan) or in the checkpointed RNG state (init, dropout,
noise, CycleGAN's pool draws; the pools' contents are checkpointed too), so `--continue` from any checkpoint
continues exactly as the uninterrupted run would have.

Under torchrun (DDP, see distributed.py) a step is one global batch: each rank trains on its own slice of it
and rank 0 alone writes the run folder.
"""

from __future__ import annotations

import sys
import time

import torch

from pairforge.errors import PairforgeError, UsageError
from pairforge.invocation import command_line
from pairforge.train import checkpoints
from pairforge.train.config import TrainConfig
from pairforge.train.data import PairCache, TrainBatches, UnalignedBatches, UnalignedCache, find_pairs, find_unaligned
from pairforge.train.distributed import World, check_sync_bn, rescale_step
from pairforge.train.fast import Speed, build_step
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
    run = RunDir.for_training(cfg.runs_dir, cfg.name)
    latest = run.checkpoint("latest")
    world = World.from_env()  # rank 0 of 1 unless launched by torchrun
    device = world.device(cfg.device)
    check_sync_bn(cfg.sync_bn, cfg.norm, device)
    if resume and not latest.is_file():
        raise UsageError(f"--continue: no checkpoint to continue from at {latest}")
    if not (resume or overwrite) and run.checkpoints.is_dir() and any(run.checkpoints.iterdir()):
        raise UsageError(f"run {run.root} already has checkpoints: use --continue, --overwrite or another --name")
    cfg = cfg.model_copy(update={"world_size": world.size})  # config.json and checkpoints record it
    global_batch = cfg.batch_size * world.size
    if world.is_main:
        if overwrite and not resume:
            run.clear()
        run.root.mkdir(parents=True, exist_ok=True)
    world.start(device)  # joins the other ranks (after rank 0 has cleared the run folder)
    quiet = quiet or not world.is_main
    speed = Speed.choose(cfg, device, world.distributed)
    for note in speed.notes if not quiet else ():
        print(f"{cfg.name}: {note}", file=sys.stderr)
    if world.distributed and not quiet:
        print(f"{cfg.name}: {world.size} ranks x batch {cfg.batch_size} = global batch {global_batch}", file=sys.stderr)
    torch.backends.cudnn.benchmark = True  # every batch has the same shape

    # ---- data: decode once into a cache of the stored dtype (on the GPU when it fits), crops on its device --
    if stream:  # webdataset shards: read each epoch, nothing cached (streaming.py)
        if world.distributed:
            raise UsageError("--dataroot: streaming webdataset shards runs in one process; train from folders")
        cache = ShardStream.load(files, cfg)
        batches = StreamBatches(cache, cfg, device, speed.channels_last)
    else:
        load = UnalignedCache.load if cycle else PairCache.load
        cache = world.gather(load(world.share(files), cfg)).place(device)  # DDP: each rank decodes its share
        batches = (UnalignedBatches if cycle else TrainBatches)(
            cache, cfg, device, speed.channels_last, world.rank, world.size
        )
    cfg = cfg.model_copy(update={"codings": cache.codings})  # what the values mean: test and translate read it
    if world.is_main:
        write_atomic(run.config, cfg.model_dump_json(indent=2).encode())
    steps_per_epoch = batches.steps_per_epoch
    total_steps = steps_per_epoch * cfg.total_epochs
    stop_at = min(total_steps, cfg.max_steps or total_steps)

    # ---- model, optimizers, state ------------------------------------------------------------------------
    model = build_model(cfg, device, speed)  # DDP-wrapped under torchrun
    step = checkpoints.load(latest, model) if resume else 0
    if resume:  # saved with another global batch (world size): the same epoch, as far into it
        step = rescale_step(step, checkpoints.read_metadata(latest), global_batch, steps_per_epoch)
    world.seed(cfg.seed, step)  # DDP: a random stream per rank
    lr = cfg.lr * (world.size if cfg.lr_scale == "linear" else 1)
    plan_epoch = step // steps_per_epoch
    plan = batches.plan(plan_epoch)
    model.set_lr(lr * cfg.lr_factor(plan_epoch + 1))
    if speed.compile and not quiet:
        print(f"{cfg.name}: {speed.describe()}: compiling the training step (a minute or two)", file=sys.stderr)
    train_step = build_step(model, speed, *batches.batch(plan, 0))

    # ---- loop ------------------------------------------------------------------------------------------
    meter = LossMeter(model.loss_names, device, world.mean)
    last_good = latest if resume else None
    losses: dict[str, float] = {}
    started, mark_time, mark_step, first_step = time.perf_counter(), time.perf_counter(), step, step
    position = {"global_batch": global_batch, "steps_per_epoch": steps_per_epoch}  # in checkpoints, for rescale_step
    loggers = Loggers(cfg.logger.split(",") if cfg.logger and world.is_main else [], cfg, run.root)
    with JsonlLog(run.log if world.is_main else None) as log, loggers, progress_bar(quiet) as progress:
        event = {"event": "resume" if resume else "start", "step": step, "mode": speed.describe()}
        log.write(event | {"device": str(device), "world_size": world.size, "command": command_line()})
        task = progress.add_task(cfg.name, total=stop_at, completed=step, rate="")
        while step < stop_at:
            epoch, index = divmod(step, steps_per_epoch)
            if epoch != plan_epoch:  # a new epoch: new order, crops and flips; the lr of the linear decay
                plan_epoch, plan = epoch, batches.plan(epoch)
                model.set_lr(lr * cfg.lr_factor(epoch + 1))
            inputs, targets = batches.batch(plan, index)  # cycle_gan: real A, real B
            step_losses, outputs = train_step(inputs, targets)
            meter.add(step_losses)
            step += 1
            progress.update(task, completed=step)
            if step == first_step + 1:  # how long start-up took (data, compilation, capture): one sync, once
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                log.write({"event": "first_step", "step": step})  # the log stamps every record with its time

            end_of_epoch = step % steps_per_epoch == 0
            save_epoch = end_of_epoch and (epoch + 1) % cfg.save_epoch_freq == 0
            save_latest = save_epoch or step % cfg.save_latest_freq == 0 or step == stop_at
            if step % cfg.print_freq == 0 or save_latest:  # the only host sync: read the loss means back
                losses = meter.read()  # averaged over the ranks
                now = time.perf_counter()
                rate = (step - mark_step) * global_batch / (now - mark_time)
                record = {"step": step, "epoch": epoch + 1, "lr": lr * cfg.lr_factor(epoch + 1)}
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
            if step % cfg.display_freq == 0 and world.is_main:  # cycle_gan: real A | fake B | real B
                grid = save_grid(run.samples / f"step_{step:07d}.png", [inputs, outputs, targets])
                loggers.image(step, grid)
            if save_epoch and world.is_main:
                checkpoints.save(run.checkpoint(epoch + 1), model, step, **position)
                checkpoints.link(run.checkpoint(epoch + 1), latest)
            elif save_latest and world.is_main:
                checkpoints.save(latest, model, step, **position)
            last_good = latest if save_latest else last_good

        seconds = time.perf_counter() - started
        summary = {
            "run": str(run.root),
            "steps": step,
            "epochs": round(step / steps_per_epoch, 3),
            "images_per_s": round((step - first_step) * global_batch / seconds, 2) if step > first_step else 0.0,
            "seconds": round(seconds, 2),
            "losses": losses,
            "checkpoint": str(latest),
            "device": str(device),
            "world_size": world.size,
            "mode": speed.describe(),
            "cache": f"{cache.nbytes / 2**20:.1f} MiB on {cache.device}",
        }
        log.write({"event": "stop", **summary})
    world.stop()
    return summary
