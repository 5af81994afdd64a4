"""Segmenting a folder of photos with each engine: photos per second and the overhead each adds.

    python benchmarks/scale.py [--photos 400] [--data ../shared/data] [--engines bare,cli,datasets,ray]

The same photos (real train and val photos of every source with hands and without, never the test
split), the shipped model on its default path, one thread per process:
  bare          one Segmenter in this process, a loop over the files (masks not written): the floor
  cli           `handseg segment -i FOLDER -o OUT -q` in a fresh process (model load included)
  datasets N    `ds.map(handseg.HandSegmenter(), batched=True, num_proc=N)` on a Dataset of the files
                (decode=False), masks stored as PNG in the dataset; a fresh map, not the cache
  ray N         `handseg ray`'s job on a local Ray instance with N actors (the instance's
                start is timed apart), masks written as PNG files
Overhead per photo: (engine seconds x processes - bare seconds) / photos: the time each engine adds to
the work itself, summed over its processes.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import handseg
from train import DEFAULT_DATA
from train.data import load_split

SOURCES = ["egohands", "hgr", "handphotos", "indoor", "negatives", "hand_free_scenes"]


def gather(data: Path, count: int, folder: Path) -> list[Path]:
    """`count` photos from the train and val splits, sources interleaved, linked into `folder`."""
    split = load_split(data, sources=SOURCES)
    by_source: dict[str, list[str]] = {}
    for ds in (split.train, split.val):
        for row in ds:
            by_source.setdefault(row["source"], []).append(row["image"]["path"])
    paths = [p for group in zip(*(sorted(v) for v in by_source.values())) for p in group]
    paths += [p for v in by_source.values() for p in sorted(v)][: max(0, count - len(paths))]
    links = []
    for i, path in enumerate(paths[:count]):
        link = folder / f"{i:04d}_{Path(path).name}"
        link.symlink_to(Path(path).resolve())
        links.append(link)
    return links


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=400)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--engines", default="bare,cli,datasets,ray")
    args = parser.parse_args()
    engines = args.engines.split(",")
    work = Path(tempfile.mkdtemp(prefix="handseg-scale-"))
    (work / "photos").mkdir()
    photos = gather(args.data, args.photos, work / "photos")
    n = len(photos)
    timings: dict[str, tuple[float, int]] = {}  # name -> (seconds, processes)

    segmenter = handseg.Segmenter(threads=1)
    segmenter(photos[0])  # loaded and warm, as the engines' own first batch is not
    started = time.perf_counter()
    for _ in segmenter.iter_segment(photos):
        pass
    timings["bare (one Segmenter, no writing)"] = (time.perf_counter() - started, 1)

    if "cli" in engines:
        started = time.perf_counter()
        command = [
            sys.executable,
            "-m",
            "handseg",
            "segment",
            "-q",
            "-i",
            str(work / "photos"),
            "-o",
            str(work / "cli"),
        ]
        subprocess.run([*command, "--threads", "1"], check=True)
        timings["cli, 1 process"] = (time.perf_counter() - started, 1)

    if "datasets" in engines:
        import datasets

        ds = datasets.Dataset.from_dict({"image": [str(p) for p in photos]})
        ds = ds.cast_column("image", datasets.Image(decode=False))
        for processes in (1, 2):
            mapper = handseg.HandSegmenter(threads=1, processes=processes)
            started = time.perf_counter()
            ds.map(mapper, batched=True, batch_size=16, num_proc=processes if processes > 1 else None,
                   load_from_cache_file=False)  # fmt: skip
            timings[f"datasets.map, num_proc {processes}"] = (time.perf_counter() - started, processes)

    ray_start = None
    if "ray" in engines:
        import ray

        from handseg.cli import ray as ray_job
        from handseg.jobs import plan_run

        started = time.perf_counter()
        ray.init(num_cpus=handseg.usable_cores(), include_dashboard=False, log_to_driver=False, configure_logging=False)
        ray_start = time.perf_counter() - started
        try:
            for actors in (1, 2):
                out = work / f"ray{actors}"
                todo = plan_run([str(work / "photos")], [f"{out}/"], videos=False).jobs
                started = time.perf_counter()
                ray_job.run(todo, {"threads": 1}, {}, actors=actors, batch_size=16)
                timings[f"Ray Data, {actors} actor{'s' * (actors > 1)}"] = (time.perf_counter() - started, actors)
        finally:
            ray.shutdown()

    bare = timings["bare (one Segmenter, no writing)"][0]
    sides = [max(handseg.load_image(p).shape[:2]) for p in photos]
    print(f"{n} photos (mean {sum(p.stat().st_size for p in photos) / n / 1024:.0f} KB, longer side "
          f"{min(sides)}-{max(sides)} px); {segmenter.describe()}; {handseg.usable_cores()} cores")  # fmt: skip
    masks = list((work / "cli").glob("*_mask.png"))
    if masks:
        print(f"masks as PNG: mean {sum(m.stat().st_size for m in masks) / len(masks) / 1024:.1f} KB")
    print()
    print("| engine | seconds | photos/s | overhead per photo, ms (summed over processes) |")
    print("|---|---:|---:|---:|")
    for name, (seconds, processes) in timings.items():
        overhead = (seconds * processes - bare) / n * 1000
        print(f"| {name} | {seconds:.1f} | {n / seconds:.1f} | {overhead:.0f} |")
    if ray_start is not None:
        print()
        print(f"Ray's local instance took {ray_start:.1f} s to start (once per job, not counted above).")


if __name__ == "__main__":
    main()
