"""The Gradio page: `build_demo(segmenters)` lays out the tabs and wires them to demo.callbacks;
`load_segmenters` builds the Segmenters it offers, once."""

from __future__ import annotations

import functools
import warnings
from pathlib import Path

import gradio as gr

import handseg
from demo import callbacks

INTRO = """# handseg: hand segmentation
Drop in a photo (or paste one, or take a webcam snapshot) and press **Segment**: you get the hand mask at the
photo's full size, an overlay, and a before/after slider. Everything runs on this machine; nothing is uploaded
elsewhere."""


def raw_image(**kwargs) -> gr.Image:
    """An image input that hands the uploaded file to handseg untouched.

    gr.Image opens uploads with PIL before our code runs, so a broken file, a
    decompression bomb or a CMYK/16-bit file would fail inside Gradio with a
    generic message; handseg.load_image gives the user the real reason. (The
    override is per instance: subclassing a Gradio component makes Gradio write
    a .pyi stub next to our source at import time.)"""
    component = gr.Image(type="filepath", **kwargs)
    standard = component.preprocess

    def preprocess(payload):
        if payload is None or payload.path is None or (payload.url and payload.url.startswith("data:")):
            return standard(payload)
        return str(payload.path)

    component.preprocess = preprocess
    return component


def load_segmenters(
    model: handseg.HandUNet | str | Path | None = None,
    *,
    threads: int | None = None,
    concurrent: int = 1,
    backend: str = "auto",
) -> tuple[dict[str, handseg.Segmenter], list[str]]:
    """A Segmenter for each model offered in the app, the main one first (`model`, else the shipped
    default), then the other shipped models for comparison; plus the main model's notice, if any (said
    once by the caller). `concurrent`: the segmentations that run at once, which share the cores."""
    options = {"threads": threads, "concurrent": concurrent}
    segmenters: dict[str, handseg.Segmenter] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", handseg.FastPathNotice)  # said once, as a line, below
        if model is not None:
            label = Path(model).name if isinstance(model, (str, Path)) else "given model"
            segmenters[f"--model {label}"] = handseg.Segmenter(model, backend=backend, **options)
        default = handseg.pretrained.DEFAULT_MODEL
        if default is not None:
            segmenters[f"default ({default})"] = handseg.Segmenter(None, backend=backend, **options)
            for name in handseg.available_models():  # earlier shipped models, for side-by-side comparison
                if name != default:
                    try:
                        segmenters[f"shipped {name}"] = handseg.Segmenter(name, backend=backend, **options)
                    except (handseg.Int8UnavailableError, handseg.OnnxUnavailableError):  # e.g. no int8 file
                        segmenters[f"shipped {name}"] = handseg.Segmenter(name, **options)
    main = next(iter(segmenters.values()), None)
    return segmenters, [main.notice] if main is not None and main.notice else []


NO_MODEL = (
    "this handseg build ships no default model: start the app with --model DIR (a hub folder, e.g. from "
    "handseg convert)."
)


def _no_model(*_args, **_kwargs):
    raise callbacks.user_error(f"No model is loaded: {NO_MODEL}")


