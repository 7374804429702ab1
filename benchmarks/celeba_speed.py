"""`pairforge prep celeba` throughput per background method, peak memory per --workers, and rembg session reuse.

    python benchmarks/celeba_speed.py                         # n=200, a stand-in ONNX model for rembg
    python benchmarks/celeba_speed.py --n 1000 --model ~/.u2net/u2net.onnx

For `--bg none`, `grabcut` and `rembg` it prints images/s of pairforge (the real CLI in a subprocess, start-up
included) and of a single-process loop doing the same work in the same run, and their ratio. The rembg baseline is
the naive loop that calls `rembg.remove` with a new session per image; pairforge opens one session per worker
process, which the benchmark also counts directly (an in-process run: sessions created for n images). Peak memory
is the largest process's RSS of a run, for several --workers. Without --model, rembg runs a small stand-in U2-Net
shaped model (convolutions on 1x3x320x320): real u2net.onnx is far heavier per image and to open.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

SIZE = 256


def generate_celeba(root: Path, n: int) -> Path:
    """n aligned-face look-alikes (178x218 JPEG) and a partition file that puts them all in train."""
    images = root / "img_align_celeba"
    images.mkdir(parents=True)
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:218, 0:178]
    face = ((xx - 89) / 50) ** 2 + ((yy - 120) / 66) ** 2 <= 1
    names = []
    for i in range(n):
        image = rng.integers(10, 90, (218, 178, 3), dtype=np.uint8)
        image[face] = (160 + i % 60, 140, 120)
        names.append(f"{i + 1:06d}.jpg")
        cv2.imwrite(str(images / names[-1]), image, [cv2.IMWRITE_JPEG_QUALITY, 95])
    (root / "list_eval_partition.txt").write_text("".join(f"{name} 0\n" for name in names))
    return root


def standin_model(path: Path) -> Path:
    """A U2-Net-shaped ONNX model (1x3x320x320 -> 1x1x320x320 saliency) made of three convolutions."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    shapes = {"w1": (16, 3, 3, 3), "w2": (16, 16, 3, 3), "w3": (1, 16, 3, 3)}
    weights = [numpy_helper.from_array(rng.normal(0, 0.2, s).astype(np.float32), n) for n, s in shapes.items()]
    nodes = [
        helper.make_node("Conv", ["input.1", "w1"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2"], ["c2"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c2"], ["r2"]),
        helper.make_node("Conv", ["r2", "w3"], ["c3"], pads=[1, 1, 1, 1]),
        helper.make_node("Sigmoid", ["c3"], ["saliency"]),
    ]
    graph = helper.make_graph(
        nodes,
        "standin",
        [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, [1, 3, 320, 320])],
        [helper.make_tensor_value_info("saliency", TensorProto.FLOAT, [1, 1, 320, 320])],
        weights,
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8), path)
    return path


# Waits for one command and prints its tree's peak RSS. A small process of its own, because a child forked from
# this (large) benchmark process would report this process's memory as its own peak.
PEAK_RSS = """
import os, subprocess, sys
proc = subprocess.Popen(sys.argv[1:])
_, status, usage = os.wait4(proc.pid, 0)
print(usage.ru_maxrss, file=sys.stderr)
sys.exit(os.waitstatus_to_exitcode(status))
"""


