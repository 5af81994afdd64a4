"""`handseg segment` (images and videos) and `handseg video` (videos only): masks written as files."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from handseg.cli.options import build_segmenter, check_segmenter_flags, error, names, say
from handseg.hardware import DeviceUnavailableError
from handseg.jobs import RunPlan, Tally, UsageError, is_video, plan_run, run_jobs
from handseg.pretrained import NoDefaultModelError
from handseg.segmenter import Segmenter
from handseg.video import VideoError, segment_video


def pictures(args: argparse.Namespace) -> list[str]:
    """What each image's job writes beside its mask (`Segmentation.save`'s kinds)."""
    return [kind for kind, wanted in (("hands", args.hands is True), ("overlay", args.overlay and not args.videos_only),
                                  ("viz", args.viz)) if wanted]  # fmt: skip


def plan(args: argparse.Namespace) -> RunPlan:
    """The run the flags describe (`handseg.jobs.plan_run`), saying what it left out or renamed."""
    planned = plan_run(
        args.input,
        args.output,
        skip_existing=args.skip_existing,
        overwrite=args.overwrite,
        overlay_video=args.overlay,
        pictures=pictures(args),
        images=not args.videos_only,
        recursive=args.recursive,
    )
    if planned.own_outputs:
        say(f"skipped {len(planned.own_outputs)} file(s) that handseg wrote (name them on their own to segment "
            f"them): {names([Path(p.name) for p in planned.own_outputs])}", args)  # fmt: skip
    if planned.renamed:
        say(f"{len(planned.renamed)} inputs would share an output name with another input; theirs are named "
            "<stem>_<extension>_mask.png, numbered where that is not enough:", args)  # fmt: skip
        for source, target in planned.renamed:
            say(f"  {source} -> {target}", args)
    if planned.skipped:
        say(f"skipped {len(planned.skipped)} file(s) whose output already exists (--skip-existing): "
            f"{names([Path(p.name) for p in planned.skipped])}", args)  # fmt: skip
    return planned


def cmd_segment(args: argparse.Namespace) -> int:
    if problem := check_segmenter_flags(args):
        return error(problem)
    try:
        planned = plan(args)
    except UsageError as exc:
        return error(str(exc))
    jobs, skipped = planned.jobs, len(planned.skipped)
    tally = Tally(skipped=skipped, folders={o.parent for _, o in jobs}, pictures=pictures(args))
    if not jobs:
        say(f"nothing to do: all {skipped} output(s) exist already (--skip-existing)", args)
        return 0
    try:
        segmenter = build_segmenter(args)
    except DeviceUnavailableError as exc:
        return error(f"--device: {exc}")
    except (NoDefaultModelError, OSError, ValueError, ImportError) as exc:
        return error(f"cannot load model: {exc}")
    if args.hands is True and not segmenter.hands:  # the landmark stage cannot run here (no onnxruntime)
        return error(f"--hands writes each hand's mask, but {segmenter.notice}")
    if segmenter.notice:
        say(f"note: {segmenter.notice}", args)
    say(segmenter.describe() + (", dense-CRF refinement" if args.crf else ""), args)
    try:
        for source, target in (job for job in jobs if is_video(job[0])):
            _segment_video(source, target, segmenter, args, tally)
        _segment_images([job for job in jobs if not is_video(job[0])], segmenter, args, tally)
    except KeyboardInterrupt:
        print(
            f"handseg: interrupted: {tally.written} of {len(jobs)} written, each complete (nothing partial is "
            "left); run the same command with --skip-existing to continue where it stopped",
            file=sys.stderr,
        )
        return 130
    if tally.failed or (len(jobs) + skipped > 1 and not args.quiet):  # -q: only errors
        print(f"handseg: {tally.line()}", file=sys.stderr)
    return 1 if tally.failed else 0


def _segment_images(jobs: list[tuple[Path, Path]], segmenter: Segmenter, args: argparse.Namespace, tally: Tally):
    """Segment images and save each result (`handseg.jobs.run_jobs`); a file that fails is reported and counted."""
    if not jobs:
        return
    progress = None
    if len(jobs) > 1 and not args.quiet and sys.stderr.isatty():  # a bar only where a person watches it
        from tqdm import tqdm

        progress = tqdm(total=len(jobs), unit="img", file=sys.stderr)
    say_line = progress.write if progress else print
    outcomes = run_jobs(
        segmenter, jobs, overlay=args.overlay, viz=args.viz, hands=args.hands is True, keep_existing=args.skip_existing,
        threshold=args.threshold, crf=args.crf, batch_size=args.batch_size,
    )  # fmt: skip
    try:
        for outcome in outcomes:
            source, target = jobs[outcome.index]
            if outcome.error is not None:
                tally.failed += 1
                say_line(f"handseg: failed: {source}: {outcome.reason}", file=sys.stderr)
            else:
                tally.written += 1
                if not args.quiet and progress is None:
                    print(f"{source} -> {target} ({100 * outcome.result.hand_fraction:.1f}% hand)")
            if progress:
                progress.update()
    finally:
        if progress:
            progress.close()


def _segment_video(source: Path, target: Path, segmenter: Segmenter, args: argparse.Namespace, tally: Tally) -> None:
    """Segment one video; a failure is reported and counted."""
    try:
        stats = segment_video(
            source, target, segmenter, as_overlay=args.overlay, batch_size=args.batch_size,
            progress=not args.quiet and sys.stderr.isatty(), threshold=args.threshold, crf=args.crf,
        )  # fmt: skip
    except (VideoError, OSError) as exc:
        tally.failed += 1
        print(f"handseg: failed: {exc}", file=sys.stderr)
        return
    tally.written += 1
    if not args.quiet:
        print(f"{source} -> {target} ({stats.frames} frames, {stats.fps:.1f} frames/s)")
