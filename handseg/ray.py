"""Segment folders of photos with Ray Data, on this machine or a Ray cluster: one command, resumable.

    pip install "handseg[ray]"
    python -m handseg.ray -i photos/ -o masks/ [--actors 2] [--batch-size 8] [--address auto]
                          [--gpus-per-actor 1] [--model NAME] [--backend auto] [--skip-existing | --overwrite]

Each actor holds one model (`handseg.Segmenter`, built once) and reads, segments and writes its share
of the photos: `masks/<stem>_mask.png`, named as `handseg segment` names them (two inputs with one stem
get `<stem>_<ext>_mask.png`). The job is the CLI's, run by Ray:

- planned before any work (`handseg.jobs`): an output that is an input is refused; outputs that exist
  are kept (`--skip-existing`: a re-run continues an interrupted one and does nothing twice) or
  replaced (`--overwrite`) only when asked; the output folder is made and checked writable once;
- a photo that cannot be read or written is recorded in `masks/handseg_failures.csv` (path, reason)
  and the others go on; each mask is written under a temporary name and renamed when complete;
- it ends with one line: written, skipped, failed.

Without `--address` a local Ray instance is started (and stopped) for the job; `--address auto` (or
`ray://host:10001`) joins an existing cluster unchanged, where the input and output folders must be on
storage every node sees. On GPU nodes, `--gpus-per-actor 1` gives each actor a GPU (the Segmenter then
runs on CUDA).
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from handseg.hardware import default_threads
from handseg.image import MAX_PIXELS, ImageLoadError, save_image
from handseg.jobs import RunPlan, Tally, UsageError, plan_run
from handseg.segmenter import BACKENDS, Segmenter
from handseg.visualize import mask_to_image

FAILURES_FILE = "handseg_failures.csv"


class MaskWriter:
    """Ray Data's map_batches callable: one Segmenter per actor; each batch of {"path", "output"} rows is
    read, segmented and written, and comes back as rows of path, output, status and error."""

    def __init__(self, model: str | None = None, *, threshold: float = 0.5, max_pixels: int = MAX_PIXELS, **options):
        self.segmenter = Segmenter(model, **options)
        self.threshold, self.max_pixels = threshold, max_pixels

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, Any]:
        paths, outputs = [str(p) for p in batch["path"]], [str(o) for o in batch["output"]]
        status, errors = ["written"] * len(paths), [""] * len(paths)
        results = self.segmenter.iter_segment(paths, threshold=self.threshold, max_pixels=self.max_pixels)
        for index, result in results:
            try:
                if isinstance(result, ImageLoadError):
                    raise result
                save_image(mask_to_image(result.mask), outputs[index])
            except (ImageLoadError, OSError) as exc:  # the path has its own column: the reason alone
                status[index], errors[index] = "failed", exc.reason if isinstance(exc, ImageLoadError) else str(exc)
        runs = [self.segmenter.describe()] * len(paths)  # what ran, said by the driver at the end
        return {"path": paths, "output": outputs, "status": status, "error": errors, "runner": runs}


def plan_job(patterns: Sequence[str], out_dir: Path, *, skip_existing: bool, overwrite: bool) -> RunPlan:
    """The CLI's planning (`handseg.jobs.plan_run`) for masks in `out_dir`; videos are left out."""
    return plan_run(patterns, [f"{out_dir}/"], skip_existing=skip_existing, overwrite=overwrite, videos=False)


def run(
    jobs: list[tuple[Path, Path]],
    *,
    actors: int = 1,
    batch_size: int = 8,
    gpus_per_actor: float = 0,
    **writer_options,
) -> list[dict]:
    """Run the jobs on the Ray instance this process is connected to; one row per job."""
    import ray

    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False  # the job's own closing line says what happened
    rows = [{"path": str(p), "output": str(o)} for p, o in jobs]
    dataset = ray.data.from_items(rows, override_num_blocks=max(1, min(len(rows), 4 * actors)))
    results = dataset.map_batches(
        MaskWriter,
        fn_constructor_kwargs=writer_options,
        concurrency=actors,
        batch_size=batch_size,
        num_gpus=gpus_per_actor or None,
    )
    return results.take_all()