def build_demo(segmenters: dict[str, handseg.Segmenter] | handseg.Segmenter | None = None) -> gr.Blocks:
    """The app, over Segmenters built once (`load_segmenters`): the first is the main one, the others are
    offered for comparison; a single Segmenter is offered alone; None: the shipped models."""
    if segmenters is None:
        segmenters, _ = load_segmenters()
    elif isinstance(segmenters, handseg.Segmenter):
        segmenters = {segmenters.name or "model": segmenters}
    models = segmenters
    notice = None if models else f"**No model loaded:** {NO_MODEL}"
    callbacks.RESULTS_DIR.mkdir(exist_ok=True)
    gr.set_static_paths([callbacks.RESULTS_DIR])  # results are served as written, never rewritten
    names = list(models)
    main = models[names[0]] if names else None

    def bind(fn):
        return functools.partial(fn, main) if main is not None else _no_model

    has_crf = handseg.crf.crf_available()
    crf_info = "dense-CRF clean-up (slower)" if has_crf else f"unavailable: {handseg.crf.INSTALL_HINT}"
    default_side = (main.max_side or 0) if main is not None else handseg.DEFAULT_MAX_SIDE  # the slider's 0: full size

    with gr.Blocks(title="handseg", analytics_enabled=False, delete_cache=(3600, 3600)) as demo:
        gr.Markdown(INTRO)
        if notice:
            gr.Markdown(notice, elem_id="notice")
        elif names:
            gr.Markdown(f"Model: **{names[0]}**", elem_id="model-name")

        with gr.Tab("Segment"):
            with gr.Row():
                with gr.Column():
                    photo = raw_image(label="Photo", sources=["upload", "clipboard", "webcam"], elem_id="photo")
                    threshold = gr.Slider(0.05, 0.95, value=handseg.DEFAULT_THRESHOLD, step=0.05, label="Threshold")
                    crf = gr.Checkbox(False, label="CRF refinement", info=crf_info, interactive=has_crf)
                    verify = gr.Checkbox(
                        True,
                        label="Confirmed hands only",
                        info="keep a marked region only where a hand is found or confirmed on it (off: the "
                        "network's mask as it is)",
                        elem_id="verify",
                    )
                    max_side = gr.Slider(
                        0,
                        2048,
                        value=default_side,
                        step=32,
                        label="Working resolution",
                        info="longer side the network sees (0: full size); masks are always full size",
                    )
                    with gr.Row():
                        color = gr.ColorPicker("#ff3c8c", label="Overlay colour")
                        opacity = gr.Slider(0.0, 1.0, value=0.5, step=0.05, label="Overlay opacity")
                    run = gr.Button("Segment", variant="primary", elem_id="segment-button")
                    gr.Markdown(
                        "No example photos are bundled: the data we trained on is not ours to redistribute. "
                        "Try a photo of your own hands."
                    )
                with gr.Column():
                    slider = gr.ImageSlider(label="Before / after", elem_id="slider")
                    tinted = gr.Image(label="Overlay", elem_id="overlay", interactive=False)
                    mask_file = gr.File(label="Mask (PNG, full size)", elem_id="mask-file")
                    stats = gr.Markdown(elem_id="stats")
                    hands = gr.Image(label="Hands: each in its own colour, L or R", elem_id="hands", interactive=False)
            run.click(
                bind(callbacks.segment_photo),
                [photo, threshold, crf, max_side, color, opacity, verify],
                [slider, tinted, mask_file, stats, hands],
                api_name="segment",
            )

        with gr.Tab("Compare"):
            gr.Markdown("Compare two settings or two models on one photo. Add its ground-truth mask to score them.")
            with gr.Row():
                cmp_photo = raw_image(label="Photo", sources=["upload", "clipboard"])
                cmp_truth = raw_image(label="Ground-truth mask (optional)", sources=["upload"])
            with gr.Row():
                cmp_threshold = gr.Slider(0.05, 0.95, value=handseg.DEFAULT_THRESHOLD, step=0.05, label="Threshold")
                model_a = gr.Dropdown(names, value=names[0] if names else None, label="A: model")
                crf_a = gr.Checkbox(False, label="A: CRF", interactive=has_crf)
                model_b = gr.Dropdown(names, value=names[-1] if names else None, label="B: model")
                crf_b = gr.Checkbox(has_crf, label="B: CRF", interactive=has_crf)
            cmp_run = gr.Button("Compare", variant="primary")
            with gr.Row():
                with gr.Column():
                    overlay_a, errors_a, md_a = gr.Image(label="A"), gr.Image(label="A: errors"), gr.Markdown()
                with gr.Column():
                    overlay_b, errors_b, md_b = gr.Image(label="B"), gr.Image(label="B: errors"), gr.Markdown()
            gr.Markdown("Error maps: green = hand found, red = marked but not hand, blue = hand missed.")
            cmp_fn = functools.partial(callbacks.compare, models) if names else _no_model
            cmp_run.click(
                cmp_fn,
                [cmp_photo, cmp_truth, cmp_threshold, model_a, crf_a, model_b, crf_b],
                [overlay_a, errors_a, md_a, overlay_b, errors_b, md_b],
                api_name="compare",
            )

        with gr.Tab("Batch"):
            gr.Markdown("Many images, or zips of images, in; a zip of `<name>_mask.png` out. Bad files are listed.")
            files = gr.File(file_count="multiple", label="Images or zips")
            with gr.Row():
                b_threshold = gr.Slider(0.05, 0.95, value=handseg.DEFAULT_THRESHOLD, step=0.05, label="Threshold")
                b_crf = gr.Checkbox(False, label="CRF refinement", interactive=has_crf)
            b_run = gr.Button("Segment all", variant="primary")
            b_zip, b_report = gr.File(label="Masks (zip)"), gr.Markdown()

            def run_batch(files, threshold, crf, progress=gr.Progress()):  # noqa: B008 (Gradio idiom)
                return bind(callbacks.batch)(files, threshold, crf, progress)

            b_run.click(run_batch, [files, b_threshold, b_crf], [b_zip, b_report], api_name="batch")

        with gr.Tab("Live"):
            gr.Markdown(
                "Webcam segmentation at a low working resolution, so a CPU keeps up; "
                "frames arriving while one is processed are dropped."
            )
            with gr.Row():
                cam = gr.Image(sources=["webcam"], streaming=True, type="numpy", label="Webcam")
                live_out = gr.Image(label="Hands", interactive=False)
            fps = gr.Markdown()
            last = gr.State(None)
            cam.stream(
                bind(callbacks.live_frame),
                [cam, last],
                [live_out, fps, last],
                stream_every=0.2,
                time_limit=600,
                concurrency_limit=1,
                trigger_mode="always_last",
                api_name=False,
            )
    return demo
