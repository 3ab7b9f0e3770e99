"""OmniMamba demo: image chat and text-to-image from one Mamba-2 model, with a live speed / memory panel.

    python app.py                       # the official weights when cached, else the shipped shapes model; :7860
    python app.py --model hustvl/OmniMamba   # the official weights (downloaded on first use)
    python app.py --model shapes        # the small model shipped with the package
    python app.py --help                # every flag; each also reads an OMNIMAMBA_* environment variable

Layout and event wiring only. The handlers, input checks and formatting are in demo/ (one module per tab);
the shared `Engine` (omnimamba/engine.py) owns the model, the sessions and the GPU lock.
"""
from __future__ import annotations

try:  # Hugging Face ZeroGPU: `spaces` must be imported before anything imports torch (and could touch CUDA)
    import spaces  # noqa: F401
except ImportError:  # not on a Space: demo/gpu.py then runs handlers without a GPU reservation
    spaces = None

import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import gradio as gr

from demo.api import Endpoints, register
from demo.chat import ChatHandlers, Conversation, input_box
from demo.compare_one import CompareOneHandlers
from demo.compare_pairs import LOAD_LIMIT, ComparePairHandlers
from demo.format import header_html, set_status
from demo.gpu import GPU_QUEUE, ZERO_GPU, by_images, by_tokens, gpu_event, gpu_slots, one_pair
from demo.handlers import NotCopied, beside
from demo.images import ImageHandlers
from demo.inputs import COMPARE_NEW_TOKENS, DEFAULT_NEW_TOKENS, MAX_NEW_TOKENS, MAX_SEED
from demo.launch import (EXAMPLES, QUEUE_SIZE, compare_inputs, load_examples, model_size, open_engine_or_fallback,
                         parse_args, warm_up)
from demo.showo_set import CompareSet
from omnimamba.compare import IMAGE_SUFFIXES
from omnimamba.config import OmniMambaConfig
from omnimamba.engine import MAX_IMAGES_PER_PROMPT, Engine


MAX_FILE_SIZE = "50mb"  # uploads above this are refused by Gradio before they reach a handler
STYLE = Path(__file__).resolve().parent / "assets" / "style.css"
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")  # served only here, the Compare tab may read Show-o sets by path
__all__ = ["GPU_QUEUE", "build_demo", "main", "parse_args", "serve", "warm_up"]


def sampling_controls(seed_label: str = "Seed (-1 = random)", seed: int = -1, with_seed: bool = True,
                      start: dict | None = None) -> list[gr.components.Component]:
    """Temperature, top-k, top-p and (unless left out) seed; they start at `start` (a model's suggested
    settings), else at the official greedy decoding."""
    start = start or {"temperature": 1.0, "top_k": 1, "top_p": 0.0}
    return [
        gr.Slider(0.0, 2.0, value=start["temperature"], step=0.05, label="Temperature",
                  info="used only when top-k ≠ 1"),
        gr.Slider(0, 1000, value=start["top_k"], step=1, label="Top-k", info="1 = greedy (official), 0 = off"),
        gr.Slider(0.0, 1.0, value=start["top_p"], step=0.01, label="Top-p", info="0 = off"),
        *([gr.Number(value=seed, precision=0, minimum=-1, maximum=MAX_SEED, label=seed_label)] if with_seed else []),
    ]


@dataclass(frozen=True)
class TabHandlers:
    """Every tab's handlers around the one shared engine."""
    chat: ChatHandlers
    images: ImageHandlers
    one: CompareOneHandlers
    pairs: ComparePairHandlers

    @classmethod
    def around(cls, engine: Engine, server_paths: bool) -> "TabHandlers":
        info = {**engine.info(), "size": model_size(engine.model)}
        return cls(ChatHandlers(engine, info), ImageHandlers(engine, info), CompareOneHandlers(engine, info),
                   ComparePairHandlers(engine, info, server_paths))