def report(rows: list[dict], out_dir: Path, tally: Tally) -> Tally:
    """Count the rows and write the failures file (or remove a stale one)."""
    failures = [r for r in rows if r["status"] != "written"]
    tally.written += len(rows) - len(failures)
    tally.failed += len(failures)
    target = out_dir / FAILURES_FILE
    if failures:
        with open(target, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["path", "reason"])
            writer.writerows([r["path"], r["error"]] for r in sorted(failures, key=lambda r: r["path"]))
    else:
        target.unlink(missing_ok=True)
    return tally


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m handseg.ray", description=__doc__.splitlines()[0])
    parser.add_argument("-i", "--input", nargs="+", required=True, metavar="IN", help="image files, folders or globs")
    parser.add_argument("-o", "--output", required=True, type=Path, help="folder for the masks")
    parser.add_argument("--model", default=None, help="hub folder, repo id or shipped model name (default: shipped)")
    parser.add_argument("--backend", choices=BACKENDS, default="auto", help="as for handseg segment")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda where an actor has a GPU)")
    parser.add_argument("--threshold", type=float, default=0.5)
    parser.add_argument("--actors", type=int, default=1, help="Ray actors, each with its own model (default 1)")
    parser.add_argument("--threads", type=int, help="CPU threads per actor (default: half the cores / actors)")
    parser.add_argument("--batch-size", type=int, default=8, help="photos per batch handed to an actor")
    parser.add_argument("--gpus-per-actor", type=float, default=0, help="GPUs each actor asks Ray for")
    parser.add_argument("--address", help="an existing Ray cluster (auto, or ray://host:port); default: start one")
    existing = parser.add_mutually_exclusive_group()
    existing.add_argument("--skip-existing", action="store_true", help="keep masks that exist (continue a run)")
    existing.add_argument("--overwrite", action="store_true", help="replace masks that exist")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        import ray
    except ImportError:
        print('handseg ray: error: needs Ray: pip install "handseg[ray]"', file=sys.stderr)
        return 2
    try:
        plan = plan_job(args.input, args.output, skip_existing=args.skip_existing, overwrite=args.overwrite)
    except UsageError as exc:
        print(f"handseg ray: error: {exc}", file=sys.stderr)
        return 2
    if plan.videos_left_out:
        videos = plan.videos_left_out
        print(
            f"handseg ray: left out {len(videos)} video(s) (handseg segment does videos): {videos[0]}", file=sys.stderr
        )
    todo = plan.jobs
    tally = Tally(skipped=len(plan.skipped), folders={args.output})
    if todo:
        started_here = not ray.is_initialized()
        if started_here:
            ray.init(address=args.address, log_to_driver=False, configure_logging=False)
        try:
            threads = args.threads or (None if args.gpus_per_actor else default_threads(concurrent=args.actors))
            rows = run(
                todo,
                actors=args.actors,
                batch_size=args.batch_size,
                gpus_per_actor=args.gpus_per_actor,
                model=args.model,
                backend=args.backend,
                device=args.device,
                threads=threads,
                threshold=args.threshold,
            )
        finally:
            if started_here:
                ray.shutdown()
        report(rows, args.output, tally)
        for described in sorted({row["runner"] for row in rows}):
            print(f"handseg ray: {described} (each of {args.actors} actor{'s' if args.actors != 1 else ''})")
    print(
        f"handseg ray: {tally.line()}" + (f"; failures listed in {args.output / FAILURES_FILE}" if tally.failed else "")
    )
    return 1 if tally.failed else 0


if __name__ == "__main__":
    sys.exit(main())
