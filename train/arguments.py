"""`python -m train.run`'s command line: flags, their defaults, and how --resume and --init fill them in."""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path

import torch

import handseg
from train.checkpoints import STATE_FILE
from train.data import add_data_arguments
from train.labels import label_policy_flags


def _floats(count: int):
    def parse(text: str) -> tuple[float, ...]:
        values = tuple(float(v) for v in text.split(","))
        if len(values) != count:
            raise argparse.ArgumentTypeError(f"expected {count} comma-separated numbers, got {text!r}")
        return values

    return parse


#: Peak learning rates: from scratch or ImageNet, and when fine-tuning a trained model (`--init`),
#: where one epoch at 1e-3 from hands_v2 undid what the model knew; hands_v3 was fine-tuned at 2e-4.
LR_FRESH, LR_FINE_TUNE = 1e-3, 2e-4
#: AdamW's weight decay, every recipe's.
WEIGHT_DECAY = 1e-4


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each flag's default, except where there is none to show (None, False)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or action.default is False:
            return action.help
        return super()._get_help_string(action)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m train.run",
        description="Train a HandUNet hand segmenter. Multi-GPU: torchrun --nproc_per_node N -m train.run --gpu ...",
        formatter_class=_HelpFormatter,
        parents=[label_policy_flags()],
    )
    add_data_arguments(p)
    p.add_argument("--out", type=Path, help="output folder (default: runs/<time>; with --resume: that folder)")
    p.add_argument("--epochs", type=int, default=30, help="train until this epoch (also with --resume)")
    p.add_argument("--batch-size", type=int, default=8, help="per process")
    p.add_argument(
        "--lr",
        type=float,
        help=f"peak AdamW learning rate, cosine decay per epoch (default: {LR_FRESH}; {LR_FINE_TUNE} with --init)",
    )
    p.add_argument("--img-size", type=int, default=256, help="side of the square training crops")
    p.add_argument(
        "--max-side",
        type=int,
        help="working resolution: images are scaled so their longer side is about "
        "this before cropping, and segment() runs the model at it (default: the --init model's, else --img-size)",
    )
    p.add_argument(
        "--base-channels", type=int, default=64, help="width of the original U-Net (64 = the original network)"
    )
    p.add_argument(
        "--encoder",
        choices=list(handseg.LITE_VARIANTS),
        help="pretrained-capable encoder under a U-Net decoder (default: none, the original U-Net)",
    )
    p.add_argument("--pretrained", action="store_true", help="start the encoder from ImageNet weights")
    p.add_argument(
        "--init",
        help="start from this hub folder or repo id (e.g. a converted MODEL.pth); its architecture, "
        "normalization and working resolution are kept unless given",
    )
    p.add_argument("--resume", type=Path, help="continue the run in this folder from its last/ checkpoint")
    p.add_argument("--overwrite", action="store_true", help="write into an --out folder that holds files already")
    p.add_argument(
        "--int8",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="at the end, write best/model_int8.onnx (calibrated on 6 train photos per source), which "
        'handseg\'s default CPU path runs (needs onnx: pip install "handseg[onnx]")',
    )
    p.add_argument("--gpu", action="store_true", help="train on CUDA (required to be available)")
    p.add_argument(
        "--amp",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="bf16 autocast where the hardware does bf16 arithmetic: CUDA, or a CPU with AVX512-BF16 or AMX "
        "(never where bf16 is emulated, as on AVX2-only CPUs)",
    )
    p.add_argument(
        "--freeze-bn",
        action="store_true",
        help="keep every BatchNorm's running statistics (eval mode) while training; scale and shift still train",
    )
    p.add_argument(
        "--freeze-encoder-blocks",
        type=int,
        default=0,
        help="fine-tuning a Lite encoder: no gradient for its stem and first N blocks (cheaper steps)",
    )
    p.add_argument("--workers", type=int, default=2, help="data-loading processes per training process")
    p.add_argument(
        "--max-steps",
        type=int,
        help="stop after this many training steps in all (a smoke test: the last epoch is cut short, then "
        "validated and saved as usual)",
    )
    hands = p.add_argument_group("hand landmarks as input (a network that reads them)")
    hands.add_argument(
        "--hand-channels",
        type=int,
        default=None,
        help="landmark channels the network reads after the image's (0: none; 3: bones, palm and wrist, "
        "handseg.hands.HAND_CHANNELS); with --init, a model that reads none gets them with zero weights, so it "
        "starts as it was (default: the --init model's, else 0)",
    )
    hands.add_argument(
        "--landmarks-none-prob", type=float, default=0.15, help="share of crops given no landmarks at all"
    )
    hands.add_argument(
        "--landmarks-drop-prob", type=float, default=0.15, help="share of hands whose landmarks are dropped (a miss)"
    )
    hands.add_argument(
        "--landmarks-jitter", type=float, default=0.04, help="landmark noise, as a share of the hand's size"
    )
    hands.add_argument(
        "--landmarks-false-prob",
        type=float,
        default=0.2,
        help="share of crops given a real hand's skeleton where there is no hand (a false detection; labels "
        "untouched); half of hand-shaped distractors carry their hand's skeleton too",
    )
    mix = p.add_argument_group("hand-free photos, compositing and labels")
    mix.add_argument(
        "--mix",
        type=_floats(3),
        default=(0.5, 0.2, 0.3),
        help="shares of an epoch: photos with hands, hand-free photos (empty masks), and hands pasted onto "
        "hand-free photos; each photo with hands is seen once an epoch",
    )
    mix.add_argument("--composite", help="folder of hand cut-outs on black (images/ + masks/), e.g. ASL cut-outs")
    mix.add_argument(
        "--composite-prob", type=float, default=0.3, help="share of photos with hands given an extra pasted hand"
    )
    mix.add_argument(
        "--paste-size", type=_floats(2), default=(0.3, 0.9), help="pasted hand's longer side / background's shorter"
    )
    mix.add_argument("--paste-edge-prob", type=float, default=0.6, help="share of pasted hands entering from an edge")
    mix.add_argument("--cast-prob", type=float, default=0.25, help="share given a strong colour cast or made grey")
    mix.add_argument(
        "--hue-turn-prob",
        type=float,
        default=0.0,
        help="share of training crops whose hue is turned far round the colour circle (hands in any colour)",
    )
    mix.add_argument(
        "--hue-turn-on",
        choices=["crops", "hands", "distractors"],
        default="crops",
        help="what --hue-turn-prob turns: whole training crops (hands and background alike), pasted hands only, "
        "or pasted distractors only",
    )
    mix.add_argument(
        "--hard-negatives",
        type=float,
        default=0.0,
        help="each epoch, draw the hand-free training photos the model marks up to 1+N times as often "
        "(0: each equally often)",
    )
    mix.add_argument(
        "--distractor-prob",
        type=float,
        default=0.5,
        help="share of hand-free photos and composites given one or two distractors: patches of hand-free photos "
        "(faces, hair, skin, flowers, fabrics) pasted exactly like hands and labelled background (photos with "
        "hands: half this share)",
    )
    mix.add_argument(
        "--distractor-hand-shaped", type=float, default=0.5, help="share of distractors cut with a hand's silhouette"
    )
    mix.add_argument(
        "--distractor-warm-bias",
        type=float,
        default=0.5,
        help="share of distractors taken from the warmest of four windows (skin, pink, orange, gold)",
    )
    mix.add_argument(
        "--face-overlap-prob",
        type=float,
        default=0.3,
        help="share of hands pasted onto face photos that go on or around the face (cheek, chin, mouth, forehead, "
        "temple, hair), sized to it and in its skin tone and light",
    )
    mix.add_argument(
        "--jpeg-prob", type=float, default=0.5, help="share of pasted-on photos re-encoded as JPEG (quality 40-95)"
    )
    mix.add_argument(
        "--match-sharpness",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="blur pasted hands and distractors and add grain to match the background around them",
    )
    return p


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.resume is not None:
        # Flags given now override those the run was started with.
        given = build_parser()
        for action in given._actions:
            action.default = argparse.SUPPRESS
        explicit = vars(given.parse_args(argv))
        state_path = args.resume / "last" / STATE_FILE
        if not state_path.is_file():
            parser.error(f"--resume: {state_path} not found")
        saved = torch.load(state_path, map_location="cpu", weights_only=True)["args"]
        merged = {**saved, **explicit}
        args = argparse.Namespace(**{**vars(args), **merged})
        args.resume = Path(args.resume)
        args.out = Path(args.out) if args.out else args.resume
    if not args.data:
        parser.error("--data is required")
    if args.init and args.resume is None:
        if args.encoder or args.pretrained:
            parser.error("--init keeps the initial model's architecture: drop --encoder/--pretrained")
        start = handseg.HandUNet.from_pretrained(args.init)
        if args.max_side is None:  # keep the working resolution the model was made for
            args.max_side = start.max_side
        if args.hand_channels is None:
            args.hand_channels = start.hand_channels
    if getattr(args, "hand_channels", None) is None:
        args.hand_channels = 0
    if args.lr is None:
        args.lr = LR_FINE_TUNE if args.init else LR_FRESH
    if getattr(args, "max_side", None) is None:
        args.max_side = args.img_size
    if sum(args.mix) <= 0 or min(args.mix) < 0 or args.mix[0] <= 0:
        parser.error("--mix: three non-negative shares, the first (photos with hands) above 0")
    if args.out is None:
        args.out = Path("runs") / time.strftime("%Y%m%d-%H%M%S")
    args.out = Path(args.out)
    continuing = args.resume is not None and args.out.resolve() == args.resume.resolve()
    if not continuing and not args.overwrite and args.out.is_dir() and any(args.out.iterdir()):
        parser.error(
            f"--out {args.out} holds files already; handseg does not overwrite without asking: --resume "
            f"{args.out} continues the run there, --overwrite replaces it, or give another --out"
        )
    return args


def args_to_json(args: argparse.Namespace) -> dict:
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "resume"}