def chat_tab(ui: ChatHandlers, panel: gr.HTML, examples: list[dict]) -> None:
    conv = gr.State(Conversation(), delete_callback=NotCopied(ui.forget))  # see NotCopied: page views copy props
    with gr.Row(equal_height=False):
        with gr.Column(scale=3):
            chatbot = gr.Chatbot(height="52vh", min_height=300, show_label=False, elem_id="om-chat", layout="bubble",
                                 buttons=["copy"], feedback_options=None,
                                 placeholder="**Ask about an image.** Attach one with the paperclip (or drop it "
                                             "here), then ask anything; follow-ups remember the picture.")
            box = gr.MultimodalTextbox(file_types=["image"], file_count="single", show_label=False,
                                       placeholder="Ask about the image… (Enter to send)", stop_btn=False,
                                       elem_id="om-chat-input")
            note = gr.Markdown(elem_id="om-chat-note", elem_classes="om-note", latex_delimiters=[])
            gr.Examples([{"text": e["question"], "files": [str(EXAMPLES / e["image"])]} for e in examples],
                        inputs=box, label="Try an example: click one, then press Enter to send it",
                        examples_per_page=6, api_visibility="private")
        with gr.Column(scale=1, min_width=260):
            with gr.Accordion("Generation settings", open=True):
                max_new = gr.Slider(1, MAX_NEW_TOKENS, value=DEFAULT_NEW_TOKENS, step=1, label="Max new tokens")
                settings = [max_new, *sampling_controls()]
            gr.Markdown("Greedy decoding (top-k = 1) is the official setting. A new image starts a new "
                        "conversation; follow-ups reuse the model's state instead of re-reading the image.",
                        elem_classes="om-hint")
    ready = dict(fn=input_box, outputs=box, api_visibility="private", queue=False)
    answer = dict(inputs=[chatbot, conv, *settings], outputs=[chatbot, conv, panel, note, box],
                  api_visibility="private", **gpu_event(ui.respond, by_tokens(2)))
    answering = []
    sent = box.submit(ui.add_message, [box, chatbot, conv], [chatbot, box, conv, note], api_visibility="private",
                      concurrency_limit=None)
    retried = chatbot.retry(ui.retry, [chatbot, conv], [chatbot, conv, box, note],
                            api_visibility="private", concurrency_limit=None)
    for start in (sent, retried):
        answering.append(start.success(**answer))
        start.failure(**ready)  # respond ends with a ready input itself; this is for a failed start
    # the cancel first, then the stopped state: an update of the cancelled stream can no longer overwrite it
    box.stop(None, cancels=answering, api_visibility="private").then(
        ui.stopped, [conv], [panel, note, box], api_visibility="private", concurrency_limit=None)
    chatbot.clear(ui.clear, [conv], [chatbot, conv, note, box], cancels=answering, api_visibility="private")


def t2i_tab(ui: ImageHandlers, panel: gr.HTML, prompts: list[str]) -> None:
    last = gr.State(None)  # the last request's metrics, for the panel after Stop
    with gr.Row(equal_height=False):
        with gr.Column(scale=2, min_width=320):
            prompt = gr.Textbox(label="Prompt", info="Enter generates; Shift+Enter starts a new line", lines=1,
                                max_lines=6, autofocus=False, elem_id="om-t2i-prompt",
                                placeholder="A watercolor painting of a fox in an autumn forest.")
            note = gr.Markdown(elem_classes="om-note", elem_id="om-t2i-note", latex_delimiters=[])
            with gr.Row():
                go = gr.Button("Generate", variant="primary", scale=3, elem_id="om-t2i-go")
                stop = gr.Button("Stop", variant="secondary", scale=1, elem_id="om-t2i-stop")
            suggested = ui.info["image_defaults"]  # the model's suggestion: the official greedy one for the 1.3B
            one = "greedy decoding (official)" if suggested["top_k"] == 1 else "sampled, as this model suggests"
            count = gr.Slider(1, MAX_IMAGES_PER_PROMPT, value=1, step=1, label="Number of images",
                              info=f"one image: {one}; several: sampled so that they differ, each with its own seed")
            with gr.Accordion("Sampling settings", open=False):
                temperature, top_k, top_p, seed = sampling_controls(start=suggested)
                guidance = gr.Slider(0.0, 10.0, value=suggested["guidance_scale"], step=0.25, label="Guidance scale",
                                     info="1 = off (official); above 1 adds classifier-free guidance")
                previews = gr.Checkbox(value=True, label="Show progressive previews")
        with gr.Column(scale=3):
            gallery = gr.Gallery(label="Images", columns=2, height=520, format="png", object_fit="contain",
                                 buttons=["download", "download_all", "fullscreen"], interactive=False,
                                 elem_id="om-gallery")
    gr.Examples([[p] for p in prompts], inputs=prompt, label="Try a prompt: click one, then press Enter",
                api_visibility="private")
    inputs = [prompt, count, seed, temperature, top_k, top_p, guidance, previews]
    handler = beside(ui.images, 4, note=1, panel=2, panel_html_of=lambda: ui.ended_panel(None, "Not done"))
    generating = gr.on([go.click, prompt.submit], inputs=inputs, outputs=[gallery, note, panel, last],
                       api_visibility="private", **gpu_event(handler, by_images(1, 6)))
    stop.click(None, cancels=[generating], api_visibility="private").then(
        ui.stopped, [last], [note, panel], api_visibility="private", concurrency_limit=None)