def run_pairforge(args: list[str]) -> tuple[float, int, dict]:
    """`pairforge ARGS --json` in a fresh process: (seconds, peak RSS of its largest process in MiB, summary)."""
    start = time.perf_counter()
    command = [sys.executable, "-c", PEAK_RSS, sys.executable, "-m", "pairforge.cli", *args, "--json"]
    proc = subprocess.run(command, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode:
        raise SystemExit(f"pairforge {' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return seconds, int(proc.stderr.split()[-1]) // 1024, json.loads(proc.stdout)


def baseline(images: Path, out: Path, remove: Callable[[np.ndarray], np.ndarray] | None) -> float:
    """The single-process loop: read, centre crop, remove the background, resize, Canny, write A|B as PNG."""
    out.mkdir(parents=True)
    start = time.perf_counter()
    for path in sorted(images.iterdir()):
        photo = cv2.imread(str(path))
        top = (photo.shape[0] - photo.shape[1]) // 2
        photo = photo[top : top + photo.shape[1]]
        if remove is not None:
            photo = remove(photo)
        photo = cv2.resize(photo, (SIZE, SIZE), interpolation=cv2.INTER_CUBIC)
        edges = 255 - cv2.Canny(cv2.GaussianBlur(cv2.cvtColor(photo, cv2.COLOR_BGR2GRAY), (0, 0), 1.0), 50, 150)
        pair = np.concatenate([cv2.cvtColor(edges, cv2.COLOR_GRAY2BGR), photo], axis=1)
        cv2.imwrite(str(out / f"{path.stem}.png"), pair, [cv2.IMWRITE_PNG_COMPRESSION, 3])
    return time.perf_counter() - start


def grabcut_remove(photo: np.ndarray) -> np.ndarray:
    """A script's GrabCut: 5 iterations from the rectangle 0.1,0.05,0.9,1 (pairforge now seeds an aligned portrait
    and iterates twice; benchmarks/grabcut_quality.py compares the two on true masks)."""
    height, width = photo.shape[:2]
    mask = np.zeros((height, width), np.uint8)
    models = np.zeros((1, 65)), np.zeros((1, 65))
    rect = (width // 10, height // 20, width * 8 // 10, height * 19 // 20)
    cv2.grabCut(photo, mask, rect, *models, 5, cv2.GC_INIT_WITH_RECT)
    keep = (mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD)
    return np.where(keep[:, :, None], photo, 255).astype(np.uint8)


def naive_rembg(model: Path) -> Callable[[np.ndarray], np.ndarray]:
    """rembg as a quick script uses it: a new session for every image."""
    from rembg import new_session, remove

    def run(photo: np.ndarray) -> np.ndarray:
        os.environ["U2NET_HOME"] = str(model.parent)
        session = new_session("u2net_custom", model_path=str(model), providers=["CPUExecutionProvider"])
        return np.asarray(remove(photo, session=session, bgcolor=(255, 255, 255, 255)))[:, :, :3].copy()

    return run


def session_reuse(src: Path, out: Path, model: Path, n: int) -> dict:
    """Run `prep celeba --bg rembg --workers 1` in this process and count the rembg sessions it opened, next to
    the time one session takes to open (what every image would pay if sessions were not reused)."""
    import rembg

    from pairforge.cli import main
    from pairforge.prep.transforms.background import close_model, open_model

    start = time.perf_counter()
    close_model(open_model(str(model)))
    open_s = time.perf_counter() - start
    created = []
    real = rembg.new_session
    rembg.new_session = lambda *a, **k: created.append(a) or real(*a, **k)
    start = time.perf_counter()
    try:
        main(["prep", "celeba", str(src), str(out), "--bg-model", str(model), "--workers", "1", "-q"])
    except SystemExit as exc:
        if exc.code:
            raise
    finally:
        rembg.new_session = real
    per_image = (time.perf_counter() - start) / n
    return {"rembg_sessions_created": len(created), "images": n, "session_open_s": round(open_s, 3)} | {
        "seconds_per_image": round(per_image, 4)
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=200, help="images")
    parser.add_argument("--model", type=Path, help="a rembg model file (default: a stand-in)")
    args = parser.parse_args()
    cores = len(os.sched_getaffinity(0))
    print(f"cores: {cores}")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        src = generate_celeba(work / "celeba", args.n)
        model = (args.model or standin_model(work / "u2net.onnx")).expanduser().resolve()
        removers = {"none": None, "grabcut": grabcut_remove, "rembg": naive_rembg(model)}
        for bg, remove in removers.items():
            base_s = baseline(src / "img_align_celeba", work / f"base_{bg}", remove)
            extra = ["--bg-model", str(model)] if bg == "rembg" else []
            pf_s, peak, summary = run_pairforge(["prep", "celeba", str(src), str(work / bg), "--bg", bg, *extra])
            assert summary["written"] == args.n, summary
            result = {
                "bg": bg,
                "n": args.n,
                "baseline_images_per_s": round(args.n / base_s, 1),
                "pairforge_images_per_s": round(args.n / pf_s, 1),
                "ratio": round(base_s / pf_s, 2),
                "peak_rss_mib": peak,
            }
            print(json.dumps(result))
        for workers in sorted({1, 2, cores}):
            rembg_args = ["--bg-model", str(model), "--workers", str(workers)]
            _, peak, _ = run_pairforge(["prep", "celeba", str(src), str(work / f"w{workers}"), *rembg_args])
            print(json.dumps({"bg": "rembg", "workers": workers, "peak_rss_mib": peak}))
        print(json.dumps(session_reuse(src, work / "sessions", model, args.n)))


if __name__ == "__main__":
    main()
