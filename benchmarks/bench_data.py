"""
Throughput of the synthetic corpus: pose-text records and rendered images per second.

Targets (from the corpus's requirements, single process on this 2-core machine):

- pose-text records, captioning and writing included: at least 1,000 per second;
- images (render + JPEG encoding): 20,000 in 10 minutes, i.e. at least 33.3 per second.

Measured in the same run:

- `caption_poses`: the captioner on sampled poses (3 captions each), poses per second;
- `pose_text_corpus`: `build_synthetic_corpus(kinds=("pose_text",))` end to end (sampling, heading
  normalisation, kinematics, captions, `datasets` tables, `save_to_disk`), records per second;
- `render`: `BodyRenderer.render` + JPEG encoding of sampled poses and scenes, images per second;
- `image_pose_corpus`: `build_synthetic_corpus(kinds=("image_pose",))` end to end, records per second;
- baseline: the project's matplotlib picture (`unipose.visualization.render_pose`) against the rasteriser.

Rates are given per wall-clock second (what `meets_target` judges) and per CPU second of this process: on a
machine shared with other work the first drops, the second much less.

    python benchmarks/bench_data.py
    python benchmarks/bench_data.py --num-records 1000 --num-images 128 --out /tmp/data.json

Writes `benchmarks/results/data.json`.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from report import write_report  # noqa: E402

from unipose.body_model import BodyModel
from unipose.data.captioning import caption_poses
from unipose.data.rendering import BodyRenderer, sample_scenes
from unipose.data.synthetic import JPEG_QUALITY, build_synthetic_corpus
from unipose.pose_sampler import sample_poses

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "data.json"
TARGET_POSE_TEXT_RECORDS_PER_SECOND = 1000.0
TARGET_IMAGES = 20_000
TARGET_IMAGE_SECONDS = 600.0
TARGET_IMAGES_PER_SECOND = TARGET_IMAGES / TARGET_IMAGE_SECONDS


def median_seconds(function, repeats: int) -> tuple[float, float]:
    """
    Median wall time and median CPU time of this process (all its threads) of `repeats` calls, after one
    warm-up call. On a shared machine the wall time depends on the other load; the CPU time much less.
    """
    function()
    wall, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        function()
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return statistics.median(wall), statistics.median(cpu)


def rates(count: int, seconds: tuple[float, float], unit: str) -> dict[str, float]:
    wall, cpu = seconds
    return {f"{unit}_per_second": count / wall, f"{unit}_per_cpu_second": count / cpu}


def encode_jpeg(images: np.ndarray) -> list[bytes]:
    from PIL import Image

    encoded = []
    for image in images:
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="JPEG", quality=JPEG_QUALITY, subsampling=0)
        encoded.append(buffer.getvalue())
    return encoded


def build_seconds(kind: str, count: int, body_model, repeats: int) -> tuple[float, float]:
    """Median seconds of writing a corpus of one kind with `count` records to a fresh temporary directory."""
    counter = iter(range(10**6))

    def build():
        with tempfile.TemporaryDirectory() as directory:
            build_synthetic_corpus(
                Path(directory) / f"corpus{next(counter)}",
                num=count,
                num_images=count,
                seed=0,
                kinds=(kind,),
                contact_sheet=False,
                body_model=body_model,
            )

    return median_seconds(build, repeats)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--num-records", type=int, default=2000, help="pose-text records and captioned poses")
    parser.add_argument("--num-images", type=int, default=256, help="images rendered per timing")
    parser.add_argument("--num-baseline-images", type=int, default=16, help="matplotlib pictures (slow)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()

    results: dict[str, dict] = {}
    poses = sample_poses(args.num_records, seed=0)

    # 1. Captions and pose-text records.
    seconds = median_seconds(lambda: caption_poses(poses, num_captions=3, seed=0), args.repeats)
    results["caption_poses"] = {**rates(len(poses), seconds, "poses"), "captions_per_pose": 3}
    body_model = BodyModel("generated")
    seconds = build_seconds("pose_text", args.num_records, body_model, args.repeats)
    results["pose_text_corpus"] = {
        **rates(args.num_records, seconds, "records"),
        "target_records_per_second": TARGET_POSE_TEXT_RECORDS_PER_SECOND,
        "meets_target": args.num_records / seconds[0] >= TARGET_POSE_TEXT_RECORDS_PER_SECOND,
    }

    # 2. Images: the renderer with JPEG encoding, and whole image_pose records.
    renderer = BodyRenderer(body_model)
    image_poses = poses[: args.num_images]
    scenes = sample_scenes(len(image_poses), np.random.default_rng(0))
    seconds = median_seconds(lambda: encode_jpeg(renderer.render(image_poses, scenes)), args.repeats)
    images_per_second = len(image_poses) / seconds[0]
    results["render"] = {
        **rates(len(image_poses), seconds, "images"),
        "image_size": renderer.image_size,
        "seconds_for_20000_images": TARGET_IMAGES / images_per_second,
        "target_images_per_second": TARGET_IMAGES_PER_SECOND,
        "meets_target": images_per_second >= TARGET_IMAGES_PER_SECOND,
    }
    seconds = build_seconds("image_pose", args.num_images, body_model, max(1, args.repeats - 2))
    results["image_pose_corpus"] = {
        **rates(args.num_images, seconds, "records"),
        "target_records_per_second": TARGET_IMAGES_PER_SECOND,
        "meets_target": args.num_images / seconds[0] >= TARGET_IMAGES_PER_SECOND,
    }

    # 3. The baseline, in the same run.
    try:
        from unipose.visualization import render_pose
    except ImportError as error:  # matplotlib is an optional extra
        results["matplotlib_baseline"] = {"skipped": str(error)}
    else:
        few = image_poses[: args.num_baseline_images]
        size = (renderer.image_size, renderer.image_size)
        seconds, _ = median_seconds(lambda: [render_pose(pose, size=size) for pose in few], 1)
        baseline = len(few) / seconds
        results["matplotlib_baseline"] = {
            "images_per_second": baseline,
            "renderer_speedup": images_per_second / baseline,
        }

    payload = {
        "benchmark": "data",
        "num_records": args.num_records,
        "num_images": args.num_images,
        "results": results,
        # Wall-clock rates drop when other processes share the cores; the CPU-time rates show what one
        # free core gives.
        "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
    }
    return write_report(args.out, payload)


if __name__ == "__main__":
    raise SystemExit(main())