COMPARE_INTRO = """Put OmniMamba beside [Show-o](https://github.com/showlab/Show-o). Show-o runs in its own
environment: bring its outputs (a folder's images with the prompts file they were made from, or a manifest), browse
the pairs, and OmniMamba makes its side of each here, timed, under recorded settings; or compare one prompt or
question. For grid pages and an HTML report of a whole set, use `python -m omnimamba compare` (docs/compare.md)."""
SET_FILES_HINT = ("Drop Show-o's images together with the prompts .txt they were made from (one prompt per line: "
                  "image i is line i, in the natural order of the file names), or a manifest .jsonl with the images "
                  "it names (it may hold image chats too, and Show-o's seeds and times).")
T2I, MMU = "Text to image", "Image chat"


def compare_tab(ui: TabHandlers, panel: gr.HTML) -> None:
    prompts, questions = compare_inputs()
    gr.Markdown(COMPARE_INTRO, elem_classes="om-hint")
    with gr.Tabs():
        with gr.Tab("Show-o set", id="compare-set"):
            compare_set_view(ui.pairs, panel)
        with gr.Tab("One prompt or question", id="compare-one"):
            task = gr.Radio([T2I, MMU], value=T2I, show_label=False, container=False)
            with gr.Column(visible=True) as t2i_side:
                compare_images_side(ui.one, panel, prompts)
            with gr.Column(visible=False) as mmu_side:
                compare_answers_side(ui.one, panel, questions)
    task.change(lambda t: (gr.Column(visible=t == T2I), gr.Column(visible=t == MMU)), task, [t2i_side, mmu_side],
                queue=False, api_visibility="private")


