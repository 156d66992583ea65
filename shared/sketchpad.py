"""The digit canvas of every Space: one Gradio 6.31 Sketchpad, set up and kept drawable the same way.

    from shared import sketchpad
    canvas = sketchpad.build("digit-canvas", label="Canvas", side=560)
    ...
    reading = canvas.change(predict, ..., preprocess=False, js=sketchpad.drop_cleared_drawing_js(canvas))
    # in predict(value, ...): image = sketchpad.drawing(canvas, value)
    sketchpad.wire_clear(demo, canvas, clear_button, outputs, lambda: (None, None, ""), readings=[reading])

What Gradio 6.31's editor does on its own, measured in Chromium, and what this module changes:

- It starts with no tool selected ("select the draw tool to start": a first stroke draws nothing
  and selects page text instead), and falls back to that state whenever its canvas is emptied,
  by the page's Clear or by its own trash button. `page_js` watches the page and picks the brush
  again whenever no tool is active, so a stroke always draws at once.
- It shows the drawing square (`side` x `side` pixels, shrunk to fit) inside a canvas element
  30 px larger on every side, and a stroke that starts in that margin leaves no ink at all, even
  where it then crosses the square. On a 390 px wide phone that was a 265 px square in a
  324 x 518 px canvas, so a finger put down near the canvas's edge drew nothing. `build` adds CSS
  (`css`, scoped to the sketchpad's elem_id) that makes the component a square at most `side` px
  wide and puts the editor's margin outside its clipped box: the square fills the canvas at every
  screen width, so a stroke that starts anywhere on the canvas draws.
- Strokes reach the server as blobs uploaded before the prediction request; a Clear pressed
  while they upload would get the old digit read beside an empty canvas.
  `drop_cleared_drawing_js` sends nothing to read when the editor's history is empty.

Importing this module imports no Gradio (only `build` does): importing it has no side effects.
"""

from __future__ import annotations

import json
import re

# Gradio 6.31 keeps this many CSS pixels between the editor's canvas element and the fitted
# drawing square (`border_padding` of its zoom tool); the CSS below hides exactly that margin.
EDITOR_MARGIN_PX = 30
BRUSH_SIZE = 22      # canvas pixels; the drawing is scaled to MNIST's 20-pixel box afterwards
ERASER_SIZE = 30


def _selector(elem_id: str) -> str:
    if not re.fullmatch(r"[A-Za-z][\w-]*", elem_id):
        raise ValueError(f"elem_id must be a plain CSS identifier, not {elem_id!r}")
    return f"#{elem_id}"


def build(elem_id: str, *, label: str, side: int = 560, **options):
    """The project's Sketchpad: black ink of a fixed colour on a white `side` x `side` canvas, one
    layer, no uploads or crops, posted as PNG and handed to the app as a PIL RGBA image, shown as a
    square at most `side` px wide that the drawing square fills (see `css`). Call it inside the
    layout where the canvas goes: it also places the (hidden) block that carries the CSS."""
    import gradio as gr

    # The CSS must be on the page before the editor starts: it sizes its canvas once, when it starts
    # (a resize that lands before its renderer exists is lost). Its own block is hidden by it.
    gr.HTML(f"<style>{css(elem_id, side)}</style>", elem_id=f"{elem_id}-style", padding=False,
            container=False)
    return gr.Sketchpad(
        label=label, elem_id=elem_id, type="pil", image_mode="RGBA", sources=(), transforms=(),
        layers=False, format="png",
        brush=gr.Brush(colors=["#000000"], color_mode="fixed", default_size=BRUSH_SIZE),
        eraser=gr.Eraser(default_size=ERASER_SIZE), canvas_size=(side, side), fixed_canvas=True,
        height=side, **options)


def css(elem_id: str, side: int = 560) -> str:
    """The component as a square of at most `side` px, its editor's margin outside the clip.

    The editor fits the drawing square into its canvas element less the margin; a canvas element
    2 x margin larger than the visible box, centred on it, makes the fitted square the box itself
    (the editor never enlarges, so the box is at most `side` wide). The editor resizes its canvas
    and fits the square again whenever the box changes size (a ResizeObserver of its own).
    """
    at = _selector(elem_id)
    return (f"{at}-style {{ display: none !important; }}\n"
            f"{at} {{ width: min(100%, {side}px) !important; height: auto !important; aspect-ratio: 1 / 1;"
            f" margin: 0 auto; overflow: hidden !important; }}\n"
            f"{at} .pixi-target, {at} .pixi-target-crop {{ inset: -{EDITOR_MARGIN_PX}px !important;"
            f" width: auto !important; height: auto !important; }}\n")


