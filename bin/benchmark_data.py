#!/usr/bin/env python
"""Peak host memory of a training run against the size of an image-folder dataset.

    python bin/benchmark_data.py                      # 25,000 and 50,000 images
    python bin/benchmark_data.py --images=10000,20000 --streams=on

Generates class-folder trees of random 32x32 PNGs (10 classes; CIFAR-sized
at 50,000), then for every size and --stream setting runs `bin/train.py` in
a fresh process (DARTS_V2, 3 cells, C=8, batch 64, --steps steps, no export)
and prints one JSON line with the child's peak resident memory and wall
time. Streamed, the peak should not grow with the number of images; decoded
into memory (--stream=off) it grows with them.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import flags  # noqa: E402

from autonet_tf import cli  # noqa: E402

flags.DEFINE_list("images", ["25000", "50000"], "Dataset sizes (images).")
flags.DEFINE_list("streams", ["on", "off"], "--stream settings to compare.")
flags.DEFINE_integer("steps", 20, "Training steps per run.")
flags.DEFINE_string("directory", "/tmp/autonet_data_benchmark", "Scratch directory.")
FLAGS = flags.FLAGS

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def make_folder(path: str, count: int, classes: int = 10, size: int = 32) -> None:
    import numpy as np
    from PIL import Image

    done = os.path.join(path, ".complete")
    if os.path.exists(done):
        return
    rng = np.random.default_rng(count)
    for c in range(classes):
        os.makedirs(os.path.join(path, f"class_{c}"), exist_ok=True)
    for i in range(count):
        pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(os.path.join(path, f"class_{i % classes}", f"{i:06d}.png"))
    open(done, "w").close()


def main(argv):
    del argv
    import json
    import platform
    import shutil
    import subprocess
    import time

    try:
        sizes = [int(n) for n in FLAGS.images]
    except ValueError as e:
        cli.fail(f"--images: {e}")
    bad = [s for s in FLAGS.streams if s not in ("on", "off", "auto")]
    if bad or min(sizes) < 100 or FLAGS.steps <= 0:
        cli.fail("expected --images of at least 100, --streams among on, off, auto and "
                 "--steps > 0")
    for count in sizes:
        folder = os.path.join(FLAGS.directory, f"images_{count}")
        print(f"Generating {count:,} images in {folder} (once) ...", flush=True)
        make_folder(folder, count)
        for stream in FLAGS.streams:
            run = os.path.join(FLAGS.directory, f"run_{count}_{stream}")
            shutil.rmtree(run, ignore_errors=True)
            started = time.time()
            # A fresh launcher per run, so RUSAGE_CHILDREN is that one run's peak.
            proc = subprocess.run(
                [sys.executable, "-c", LAUNCHER, sys.executable,
                 os.path.join(ROOT, "bin", "train.py"), f"--dataset={folder}",
                 f"--stream={stream}", "--genotype=DARTS_V2", "--layers=3",
                 "--init_channels=8", "--epochs=1", "--batch_size=64",
                 f"--max_steps_per_epoch={FLAGS.steps}", "--noauxiliary", "--noexport",
                 "--noprogress", f"--model_dir={run}"],
                capture_output=True, text=True, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
            seconds = time.time() - started
            lines = proc.stdout.strip().splitlines()
            if proc.returncode != 0 or not lines or not lines[-1].startswith("peak_kb="):
                cli.fail(f"bin/train.py failed ({proc.returncode}): {proc.stderr[-500:]}", 1)
            peak_kb = int(lines[-1].split("=")[1])
            print(json.dumps({
                "benchmark": "image_folder_peak_rss", "images": count, "stream": stream,
                "peak_rss_gb": round(peak_kb / 2 ** 20, 3), "seconds": round(seconds, 1),
                "machine": f"{platform.machine()} {os.cpu_count()} cpus"}), flush=True)


LAUNCHER = """
import resource, subprocess, sys
code = subprocess.run(sys.argv[1:]).returncode
print("peak_kb=%d" % resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
sys.exit(code)
"""


if __name__ == "__main__":
    cli.run(main)