def compare_set_view(ui: ComparePairHandlers, panel: gr.HTML) -> None:
    """Load a Show-o set, browse its pairs, make OmniMamba's side of one or all (cached in the tab's state)."""
    cset = gr.State(CompareSet(), delete_callback=CompareSet.close)
    with gr.Row(equal_height=False):
        with gr.Column(scale=2, min_width=300):
            files = gr.File(file_count="multiple", file_types=[*IMAGE_SUFFIXES, ".txt", ".jsonl"], height=210,
                            label="Show-o's outputs", elem_id="om-set-files")
            gr.Markdown(SET_FILES_HINT, elem_classes="om-hint")
            path = gr.Textbox(label="…or a folder or manifest on this machine", visible=ui.server_paths,
                              placeholder="~/showo-out/256  or  ~/showo-out/256/manifest.jsonl")
            load = gr.Button("Load the set", elem_id="om-set-load")
            status = gr.Markdown(set_status("", [], 0), elem_id="om-set-status", latex_delimiters=[])
            with gr.Accordion("OmniMamba's settings", open=False):
                settings = [*sampling_controls(with_seed=False),
                            gr.Slider(0.0, 10.0, value=1.0, step=0.25, label="Guidance scale (1 = off)"),
                            gr.Slider(1, MAX_NEW_TOKENS, value=COMPARE_NEW_TOKENS, step=1,
                                      label="Max new tokens (image chat)")]
            download = gr.DownloadButton("Download manifest (both sides, JSONL)", visible=False, size="md")
        with gr.Column(scale=5):
            with gr.Row(equal_height=True):
                pick = gr.Dropdown([], value=None, label="Pair", scale=3, elem_id="om-set-pick")
                seed = gr.Number(value=None, precision=0, minimum=0, maximum=MAX_SEED, scale=1, min_width=220,
                                 label="OmniMamba's seed", info="default: Show-o's, else the pair's index")
            with gr.Row():
                back = gr.Button("◀ Previous", min_width=150)
                forward = gr.Button("Next ▶", min_width=100)
                make = gr.Button("Make OmniMamba's side", variant="primary", scale=3, elem_id="om-set-make")
                make_all = gr.Button("Make all", min_width=90)
                stop = gr.Button("Stop", variant="stop", min_width=80)
            with gr.Row(equal_height=True):
                showo_pic, ours_pic = (gr.Image(label=name, format="png", interactive=False, height=330,
                                                buttons=["download", "fullscreen"], elem_id=f"om-set-{key}")
                                       for name, key in (("Show-o", "showo"), ("OmniMamba", "ours")))
            with gr.Row(visible=False) as answers:
                showo_answer, ours_answer = (gr.Textbox(label=f"{name}'s answer", lines=6, interactive=False)
                                             for name in ("Show-o", "OmniMamba"))
            table = gr.Markdown(elem_id="om-set-table", latex_delimiters=[])
    outputs = [cset, pick, status, download, showo_pic, ours_pic, answers, showo_answer, ours_answer, table, seed]
    browse = dict(outputs=outputs, api_visibility="private", concurrency_limit=None)
    load.click(beside(ui.load_set, 11, note=2), [files, path, cset], outputs=outputs, api_visibility="private",
               **LOAD_LIMIT)
    pick.input(beside(ui.show_pair, 11, note=2), [cset, pick], **browse)
    back.click(beside(ui.previous_pair, 11, note=2), [cset, pick], **browse)
    forward.click(beside(ui.next_pair, 11, note=2), [cset, pick], **browse)
    not_done = dict(panel=11, panel_html_of=lambda: ui.ended_panel(None, "Not done"))
    making = [make.click(inputs=[cset, pick, seed, *settings], outputs=[*outputs, panel], api_visibility="private",
                         **gpu_event(beside(ui.make_pair, 12, note=2, **not_done), one_pair(guidance=6, tokens=7))),
              make_all.click(inputs=[cset, *settings], outputs=[*outputs, panel], api_visibility="private",
                             **gpu_event(beside(ui.make_all, 12, note=2, **not_done), None))]  # GPU once per pair
    stop.click(None, cancels=making, api_visibility="private").then(
        lambda: ui.ended_panel(None, "Stopped", "Compare"), None, panel, api_visibility="private",
        concurrency_limit=None)


def compare_images_side(ui: CompareOneHandlers, panel: gr.HTML, prompts: list[str]) -> None:
    with gr.Row(equal_height=False):
        with gr.Column(scale=2, min_width=320):
            prompt = gr.Dropdown(prompts, value=prompts[0] if prompts else None, allow_custom_value=True,
                                 label="Prompt (the one Show-o was given): pick one or type a new one")
            showo_image = gr.Image(type="filepath", label="Show-o's image (optional)", height=240,
                                   sources=["upload", "clipboard"], elem_id="om-showo-image")
            with gr.Accordion("OmniMamba's settings", open=False):
                temperature, top_k, top_p, seed = sampling_controls("Seed", seed=0)
                guidance = gr.Slider(0.0, 10.0, value=1.0, step=0.25, label="Guidance scale (1 = off)")
            go = gr.Button("Make OmniMamba's image", variant="primary")
        with gr.Column(scale=3):
            picture = gr.Image(label="Show-o (left) · OmniMamba (right)", format="png", interactive=False,
                               height=420, buttons=["download", "fullscreen"], elem_id="om-compare-picture")
            table = gr.Markdown(latex_delimiters=[], elem_id="om-compare-table")
            with gr.Accordion("Manifest record", open=False):
                record = gr.JSON(show_label=False)
    handler = beside(ui.compare_images_ui, 4, note=2, panel=3,
                     panel_html_of=lambda: ui.ended_panel(None, "Not done"))
    go.click(inputs=[prompt, seed, showo_image, temperature, top_k, top_p, guidance],
             outputs=[picture, record, table, panel], api_visibility="private",
             **gpu_event(handler, by_images(None, 6)))


