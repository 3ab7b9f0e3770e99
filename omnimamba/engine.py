"""The one shared model and the only door to it: requests in, streamed text / images / metrics out.

request -> prompt ids (tokenizer) -> model (generation) -> tokens -> text or pixels.
GPU work is serialized by one lock, or, with `batching`, done by one scheduler thread that steps concurrent
requests together (scheduler.py); the streams and events are the same either way. Image chats are sessions keyed by id (see `sessions.py` for what an id
grants and how many chats one owner may keep): each keeps its token history, its image embedding and (while
it is among the most recent `max_live_states`) its recurrent state on the device, so a follow-up question
costs only its own tokens. An evicted session is rebuilt from its history. Limits are checked before any
work, and a turn that fails leaves its session exactly as it was; a stopped turn keeps what was streamed.
"""
from __future__ import annotations

import dataclasses
import logging
import threading
from typing import Callable, Iterator, TypeVar

import torch
from PIL import Image
from torch import Tensor

from .generation import ImageStep, ModelRunner
from .events import ChatEvent, ChatRecord, EngineError, ImageEvent
from .images import to_pil
from .metrics import RequestMeter
from .model import InferenceState, OmniMamba, PositionLimitError
from .model import kernels
from .config import EOS_ID
from .model.vision import preprocess_image, stack_pixel_values
from .sampling import ImageDefaults, SamplingParams, check_whole
from .scheduler import Scheduler
from .sessions import ANONYMOUS, ChatSession, SessionBusyError, SessionStore
from .streams import LockedOOM, batched_chat, batched_images, generator, locked_chat, locked_images
from .tokenizer import OmniTokenizer, PromptError, StreamingDetokenizer

log = logging.getLogger(__name__)
T = TypeVar("T")

MAX_IMAGE_PIXELS = 40_000_000  # larger uploads are refused (decompression bombs)
MAX_IMAGES_PER_PROMPT = 8
MAX_NEW_TOKENS = 65_536  # argument bound only: an answer also stops where the chat's position table ends
TINY_RANDOM = "tiny-random"
REPORT_EVERY = 16  # text-to-image progress (and metrics) every this many tokens when previews are off
# several images asked for without sampling settings: sample (LlamaGen's usual top-k), one seed per image
SEVERAL_IMAGES = SamplingParams(temperature=1.0, top_k=2000, top_p=0.0)
MIN_QUESTION_TOKENS = 8  # a follow-up with less room than this is refused as "conversation full"


