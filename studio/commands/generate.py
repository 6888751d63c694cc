"""`zaoxiang generate PROMPT …`: make images from the command line."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from studio.commands import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE
from studio.commands.running import (
    output_folder_problem,
    report_interrupted,
    report_results,
    say,
    start_or_explain,
    terminal_safe,
)
from studio.core import events as ev
from studio.core.i18n import resolve_language
from studio.core.image_args import GivenImages, StoredImages, store_images
from studio.core.image_inputs import InputImageError
from studio.core.request import (
    CONTROL_KINDS,
    DEFAULT_GUIDANCE,
    DEFAULT_HIRES_STRENGTH,
    DEFAULT_STEPS,
    SEED_MODES,
    GenerationRequest,
    ValidationError,
    validate,
)
from studio.core.spec import ControlRef, HiresRef

NAME = "generate"


def register(sub: argparse._SubParsersAction) -> None:
    g = sub.add_parser(NAME, help="make images from a prompt")
    g.add_argument("prompt")
    g.add_argument("--negative", default="")
    g.add_argument("--width", default=None, help="default 1024 (256 on the demo model)")
    g.add_argument("--height", default=None, help="default 1024 (256 on the demo model)")
    g.add_argument("--steps", default=DEFAULT_STEPS)
    g.add_argument("--guidance", default=DEFAULT_GUIDANCE)
    g.add_argument("--seed", default=None)
    g.add_argument("--seed-mode", default="random", help="|".join(SEED_MODES))
    g.add_argument("--count", default=1)
    g.add_argument("--lora", action="append", default=[], metavar="NAME_OR_PATH[:STRENGTH]",
                   help="apply a LoRA (strength -2..2, default 1); repeat for several")
    g.add_argument("--out", default=None, help="output folder (default: the gallery)")
    g.add_argument("--model", default=None, help="model folder, or 'demo'")
    g.add_argument("--workers", default=None,
                   help="auto (one per GPU, else CPU), cuda:0,cuda:2, or cpu:N (default: settings)")
    g.add_argument("--json", action="store_true", help="one JSON object per image")
    i = g.add_argument_group("images in", "image-to-image, inpaint/outpaint, hires fix, ControlNet")
    i.add_argument("--image", help="init image (its size sets --width/--height unless given)")
    i.add_argument("--strength", default=None, help="denoising strength 0-1 (default 0.75; 1 with --mask)")
    i.add_argument("--mask", help="mask image: white (or painted, in a transparent PNG) = repaint")
    i.add_argument("--mask-blur", default=0, help="feather the mask edge inwards, pixels (default 0)")
    i.add_argument("--outpaint", help="L,R,U,D: pixels to add on each side (the new area is painted)")
    i.add_argument("--hires", default=None, help="hires fix: upscale this many times, then refine (e.g. 2)")
    i.add_argument("--hires-strength", default=DEFAULT_HIRES_STRENGTH, help="hires refine strength 0-1")
    i.add_argument("--hires-upscaler", default="", help="upscaler model file (needs spandrel); default Lanczos")
    i.add_argument("--control", help="control image for ControlNet")
    i.add_argument("--control-type", default="canny", help="|".join(CONTROL_KINDS) + " (map: already a map)")
    i.add_argument("--control-scale", default=0.75, help="conditioning scale 0-2")
    i.add_argument("--control-start", default=0.0, help="fraction of the steps where control begins")
    i.add_argument("--control-end", default=1.0, help="... and where it ends")
    i.add_argument("--controlnet", default="", help="ControlNet name or path (default: the only one installed)")


def request_from_args(a: argparse.Namespace, default_size: tuple[int, int] = (1024, 1024),
                      images: StoredImages | None = None) -> GenerationRequest:
    """The request the flags describe; `images` are the --image/--mask/--outpaint/--control inputs as stored."""
    images = images or StoredImages()
    size = images.size or default_size
    width = a.width if a.width is not None else size[0]
    height = a.height if a.height is not None else size[1]
    control = hires = None
    if images.control_image:
        control = ControlRef(image=images.control_image, kind=a.control_type, scale=a.control_scale,
                             start=a.control_start, end=a.control_end, model=a.controlnet or "")
    if a.hires is not None:
        hires = HiresRef(scale=a.hires, strength=a.hires_strength, upscaler=a.hires_upscaler or "")
    return GenerationRequest(
        prompt=a.prompt, negative_prompt=a.negative, width=width, height=height, steps=a.steps,
        guidance=a.guidance, seed=a.seed, seed_mode=a.seed_mode, count=a.count, loras=tuple(a.lora),
        init_image=images.init_image, strength=a.strength, mask=images.mask, mask_blur=a.mask_blur,
        control=control, hires=hires,
    )


def store_inputs(a: argparse.Namespace) -> StoredImages:
    """Check and store --image/--mask/--outpaint/--control (InputImageError: one line, nothing queued)."""
    images = store_images(GivenImages(image=a.image, mask=a.mask, control=a.control, outpaint=a.outpaint))
    lang = resolve_language(None)
    for note in images.notes:
        say(note.message(lang))
    return images


def run(a: argparse.Namespace) -> int:
    try:
        images = store_inputs(a)
        validate(request_from_args(a, images=images))  # bad input fails at once, before the model is looked up
    except InputImageError as exc:
        say(exc.message(resolve_language(None)))
        return EXIT_USAGE
    except ValidationError as exc:
        say(exc.message)
        return EXIT_USAGE
    if a.out is not None and (problem := output_folder_problem(a.out)):
        say(problem)
        return EXIT_USAGE
    from studio.app import Studio

    studio = Studio(model=a.model, workers=a.workers)
    try:  # the LoRA files too, before any worker starts
        request = validate(request_from_args(a, studio.default_size, images), check_lora=studio.lora_check(paths=True))
    except ValidationError as exc:
        studio.close()
        say(exc.message)
        return EXIT_USAGE
    progress = Progress(request.count, a.json)
    try:
        if not start_or_explain(studio):
            return EXIT_USAGE
        try:
            results = studio.generate(request, out_dir=a.out, on_event=progress.on_event)
        except ValidationError as exc:  # what only the studio can check (the ControlNet for this model)
            progress.close()
            say(exc.message)
            return EXIT_USAGE
        progress.close()
        not_made = report_results(studio, results)
    except KeyboardInterrupt:  # Ctrl+C or SIGTERM: stop at the next step, keep the rest queued
        progress.close()
        studio.close()
        report_interrupted(studio.kept_queued)
        return EXIT_INTERRUPTED
    finally:
        progress.close()
        studio.close()
    return EXIT_ERROR if not_made else EXIT_OK


class Progress:
    """Progress bars on stderr (one per image being made, plus the total) and, on stdout, each
    finished image's path (or JSON line) in request order as soon as the images before it are done."""

    def __init__(self, count: int, as_json: bool) -> None:
        from tqdm import tqdm

        self._tqdm = tqdm
        self._as_json = as_json
        self._bars: dict[str, Any] = {}
        self._slots: dict[str, int] = {}
        self._done: dict[int, dict[str, Any] | None] = {}
        self._next = 0
        self._total = tqdm(total=count, desc="images", unit="img", file=sys.stderr, position=0, disable=None,
                           leave=False)

    def on_event(self, e: dict[str, Any]) -> None:
        kind, job_id = e["type"], e.get("job_id")
        if kind == ev.JOB_STARTED:
            slot = min(set(range(1, len(self._slots) + 2)) - set(self._slots.values()))
            self._slots[job_id] = slot
            self._bars[job_id] = self._tqdm(total=None, desc=f"#{e['index'] + 1} {e['worker']}", unit="step",
                                            file=sys.stderr, position=slot, leave=False, disable=None)
        elif kind == ev.STEP and job_id in self._bars:
            bar = self._bars[job_id]
            bar.total = e["steps"]
            bar.update(e["step"] - bar.n)
        elif kind in (ev.JOB_DONE, ev.JOB_FAILED, ev.JOB_CANCELLED):
            self._end_bar(job_id)
            self._total.update(1)
            self._done[e["index"]] = e if kind == ev.JOB_DONE else None
            self._print_ready()
        elif kind == ev.JOB_REQUEUED:
            self._end_bar(job_id)
            self._total.write(f"zaoxiang: image {e['index'] + 1} goes back to the queue ({e['reason']})",
                              file=sys.stderr)
        elif kind == ev.WORKER_DIED:
            self._total.write(f"zaoxiang: {terminal_safe(e['message'])}", file=sys.stderr)

    def _end_bar(self, job_id: str | None) -> None:
        bar = self._bars.pop(job_id, None)
        self._slots.pop(job_id, None)
        if bar is not None:
            bar.close()

    def _print_ready(self) -> None:
        while self._next in self._done:
            r = self._done.pop(self._next)
            self._next += 1
            if r is None:
                continue
            if self._as_json:
                line = json.dumps({k: r[k] for k in ("path", "seed", "worker", "elapsed_s")}, ensure_ascii=False)
            else:
                line = r["path"]
            print(line, flush=True)

    def close(self) -> None:
        for job_id in list(self._bars):
            self._end_bar(job_id)
        self._total.close()