def compare_answers_side(ui: CompareOneHandlers, panel: gr.HTML, questions: list[list[str]]) -> None:
    with gr.Row(equal_height=False):
        with gr.Column(scale=2, min_width=320):
            image = gr.Image(type="filepath", label="Image", height=240, sources=["upload", "clipboard"])
            question = gr.Textbox(label="Question (the one Show-o answered)", lines=2)
            showo_answer = gr.Textbox(label="Show-o's answer (optional)", lines=3)
            with gr.Accordion("OmniMamba's settings", open=False):
                max_new = gr.Slider(1, MAX_NEW_TOKENS, value=COMPARE_NEW_TOKENS, step=1, label="Max new tokens")
                settings = [max_new, *sampling_controls("Seed", seed=0)]
            ask = gr.Button("Get OmniMamba's answer", variant="primary")
            if questions:
                gr.Examples(questions, inputs=[image, question], label="Questions from assets/questions.txt",
                            api_visibility="private")
        with gr.Column(scale=3):
            answer = gr.Textbox(label="OmniMamba's answer", lines=8, interactive=False, buttons=["copy"])
            table = gr.Markdown(latex_delimiters=[])
            with gr.Accordion("Manifest record", open=False):
                record = gr.JSON(show_label=False)
    handler = beside(ui.compare_answers_ui, 4, note=2, panel=3,
                     panel_html_of=lambda: ui.ended_panel(None, "Not done"))
    ask.click(inputs=[image, question, showo_answer, *settings], outputs=[answer, record, table, panel],
              api_visibility="private", **gpu_event(handler, by_tokens(3)))


def build_demo(engine: Engine, server_paths: bool = False, notice: str = "") -> gr.Blocks:
    """The whole app around one shared engine. Styling is passed at launch (see `serve`). `server_paths` lets the
    Compare tab load a Show-o set from a path on this machine: for local use only, never on a public server.
    `notice`: a banner saying why this is not the official model and how to get it (hub.ModelChoice.notice)."""
    ui = TabHandlers.around(engine, server_paths)
    examples = load_examples(shapes_world=engine.model.config == OmniMambaConfig.shapes())
    with gr.Blocks(title="OmniMamba", delete_cache=(3600, 3600)) as demo:
        gr.HTML(header_html(ui.chat.info, notice), elem_id="om-header")
        panel = gr.HTML(ui.chat.panel(), elem_id="om-panel", js_on_load=None)
        with gr.Tabs(elem_id="om-tabs"):
            with gr.Tab("Image chat", id="chat"):
                chat_tab(ui.chat, panel, examples["chat"])
            with gr.Tab("Text to image", id="t2i"):
                t2i_tab(ui.images, panel, examples["text_to_image"])
            with gr.Tab("Compare", id="compare"):
                compare_tab(ui, panel)
        register(Endpoints(ui.chat, ui.images, ui.one, ui.pairs, ui.images.info["image_defaults"]))
    return demo


def look() -> dict:
    """Theme and CSS: Gradio 6 takes them at launch()."""
    theme = gr.themes.Soft(primary_hue="indigo", secondary_hue="violet", neutral_hue="slate",
                           font=["ui-sans-serif", "system-ui", "-apple-system", "Segoe UI", "Roboto", "sans-serif"],
                           font_mono=["ui-monospace", "SFMono-Regular", "Menlo", "monospace"])
    return {"theme": theme, "css_paths": [STYLE] if STYLE.is_file() else None}


def serve(demo: gr.Blocks, host: str = "127.0.0.1", port: int = 7860, share: bool = False,
          block: bool = True, queue_size: int = QUEUE_SIZE, slots: int = 1) -> str:
    """Queue (bounded; `slots` GPU requests at once, see demo/gpu.py) and launch; returns the local URL (when
    `block` is False)."""
    _, url, _ = demo.queue(max_size=queue_size, default_concurrency_limit=slots).launch(
        server_name=host, server_port=port, share=share, prevent_thread_lock=not block, show_error=False,
        quiet=not block, max_file_size=MAX_FILE_SIZE, **look())
    return url


# ---------------------------------------------------------------------------------------------- command line
def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args(argv, __doc__)
    from omnimamba.cli import user_errors as mistakes

    try:
        engine, choice = open_engine_or_fallback(args)
    except mistakes() as exc:
        sys.exit(f"error: {exc}")
    if args.warmup and engine.device.type == "cuda" and not ZERO_GPU:  # on ZeroGPU there is no GPU until a call
        warm_up(engine)
    local = args.host in LOCAL_HOSTS and not args.share and "SPACE_ID" not in os.environ
    serve(build_demo(engine, server_paths=local, notice=choice.notice), args.host, args.port, args.share,
          queue_size=args.queue_size, slots=gpu_slots(engine.scheduler is not None))


if __name__ == "__main__":
    main()