class Engine:
    def __init__(self, model: OmniMamba, tokenizer: OmniTokenizer, label: str = "OmniMamba-1.3B",
                 max_sessions: int = 1024, max_live_states: int = 16, use_cuda_graphs: bool | None = None,
                 sessions_per_owner: int = 32, batching: bool = False,
                 image_defaults: ImageDefaults = ImageDefaults(), int8_decode: bool = False,
                 bf16_decode: bool = False):
        """batching: serve concurrent requests through one scheduler (scheduler.py) that steps them together;
        otherwise one request at a time under `lock`. Streams, events and errors are the same either way.
        image_defaults: the text-to-image settings the model suggests (its checkpoint's; the app and CLI start
        from them). int8_decode: decode steps read 8-bit copies of the weights (model/quant.py; half the bytes,
        changed logits: docs/benchmarks.md; the prefill keeps the model's weights). bf16_decode: an fp32 model on
        the CPU decodes from bf16 copies (exact for a model trained in bf16, such as the shapes model; each
        product's input rounded to bf16; about 1.5x faster images on a 2-core CPU: docs/shapes-model.md)."""
        if int8_decode and bf16_decode:
            raise ValueError("choose one of int8_decode and bf16_decode")
        self.model, self.tokenizer, self.label = model, tokenizer, label
        self.image_defaults = image_defaults
        if not model.lora_merged:  # serving only: keep the merged task weights, drop W and the LoRA factors
            model.merge_lora(release_unmerged=True)
        copies = "int8" if int8_decode else "bf16" if bf16_decode else None
        if copies is not None and model.decode_copies != copies:
            model.quantize_decode(copies)
        self.runner = ModelRunner(model, use_cuda_graphs)
        self.lock = threading.Lock()
        self.sessions = SessionStore(sessions_per_owner, max_sessions, max_live_states)
        self.scheduler = Scheduler(self.runner) if batching else None
        log.info("engine ready: %s on %s (%s); kernels: %s; %s", label, self.device, model.dtype,
                 kernels.describe_backends(self.device), "batching" if batching else "one request at a time")

    def close(self) -> None:
        """Stop the scheduler's thread (batching engines); requests still running get an error."""
        if self.scheduler is not None:
            self.scheduler.close()

    @classmethod
    def load(cls, model: str = "hustvl/OmniMamba", revision: str | None = None, device: str | None = None,
             dtype: torch.dtype | None = None, tokenizer: str | None = None, offline: bool | None = None,
             cache_dir: str | None = None, bf16_decode: bool | None = None, **engine_kwargs) -> "Engine":
        """The official model from the Hub (or a local file/folder); "shapes": the small model shipped in the
        package; "auto": the official weights when cached, else "shapes" (hub.choose_model, as the CLI); or
        TINY_RANDOM: a randomly initialised tiny model for trying the interface without weights (its outputs
        are noise). bf16_decode None (auto):
        on for a trained checkpoint (not the official release, whose CPU path stays the fp32 reference) loaded
        in fp32 on the CPU whose weights are bf16 values, as the shipped shapes model (its images in under 3 s on
        a 2-core CPU instead of 3-4.7 s), unless 8-bit copies are asked for."""
        from . import hub
        from .model.init import random_model
        from .config import OmniMambaConfig

        try:
            tok = OmniTokenizer.from_file(tokenizer)  # None: the copy shipped in the package
        except (OSError, ValueError) as exc:  # missing, unreadable or not GPT-NeoX-20B's
            raise EngineError(str(exc)) from exc
        label = None
        if model in (hub.AUTO, hub.SHAPES):  # the names the CLI and the app take, resolved the same way
            choice = hub.choose_model(model, revision, cache_dir)
            model, label = choice.model, choice.label
        if model == TINY_RANDOM:
            dev = device or ("cuda" if torch.cuda.is_available() else "cpu")
            net = random_model(OmniMambaConfig.tiny(), dev, dtype or torch.float32, seed=0)
            return cls(net, tok, label="tiny-random (random weights: outputs are noise)",
                       bf16_decode=bool(bf16_decode), **engine_kwargs)
        net, report = hub.load_model(model, revision, device, dtype, cache_dir=cache_dir, offline=offline)
        log.info("weights: %s", report)
        engine_kwargs.setdefault("image_defaults", report.get("image_defaults", ImageDefaults()))
        if bf16_decode is None:
            bf16_decode = ("trained" in report.get("sources", {}) and not engine_kwargs.get("int8_decode")
                           and net.device.type == "cpu" and net.dtype == torch.float32 and net.holds_bf16_values())
        return cls(net, tok, label=label or hub.model_label(model, revision), bf16_decode=bf16_decode,
                   **engine_kwargs)

    @property
    def device(self) -> torch.device:
        return self.model.device

    def info(self) -> dict:
        cuda = self.device.type == "cuda"
        return {
            "model": self.label, "device": torch.cuda.get_device_name(self.device) if cuda else "CPU",
            "dtype": str(self.model.dtype).removeprefix("torch."), "backend": kernels.describe_backends(self.device),
            "vram_total_gib": torch.cuda.get_device_properties(self.device).total_memory / 2**30 if cuda else None,
            "caption_tokens": self.model.config.caption_len, "image_size": self.model.config.image_size,
            "chat_positions": self.model.config.mmu_positions, "batching": self.scheduler is not None,
            "decode_weights": self.model.decode_copies or str(self.model.dtype).removeprefix("torch."),
            "image_defaults": dataclasses.asdict(self.image_defaults),
        }

    # ------------------------------------------------------------------ image chat
    def new_session(self, image: Image.Image | None = None, owner: str | None = None) -> str:
        """Start a chat (about `image`, or text only) for `owner` (an opaque client key; see sessions.py);
        returns its id."""
        embeds = self._encode_image(image) if image is not None else None
        return self.sessions.add(ChatSession(embeds, _owner(owner)))

    def restore_session(self, image: Image.Image | None, record: ChatRecord, owner: str | None = None) -> str:
        """A chat rebuilt from its record (see ChatEvent.record): the next question feeds the image block and the
        recorded ids in one prefill; no answer is generated again."""
        history, pending = list(record.history), list(record.pending)
        vocab = self.model.config.padded_text_vocab
        if not all(isinstance(i, int) and 0 <= i < vocab for i in history + pending) or len(pending) > 1:
            raise EngineError("the conversation record is damaged; start a new chat")
        if self._image_block() + len(history) > self.model.config.mmu_positions:
            raise EngineError("the conversation record is longer than this model's chats; start a new chat")
        embeds = self._encode_image(image) if image is not None else None
        return self.sessions.add(ChatSession(embeds, _owner(owner), history, pending, turns=record.turns))

    def has_session(self, session_id: str | None) -> bool:
        """The engine still holds this chat (see sessions.py for when it forgets one)."""
        return session_id in self.sessions

    def end_session(self, session_id: str) -> None:
        self.sessions.remove(session_id)

    def check_chat(self, message: str, session_id: str | None = None, record: ChatRecord | None = None) -> int:
        """Check before any work that `message` fits in the chat `session_id`, or in the chat `record` holds (a
        chat the caller keeps the ids of), or in a new chat; returns how many answer tokens the model can then
        produce. Raises EngineError saying what to do when it does not fit or the chat is unknown."""
        if record is not None:
            session = ChatSession(None, history=list(record.history), pending=list(record.pending),
                                  turns=record.turns)
        else:
            session = self.sessions.get(session_id) if session_id is not None else ChatSession(None)
        if session is None:
            raise EngineError("this conversation has expired; start a new one")
        turn = self._turn_ids(message)
        return self._room(session, _feed(session, turn), len(turn))

    def chat(self, session_id: str, message: str, params: SamplingParams = SamplingParams(),
             max_new_tokens: int = 256) -> Iterator[ChatEvent]:
        """Stream the answer to `message` in session `session_id`. Close the iterator to stop early (the answer so
        far is kept). Any failure leaves the session as it was before this call."""
        _check_params(params)
        max_new_tokens = _whole("max_new_tokens", max_new_tokens, 1, MAX_NEW_TOKENS, "(the chat's positions cap it too)")
        turn = self._turn_ids(message)
        try:
            session = self.sessions.begin_turn(session_id)
        except SessionBusyError as exc:
            raise EngineError(str(exc)) from None
        if session is None:
            raise EngineError("this conversation has expired; start a new one")
        try:
            feed = _feed(session, turn)
            self._room(session, feed, len(turn))
            yield from self._answer(session, feed, params, max_new_tokens)
        finally:
            self.sessions.end_turn(session)

    def _turn_ids(self, message: str) -> list[int]:
        try:
            return self.tokenizer.chat_turn(message)
        except PromptError as exc:
            raise EngineError(str(exc)) from exc

    def _image_block(self) -> int:
        return self.model.config.vision.num_patches + 4  # [mmu][soi] patches [eoi][sot]

    def _room(self, session: ChatSession, feed: list[int], turn_len: int) -> int:
        """Answer tokens left after feeding `feed`; an EngineError that says what to do when it does not fit."""
        limit = self.model.config.mmu_positions
        used = self._image_block() + len(session.history)
        room = limit - used - len(feed)
        if room >= 0:
            return room + 1  # the last sampled token is never fed
        fit = max(limit - used - (len(feed) - turn_len), 0)  # what is left for the question itself
        if session.turns and fit < MIN_QUESTION_TOKENS:
            raise EngineError(f"This conversation is full: it has used {used:,} of the model's {limit:,} "
                              f"positions. Start a new chat to go on.")
        if session.turns:
            raise EngineError(f"The question is {turn_len:,} tokens; {fit:,} fit in what is left of this "
                              f"conversation. Shorten it, or start a new chat.")
        raise EngineError(f"The question is {turn_len:,} tokens; this model's chat holds at most {fit:,}. "
                          f"Shorten it.")

    def _answer(self, session: ChatSession, feed: list[int], params: SamplingParams,
                max_new_tokens: int) -> Iterator[ChatEvent]:
        meter = self._meter("chat")
        prepare = lambda: self._chat_inputs(session, feed)  # noqa: E731 - runs where the device work runs
        run = (batched_chat(self.scheduler, prepare, params, max_new_tokens) if self.scheduler is not None
               else locked_chat(self.runner, self.lock, prepare, params, max_new_tokens))
        detok = StreamingDetokenizer(self.tokenizer)
        sampled: list[int] = []
        limit = self.model.config.mmu_positions
        try:
            for step in run.steps:
                sampled.append(step.token)
                meter.first_token() if len(sampled) == 1 else meter.tokens(1)
                delta = detok.push(step.token)
                done = step.stop_reason is not None
                record = ChatRecord(tuple(session.history + feed + sampled[:-1]), (step.token,), session.turns + 1)
                yield ChatEvent(delta, detok.text, meter.snapshot(done, step.stop_reason), done,
                                _stop_note(step.stop_reason, limit), record)
        except GeneratorExit:  # stopped: keep what was taken, if the caller saw any of it
            run.steps.close()
            if sampled:
                self._commit(session, run.state, feed, run.tokens)
            raise
        except PositionLimitError as exc:  # checked above; this would be a bug, but still the user's message
            raise EngineError(f"this conversation is full ({exc.needed} of {exc.available} positions): "
                              f"start a new chat") from exc
        self._commit(session, run.state, feed, run.tokens)

    def _commit(self, session: ChatSession, state: InferenceState | None, feed: list[int], sampled: list[int]) -> None:
        if sampled and state is not None:  # the prompt and all but the last sampled token are now in `state`
            session.history = session.history + feed + sampled[:-1]
            session.pending = sampled[-1:]
            session.turns += 1
            self.sessions.keep_live(session, state)

    def _chat_inputs(self, session: ChatSession, feed: list[int]) -> tuple[InferenceState, Tensor]:
        """A working state and the embeddings to feed; the session itself is not touched (see `_commit`). A
        session without a live state (new, or evicted) starts from zeros and feeds the image block and its
        whole history again."""
        live = session.state
        if live is not None:
            ids = torch.tensor([feed], device=self.device)
            return live.clone(), self.model.embed_text(ids, live.seqlen)
        ids = torch.tensor([session.history + feed], device=self.device)
        image = session.image_embeds.to(self.device) if session.image_embeds is not None else None
        return self.model.new_state(1), self.model.embed_mmu(ids, image)

    @torch.no_grad()
    def _encode_image(self, image: Image.Image) -> Tensor:
        check_image(image)
        pixels = stack_pixel_values([preprocess_image(image, self.model.config.vision)])
        return self._on_device(lambda: self.runner.image_features(pixels).cpu())

    # ------------------------------------------------------------------ text to image
    def text_to_image(self, prompt: str, num_images: int = 1, params: SamplingParams | None = None,
                      guidance_scale: float = 1.0, preview_every: int = 0) -> Iterator[ImageEvent]:
        """Stream `num_images` images for `prompt`: previews every `preview_every` tokens, then the final ones.

        Without `params`, one image is greedy (the official setting) and several are sampled (SEVERAL_IMAGES)
        so that they differ. Sampled images get one seed each (params.seed + i, or a random base): image i of
        a batch equals a one-image request with its seed. The events carry the seeds."""
        num_images = _whole("num_images", num_images, 1, MAX_IMAGES_PER_PROMPT)
        preview_every = _whole("preview_every", preview_every, 0, 1 << 20, "(0 = no previews)")
        if isinstance(guidance_scale, bool) or not isinstance(guidance_scale, (int, float)) \
                or not 0.0 <= guidance_scale <= 20.0:
            raise EngineError(f"guidance_scale must be a number in [0, 20] (1 = off, the official setting), "
                              f"got {guidance_scale!r}")
        params = params if params is not None else SEVERAL_IMAGES if num_images > 1 else SamplingParams()
        _check_params(params)
        cfg = self.model.config
        try:
            caption = self.tokenizer.caption(prompt, cfg.caption_len)
        except PromptError as exc:
            raise EngineError(str(exc)) from exc
        note = (f"prompt truncated to its first {cfg.caption_len} of {caption.num_tokens} tokens "
                f"(the model's caption length)" if caption.truncated else None)
        prefix = torch.tensor([caption.ids] * num_images)
        uncond = torch.tensor([self.tokenizer.unconditional_caption(cfg.caption_len)] * num_images)
        seeds = None if params.greedy else image_seeds(params.seed, num_images)
        gens = [generator(seed, self.device) for seed in seeds] if seeds else None
        report_every = preview_every or REPORT_EVERY
        uncond = uncond if guidance_scale != 1.0 else None
        steps = (batched_images(self.scheduler, prefix, uncond, params, guidance_scale, report_every,
                                gens or [None] * num_images) if self.scheduler is not None
                 else locked_images(self.runner, self.lock, prefix, uncond, params, guidance_scale, report_every, gens))
        yield from self._images(steps, preview_every, note, seeds)

    def _images(self, steps: Iterator[ImageStep], preview_every: int, note: str | None,
                seeds: list[int] | None) -> Iterator[ImageEvent]:
        meter = self._meter("t2i")
        grid = self.model.config.image_grid
        have = 0  # tokens per image reported so far
        try:
            for step in steps:
                batch, n = step.tokens.shape
                if have == 0:
                    meter.first_token(batch)
                else:
                    meter.tokens(batch * (n - have), steps=n - have)
                have = n
                show = step.done or bool(preview_every)
                images = self._render(step.tokens, grid) if show and n >= grid else []
                yield ImageEvent(images, meter.snapshot(step.done, "done" if step.done else None), step.done,
                                 rows_done=n // grid, note=note, seeds=seeds)
        finally:
            steps.close()

    def _render(self, tokens: Tensor, grid: int) -> list[Image.Image]:
        if self.scheduler is None:
            return self.render(tokens, grid)  # the locked stream holds the lock already
        return self.scheduler.call(lambda: self.render(tokens.to(self.device), grid))

    @torch.no_grad()
    def render(self, tokens: Tensor, grid: int) -> list[Image.Image]:
        """Image tokens (b, k <= grid^2) -> PIL images; rows not generated yet are grey."""
        b, k = tokens.shape
        full = torch.zeros(b, grid * grid, dtype=torch.long, device=tokens.device)
        full[:, :k] = tokens
        pixels = self.model.decode_images(full).float().clamp(-1, 1)  # (b, 3, H, W)
        rows_px = (k // grid) * pixels.shape[-2] // grid
        if k < grid * grid:
            pixels[:, :, rows_px:] = 0.0  # grey = 0 in [-1, 1]
        return [to_pil(p) for p in pixels]

    # ------------------------------------------------------------------ plumbing
    def _on_device(self, fn: Callable[[], T]) -> T:
        """Device work outside a request (image encoding): between the scheduler's steps, or under the lock."""
        if self.scheduler is not None:
            return self.scheduler.call(fn)
        with LockedOOM(self.lock, self.device):
            return fn()

    def _meter(self, task: str) -> RequestMeter:
        # with batching, clocks read without a device sync: a sync from this thread would stall the others
        return RequestMeter(task, self.device, self.model.dtype, kernels.describe_backends(self.device),
                            sync=self.scheduler is None)


def _stop_note(reason: str | None, limit: int) -> str | None:
    return {"position_limit": f"the conversation reached the model's {limit}-position limit; start a new chat",
            "max_new_tokens": "stopped at the max-new-tokens limit"}.get(reason)


def image_seeds(seed: int | None, count: int) -> list[int]:
    """One seed per image: seed, seed + 1, ... (a random base when None), wrapping below 2**63."""
    base = seed if seed is not None else int(torch.randint(0, 2**62, ()).item())
    return [(base + i) % 2**63 for i in range(count)]


def _feed(session: ChatSession, turn: list[int]) -> list[int]:
    """What a turn feeds: the last answer's pending token, the <|endoftext|> that closes it, the question."""
    return session.pending + ([EOS_ID] if session.turns and session.pending[-1:] != [EOS_ID] else []) + turn


def _owner(owner: str | None) -> str:
    if owner is not None and not isinstance(owner, str):
        raise EngineError(f"owner must be a string key (e.g. the client's session hash), got {type(owner).__name__}")
    return owner or ANONYMOUS


def _whole(name: str, value: object, low: int, high: int, hint: str = "") -> int:
    try:
        return check_whole(name, value, low, high, hint)
    except ValueError as exc:
        raise EngineError(str(exc)) from None


def _check_params(params: object) -> None:
    if not isinstance(params, SamplingParams):
        raise EngineError(f"params must be a SamplingParams, got {type(params).__name__}")


def check_image(image: Image.Image) -> None:
    if not isinstance(image, Image.Image):
        raise EngineError("the image could not be read; upload a PNG, JPEG or WebP file")
    if image.width * image.height > MAX_IMAGE_PIXELS:
        raise EngineError(f"the image is {image.width}x{image.height}; images up to "
                          f"{MAX_IMAGE_PIXELS // 1_000_000} megapixels are accepted")

