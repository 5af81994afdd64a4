"""Runs over many files: which inputs, where each output goes, and what must never be overwritten.

Shared by the command line and the Ray job (`handseg.ray`), so every way of segmenting many files
names outputs alike, refuses the same mistakes before any work, runs the same loop (`run_jobs`) and
ends with the same summary:

- an output is never one of the inputs (paths compared after resolving links);
- two inputs never write one output (`a.jpg` and `a.png` in one folder get `a_jpg_mask.png` and
  `a_png_mask.png`, two `y.jpg` from two folders `y_jpg_mask.png` and `y_jpg_2_mask.png`; the run says so);
- an output that exists already is kept or replaced only by an explicit choice (`skip`/`overwrite`);
- every output folder is made and checked writable once, up front.
"""

from __future__ import annotations

import glob
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from handseg.image import IMAGE_FILE_SUFFIXES, lossy_suffix_problem, written_by_handseg
from handseg.results import OUTPUT_TAGS, output_files

if TYPE_CHECKING:
    from handseg.segmenter import Outcome, Segmenter

VIDEO_SUFFIXES = frozenset({".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v"})


class UsageError(ValueError):
    """The run asks for something impossible or unsafe; said before any work is done."""


def is_video(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_SUFFIXES


@dataclass
class Inputs:
    """What a list of files, folders and globs names."""

    files: list[Path]  #: the inputs, in order, no repeats
    own_outputs: list[Path] = field(default_factory=list)  #: files handseg wrote, left out of a folder or glob
    #: each input found below a folder given with `recursive`: its sub-folder there (outputs keep that tree)
    subfolders: dict[Path, Path] = field(default_factory=dict)
    #: folders whose sub-folders were not searched (`recursive` off), for a message when nothing is found
    unsearched: list[Path] = field(default_factory=list)


def expand_inputs(patterns: Sequence[str], *, recursive: bool = False) -> Inputs:
    """Files as given; folders -> their image and video files (and their sub-folders', with `recursive`);
    globs -> their matches. Order kept, no repeats. A named path that does not exist is a UsageError.
    Skipped when a folder or glob is expanded (never a file named on its own): hidden files (a run's
    unfinished `.name.partial` files among them), and what handseg itself wrote: a `<stem>_mask.png` (or
    `_overlay`, `_viz`, `_hands`) beside a `<stem>.*` source, or a PNG marked as written by handseg, so
    that a second run does not segment the first run's masks."""
    entries: list[tuple[Path, bool]] = []  # (path, found by expanding a folder or glob)
    subfolders: dict[Path, Path] = {}
    unsearched: list[Path] = []
    known = IMAGE_FILE_SUFFIXES | VIDEO_SUFFIXES
    for pattern in patterns:
        path = Path(pattern)
        if path.is_dir():
            if recursive:
                found = sorted(p for p in path.rglob("*") if not _hidden_below(p, path))
                subfolders.update({p: p.parent.relative_to(path) for p in found if p.parent != path})
            else:
                found = sorted(path.iterdir())
        elif any(ch in pattern for ch in "*?[") and not path.exists():
            found = [Path(p) for p in sorted(glob.glob(pattern, recursive=True))]
        elif not path.exists() and not path.is_symlink():
            raise UsageError(f"{pattern}: no such file or folder")
        else:
            entries.append((path, False))  # a file named on its own is read as it is, whatever its name
            continue
        files = [(p, True) for p in found if p.suffix.lower() in known and p.is_file()]
        if not files and path.is_dir() and not recursive and any(p.is_dir() for p in found if p.name[0] != "."):
            unsearched.append(path)  # looked for only where the folder gave nothing, to say why
        entries += files
    stems = {(p.parent, p.stem) for p, _ in entries}
    named = {p for p, expanded in entries if not expanded}
    skipped = {
        p
        for p, expanded in entries
        if expanded and p not in named and (p.name.startswith(".") or _is_own_output(p, stems))
    }
    inputs = list(dict.fromkeys(p for p, _ in entries if p not in skipped))
    return Inputs(inputs, sorted(skipped), {p: subfolders[p] for p in inputs if p in subfolders}, unsearched)


def _hidden_below(path: Path, root: Path) -> bool:
    """Whether a part of `path` below `root` is hidden (`.git/`, `.cache/`, `.name.partial`)."""
    return any(part.startswith(".") for part in path.relative_to(root).parts)


def _is_own_output(path: Path, stems: set[tuple[Path, str]]) -> bool:
    tag = next((t for t in OUTPUT_TAGS if path.stem.endswith(t)), None)
    if tag is None:
        return False
    return (path.parent, path.stem[: -len(tag)]) in stems or written_by_handseg(path)


def default_output_name(source: Path, *, overlay_video: bool = False, tag: str = "") -> str:
    """`<stem>_mask.png` for an image, `<stem>_mask.mp4` (or `_overlay.mp4`) for a video; `tag` joins the
    stem (`a_jpg_mask.png`) to tell apart inputs that would share an output."""
    stem = f"{source.stem}_{tag}" if tag else source.stem
    if is_video(source):
        return f"{stem}_overlay.mp4" if overlay_video else f"{stem}_mask.mp4"
    return f"{stem}_mask.png"


@dataclass
class Plan:
    """Each input with its output, and what was decided on the way."""

    jobs: list[tuple[Path, Path]]
    renamed: list[tuple[Path, Path]] = field(default_factory=list)  #: (input, output) whose name was made unique


def plan_outputs(
    inputs: list[Path],
    outputs: Sequence[str] | None,
    *,
    overlay_video: bool = False,
    subfolders: dict[Path, Path] | None = None,
) -> Plan:
    """Where each input's result goes: beside it, in one output folder (in the sub-folder `subfolders`
    gives it there, if any), or at the paths given. Every input gets its own output: inputs that would
    share one in a folder (`a.jpg` and `a.png`; `d1/y.jpg` and `d2/y.jpg` into one folder; `a.jpg` and
    `a.JPG`, one file on a case-blind file system) get their extension in the name, then a number
    (`a_jpg_mask.png`, `y_jpg_mask.png` and `y_jpg_2_mask.png`), listed in `Plan.renamed`. Two explicit
    outputs that are one path, or one file name for several inputs, are a UsageError."""
    subfolders = subfolders or {}
    single = outputs[0] if outputs else None
    # One -o that is a folder, ends in a slash, serves several inputs or has no file extension: a folder
    # (created when missing), so `-o masks` works like `-o masks/`.
    into_folder = single is not None and len(outputs) == 1
    into_folder = into_folder and (
        Path(single).is_dir() or single.endswith(("/", "\\")) or len(inputs) > 1 or not Path(single).suffix
    )
    if (
        into_folder
        and not Path(single).is_dir()
        and not single.endswith(("/", "\\"))
        and Path(single).suffix.lower() in IMAGE_FILE_SUFFIXES | VIDEO_SUFFIXES
    ):
        raise UsageError(
            f"-o {single} names one file, but there are {len(inputs)} inputs: give a folder (-o "
            f"{Path(single).with_suffix('')}/) or one -o per input"
        )
    if outputs and not into_folder:
        return Plan(list(zip(inputs, _explicit_outputs(inputs, outputs))))

    def folder_of(p: Path) -> Path:
        return Path(single) / subfolders.get(p, Path()) if into_folder else p.parent

    def key(p: Path, name: str) -> tuple[Path, str]:
        return folder_of(p), name.casefold()  # names that differ only in case are one file on some systems

    names = {p: default_output_name(p, overlay_video=overlay_video) for p in inputs}
    counts: dict[tuple[Path, str], int] = {}
    for p in inputs:
        counts[key(p, names[p])] = counts.get(key(p, names[p]), 0) + 1
    renamed = [p for p in inputs if counts[key(p, names[p])] > 1]
    taken = {key(p, names[p]) for p in inputs if p not in set(renamed)}
    for p in renamed:
        extension = p.suffix.lstrip(".").lower()
        for number in range(1, len(inputs) + 2):
            tag = extension if number == 1 else f"{extension}_{number}"
            name = default_output_name(p, overlay_video=overlay_video, tag=tag)
            if key(p, name) not in taken:
                break
        names[p] = name
        taken.add(key(p, name))
    return Plan([(p, folder_of(p) / names[p]) for p in inputs], [(p, folder_of(p) / names[p]) for p in renamed])


def output_names(names: Sequence[str]) -> list[str]:
    """The file name each input gets in one output folder (or zip), as `handseg segment -o FOLDER` names
    them: `<stem>_mask.png`, made unique among these inputs as `plan_outputs` makes them (`a_jpg_mask.png`,
    `a_jpg_2_mask.png`). Names may repeat (two uploads of one file name)."""
    inputs = [Path(str(i)) / name for i, name in enumerate(names)]  # one path each, even for equal names
    return [target.name for _, target in plan_outputs(inputs, ["outputs/"]).jobs]


def _explicit_outputs(inputs: list[Path], outputs: Sequence[str]) -> list[Path]:
    if len(outputs) != len(inputs):
        raise UsageError(f"{len(inputs)} inputs but {len(outputs)} outputs; give one -o per input or one folder")
    for source, target in zip(inputs, outputs):
        known = VIDEO_SUFFIXES if is_video(source) else IMAGE_FILE_SUFFIXES
        if Path(target).suffix.lower() not in known:
            kind, example = ("a video", ".mp4") if is_video(source) else ("an image", ".png")
            raise UsageError(
                f"-o {target}: {Path(target).suffix!r} is not {kind} file extension; use e.g. {example}, "
                "or give a folder"
            )
        if not is_video(source) and (problem := lossy_suffix_problem(target)):
            raise UsageError(f"-o {target}: {problem}; use .png (or .webp, .tif, .bmp: written losslessly)")
    resolved = [Path(o).resolve() for o in outputs]
    for i, path in enumerate(resolved):
        if path in resolved[:i]:
            raise UsageError(f"-o {outputs[i]} is given for two inputs; each input needs its own output")
    return [Path(o) for o in outputs]


def _file_id(path: Path) -> tuple[int, int] | None:
    """(device, inode) of an existing file: the same for every name of it (hard links included)."""
    try:
        status = path.stat()
    except OSError:
        return None
    return status.st_dev, status.st_ino


def refuse_writing_over_inputs(inputs: Iterable[Path], outputs: Iterable[Path]) -> None:
    """A UsageError naming the first output that is one of the inputs: the same path once links are
    resolved, or the same file under another name (a hard link). One look-up per output, so a folder of
    100,000 photos is checked as fast as ten."""
    by_path: dict[Path, Path] = {}
    by_file: dict[tuple[int, int], Path] = {}
    for source in inputs:
        file_id = _file_id(source)
        if file_id is not None:
            by_path.setdefault(source.resolve(), source)
            by_file.setdefault(file_id, source)
    for output in outputs:
        source = by_path.get(output.resolve())
        if source is None and (file_id := _file_id(output)) is not None:
            source = by_file.get(file_id)
        if source is not None:
            raise UsageError(
                f"{output} is the input {source}: handseg never writes over its inputs; choose another output"
            )


def ensure_writable(folders: Iterable[Path]) -> None:
    """Make each folder (and its parents) and check a file can be written there: a UsageError in one
    line for the first that fails (a file in the way, no permission, a read-only file system)."""
    for folder in dict.fromkeys(folders):
        try:
            if folder.exists() and not folder.is_dir():
                raise UsageError(f"{folder} is a file, not a folder; give a folder (or a file path per input)")
            folder.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=folder):
                pass
        except UsageError:
            raise
        except (FileExistsError, NotADirectoryError):
            raise UsageError(f"{folder}: a part of this path is a file, not a folder") from None
        except OSError as exc:
            raise UsageError(f"cannot write to {folder}: {exc.strerror or exc}") from None