# Runs once per page (demo.load's js). The observer sees every change of the page, so it also
# covers a canvas that mounts later (a tab opened) and every way the canvas gets emptied.
_PAGE_JS = """
() => {
  const tool = (name) => document.querySelector(`%(selector)s button[aria-label="${name}"]`);
  const keep = () => {
    const brush = tool("Brush");
    const active = ["Brush", "Erase", "Pan"].some((name) => tool(name)?.classList.contains("highlight"));
    if (brush && !active) brush.click();
  };
  new MutationObserver(keep).observe(document.body, {subtree: true, childList: true, attributeFilter: ["class"]});
  keep();
}
"""


def page_js(canvas) -> str:
    """JavaScript for `demo.load(None, js=...)` of the page holding `canvas` (made by `build`): the
    brush is picked again whenever no tool is active (on load, after Clear, after the editor's
    trash button)."""
    return _PAGE_JS % {"selector": _selector(canvas.elem_id)}


def drop_cleared_drawing_js(canvas) -> str:
    """JavaScript for the `js=` of the event that reads `canvas` (made by `build`; the drawing is
    its first input): the inputs as they are, except the drawing, which becomes null when nothing
    was drawn since the canvas was last emptied (the editor's Undo is disabled exactly then), so
    a stale upload is never read after a Clear."""
    selector = _selector(canvas.elem_id)
    return f"""
(sketch, ...rest) => {{
  const undo = document.querySelector({json.dumps(selector + ' button[aria-label="Undo"]')});
  return [undo && undo.disabled ? null : sketch, ...rest];
}}
"""


def drawing(canvas, value):
    """What an event of `canvas` (made by `build`) run with preprocess=False received -> a PIL image,
    or None for an empty canvas; raises gr.Error with a message for a person.

    `value`: from the browser, the editor value as blobs it uploaded beforehand (`id` set: the
    component decodes them, at the canvas size); from an API client or a test, a Sketchpad value
    {"background", "layers", "composite"} of images or files, left to `shared.images` (sizes
    checked from the header, any mode); or a PIL image or array as it is.
    """
    import gradio as gr

    from shared.images import describe_error, editor_image

    try:
        if isinstance(value, dict) and value.get("id"):
            value = canvas.preprocess(canvas.data_model.model_validate(value))
        return editor_image(value) if isinstance(value, dict) else value
    except Exception as error:  # noqa: BLE001  (worded for a person; ImageError says what was wrong)
        raise gr.Error(describe_error(error), print_exception=False) from None


def wire_clear(demo, canvas, clear_button, outputs: list, cleared, *, readings: list, others: tuple = ()) -> None:
    """Everything that empties `canvas` (made by `build`), the same way in every Space.

    - `clear_button` (the page's Clear, endpoint `/clear`) empties the canvas (`empty_value`),
      sets the `others` inputs to None and `outputs` to `cleared()`;
    - the canvas's own trash button, which empties the canvas itself, sets `outputs` to
      `cleared()` (a private endpoint, `clear_outputs`);
    - both cancel the `readings` (the events that read the canvas): one still running would
      otherwise land after the Clear and show the old digit's reading beside an empty canvas;
    - the page keeps the brush picked (`page_js`), on load and after either of them.
    """
    def clear_all():
        return empty_value(), *(None for _ in others), *cleared()

    clear_button.click(clear_all, None, [canvas, *others, *outputs], api_name="clear", show_progress="hidden",
                       cancels=readings)
    canvas.clear(cleared, None, outputs, api_name="clear_outputs", api_visibility="private",
                 show_progress="hidden", cancels=readings)
    demo.load(None, js=page_js(canvas))


def empty_value() -> dict:
    """The value that empties the canvas: a new, explicitly empty editor value on every call.

    Gradio 6.31's editor wipes its canvas only when the value it is given changes, and drawing
    never changes that value (strokes reach the server as blobs). None therefore emptied the canvas
    once per page: the first Clear turned the unset value into None, and every later None equalled
    the one before, so the page kept the ink. Each answer carrying this dict is a new object with a
    new `layers` list, which is what the editor compares, so every Clear wipes the canvas.
    """
    return {"background": None, "layers": [], "composite": None}
