"""`handseg ray`: folders of photos segmented with Ray Data, on this machine or a Ray cluster; resumable.

    pip install "handseg[ray]"
    handseg ray -i photos/ -o masks/ [--actors 2] [--batch-size 8] [--address auto] [--gpus-per-actor 1]
                [--model NAME] [--backend auto] [--max-side N] [--crf] [--skip-existing | --overwrite]
    python -m handseg.ray ...     (the same command)

Each actor holds one model (`handseg.Segmenter`, built once) and reads, segments and writes its share
of the photos: `masks/<stem>_mask.png`, named as `handseg segment` names them. The job is the CLI's,
run by Ray:

- planned before any work (`handseg.jobs.plan_run`): an output that is an input is refused; outputs
  that exist are kept (`--skip-existing`: a re-run continues an interrupted one and does nothing twice)
  or replaced (`--overwrite`) only when asked; the output folder is made and checked writable once;
- the same loop as the CLI's (`handseg.jobs.run_jobs`): a photo that cannot be read or written is
  recorded in `masks/handseg_failures.csv` (path, reason) and the others go on; each mask is written
  under a temporary name and renamed when complete;
- it ends with what ran (model, backend, threads per actor) and one line: written, skipped, failed.

Without `--address` a local Ray instance is started (and stopped) for the job; `--address auto` (or
`ray://host:10001`) joins an existing cluster unchanged, where the input and output folders must be on
storage every node sees. On GPU nodes, `--gpus-per-actor 1` gives each actor a GPU (the Segmenter then
runs on CUDA).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from handseg.cli.options import check_segmenter_flags, error, say, segmenter_options
from handseg.jobs import Tally, UsageError, plan_run, run_jobs
from handseg.segmenter import Segmenter

FAILURES_FILE = "handseg_failures.csv"


class MaskWriter:
    """Ray Data's map_batches callable: one Segmenter per actor (built from `segmenter_options`); each
    batch of {"path", "output"} rows is read, segmented and written, and comes back as rows of path,
    output, status, error and what ran."""

    def __init__(self, segmenter_options: dict[str, Any], run_options: dict[str, Any]) -> None:
        self.segmenter = Segmenter(**segmenter_options)
        self.run_options = run_options

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, Any]:
        jobs = [(Path(p), Path(o)) for p, o in zip(batch["path"], batch["output"])]
        status, errors = ["written"] * len(jobs), [""] * len(jobs)
        for outcome in run_jobs(self.segmenter, jobs, **self.run_options):
            if outcome.error is not None:  # the path has its own column: the reason alone
                status[outcome.index], errors[outcome.index] = "failed", outcome.reason
        crf = ", dense-CRF refinement" if self.run_options.get("crf") else ""
        ran = [self.segmenter.describe() + crf] * len(jobs)
        return {"path": [str(p) for p, _ in jobs], "output": [str(o) for _, o in jobs], "status": status,
                "error": errors, "runner": ran}  # fmt: skip


def run(
    jobs: list[tuple[Path, Path]],
    segmenter_options: dict[str, Any],
    run_options: dict[str, Any],
    *,
    actors: int = 1,
    batch_size: int = 8,
    gpus_per_actor: float = 0,
) -> list[dict]:
    """Run the jobs on the Ray instance this process is connected to; one row per job."""
    import ray

    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False  # the job's own closing line says what happened
    rows = [{"path": str(p), "output": str(o)} for p, o in jobs]
    dataset = ray.data.from_items(rows, override_num_blocks=max(1, min(len(rows), 4 * actors)))
    results = dataset.map_batches(
        MaskWriter,
        fn_constructor_args=(segmenter_options, run_options),
        compute=ray.data.ActorPoolStrategy(size=actors),
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


@contextlib.contextmanager
def ray_output(verbose: bool, prog: str) -> Iterator[None]:
    """Ray's own lines (its start, its executor's INFO lines, its C++ core's warnings) go to a log file
    instead of the user's terminal, unless `verbose`; the file is named when the job fails, else removed.
    Ray writes some of them from C++ and from processes it starts, so the process's own output
    descriptors are redirected, not Python's loggers alone."""
    if verbose:
        yield
        return
    log = tempfile.NamedTemporaryFile(prefix="handseg-ray-", suffix=".log", delete=False)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    os.dup2(log.fileno(), 1)
    os.dup2(log.fileno(), 2)
    failed = True
    try:
        yield
        failed = False
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        os.close(saved[0])
        os.close(saved[1])
        log.close()
        if failed:
            print(f"{prog}: Ray's output is in {log.name}", file=sys.stderr)
        else:
            os.unlink(log.name)


def cmd_ray(args: argparse.Namespace) -> int:
    prog = "handseg ray"
    try:
        import ray
    except ImportError:
        return error('needs Ray: pip install "handseg[ray]"', prog)
    if problem := check_segmenter_flags(args):
        return error(problem, prog)
    if args.actors < 1:
        return error(f"--actors must be at least 1, got {args.actors}", prog)
    try:  # the CLI's planning; videos are left out (handseg segment does them)
        planned = plan_run(args.input, [f"{args.output}/"], skip_existing=args.skip_existing,
                           overwrite=args.overwrite, videos=False, recursive=args.recursive)  # fmt: skip
    except UsageError as exc:
        return error(str(exc), prog)
    if planned.videos_left_out:
        videos = planned.videos_left_out
        print(f"{prog}: left out {len(videos)} video(s) (handseg segment does videos): {videos[0]}", file=sys.stderr)
    tally = Tally(skipped=len(planned.skipped), folders={args.output})
    if planned.jobs:
        # Each actor builds its own Segmenter from these options; the cores are shared among the actors.
        options = {"model": args.model, **segmenter_options(args), "concurrent": args.actors}
        if args.gpus_per_actor and args.device is None:
            options["device"] = "cuda"
        run_options = {"threshold": args.threshold, "crf": args.crf}
        started_here = not ray.is_initialized()
        with ray_output(args.verbose, prog):
            if started_here:
                ray.init(address=args.address, log_to_driver=False, configure_logging=False)
            try:
                rows = run(planned.jobs, options, run_options, actors=args.actors, batch_size=args.batch_size,
                           gpus_per_actor=args.gpus_per_actor)  # fmt: skip
            finally:
                if started_here:
                    ray.shutdown()
        report(rows, args.output, tally)
        for ran in sorted({row["runner"] for row in rows}):
            say(f"{ran} (each of {args.actors} actor{'s' if args.actors != 1 else ''})", args, prog)
    if tally.failed:
        print(f"{prog}: {tally.line()}; failures listed in {args.output / FAILURES_FILE}", file=sys.stderr)
    else:
        say(tally.line(), args, prog)
    return 1 if tally.failed else 0