@dataclass
class RunPlan:
    """A run over many files, decided before any work."""

    jobs: list[tuple[Path, Path]]  #: (input, output) to do
    skipped: list[Path] = field(default_factory=list)  #: inputs whose outputs all exist (kept, as asked)
    renamed: list[tuple[Path, Path]] = field(default_factory=list)  #: (input, output) made unique
    own_outputs: list[Path] = field(default_factory=list)  #: files handseg wrote, left out of a folder
    videos_left_out: list[Path] = field(default_factory=list)  #: videos, where the run takes images only
    #: outputs that exist are kept and only the missing ones written (`skip_existing`): `run_jobs` does that
    keep_existing: bool = False


def plan_run(
    patterns: Sequence[str],
    outputs: Sequence[str] | None,
    *,
    skip_existing: bool = False,
    overwrite: bool = False,
    videos: bool = True,
    images: bool = True,
    overlay_video: bool = False,
    pictures: Sequence[str] = (),
    recursive: bool = False,
) -> RunPlan:
    """Inputs, their outputs and what to do about outputs that exist, refusing (UsageError) before any
    work: no inputs, an input that does not exist, an output that is an input, existing outputs without
    `skip_existing` or `overwrite`, a folder that cannot be written, an image where only videos are taken
    (`images=False`; with `videos=False` videos are left out instead, and listed). `pictures`: what an
    image's job writes beside its mask ("overlay", "viz", "hands": `Segmentation.save`), checked the same
    way. An input's outputs are one unit: `skip_existing` skips an input only when all of them exist, and
    otherwise its job writes the missing ones. `recursive`: folders' sub-folders too, their tree kept in
    the output folder."""
    found = expand_inputs(patterns, recursive=recursive)
    inputs = found.files
    if not images and (named := [p for p in inputs if not is_video(p)]):
        raise UsageError(f"not a video: {', '.join(map(str, named[:3]))}{', ...' if len(named) > 3 else ''}")
    left_out = [] if videos else [p for p in inputs if is_video(p)]
    inputs = [p for p in inputs if videos or not is_video(p)]
    if not inputs:
        unsearched = " (sub-folders not searched: add --recursive)" if found.unsearched else ""
        raise UsageError(f"no {'images or videos' if videos else 'images'} found in {' '.join(patterns)}{unsearched}")
    planned = plan_outputs(inputs, outputs, overlay_video=overlay_video, subfolders=found.subfolders)
    kinds = ("mask", *pictures)  # an image's outputs, as `Segmentation.save` writes them; a video's is one file
    outputs_of = {
        source: [target] if is_video(source) else [o for kind in kinds for o in output_files(target, kind)]
        for source, target in planned.jobs
    }
    written = [o for files in outputs_of.values() for o in files]
    refuse_writing_over_inputs(inputs, written)
    present = {o for o in written if o.exists()}  # each output looked up once on disk
    jobs, skipped = planned.jobs, []
    if present and skip_existing:
        done = {source for source, files in outputs_of.items() if all(o in present for o in files)}
        jobs = [(p, o) for p, o in planned.jobs if p not in done]
        skipped = [p for p, _ in planned.jobs if p in done]
    elif present and not overwrite:
        existing = [o for o in written if o in present]
        shown = ", ".join(str(p) for p in existing[:3]) + (", ..." if len(existing) > 3 else "")
        raise UsageError(
            f"{len(existing)} output(s) exist already ({shown}); handseg does not overwrite without asking: "
            "--skip-existing keeps them (and continues an interrupted run), --overwrite replaces them"
        )
    ensure_writable(o.parent for _, o in jobs)
    return RunPlan(jobs, skipped, planned.renamed, found.own_outputs, left_out, keep_existing=skip_existing)


def run_jobs(
    segmenter: Segmenter,
    jobs: Sequence[tuple[Path, Path]],
    *,
    overlay: bool = False,
    viz: bool = False,
    hands: bool = False,
    keep_existing: bool = False,
    **options: Any,
) -> Iterator[Outcome]:
    """`segmenter.run` over the planned jobs' images, each result saved at its output (with the overlay,
    viz and hands files when asked: `Segmentation.save`, all of an input's files together; with
    `keep_existing`, only those missing); `options` are `Segmenter.run`'s."""
    return segmenter.run(
        [source for source, _ in jobs],
        lambda result, index: result.save(
            jobs[index][1], overlay=overlay, viz=viz, hands=hands, keep_existing=keep_existing
        ),
        **options,
    )


@dataclass
class Tally:
    """What a run did, said in one closing line."""

    written: int = 0
    skipped: int = 0
    failed: int = 0
    folders: set[Path] = field(default_factory=set)
    pictures: Sequence[str] = ()  #: what each input's job writes beside its mask ("overlay", "viz", "hands")

    @property
    def total(self) -> int:
        return self.written + self.skipped + self.failed

    def line(self, noun: str = "mask") -> str:
        where = f" to {next(iter(self.folders))}" if len(self.folders) == 1 else ""
        nouns = noun if self.written == 1 else f"{noun}s"
        if self.pictures:  # an input's outputs are one unit: counted together
            their = "its" if self.written == 1 else "their"
            nouns += f" with {their} {' and '.join(self.pictures)}"
        text = f"{self.written} {nouns} written{where}, {self.skipped} skipped (output already there)"
        if self.failed:
            return f"{text}, {self.failed} of {self.total} inputs failed"
        return f"{text}, 0 failed"
