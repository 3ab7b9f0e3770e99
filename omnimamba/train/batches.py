"""Records -> padded tensor batches, laid out exactly as the engine feeds the model at inference.

Image chat (MMU), text ids after the image block [mmu][soi] image [eoi][sot] (that block is added by the model):
    USER: q1 ASSISTANT:| a1 <eos>|USER: q2 ASSISTANT:| a2 <eos>| ...
The question text is `OmniTokenizer.chat_turn` (the engine's template); an answer is " " + its text (the model
writes the space after "ASSISTANT:" itself) and ends with <|endoftext|>, which is also how the engine starts the
next turn (it feeds the sampled EOS, then the next chat_turn). Labels are the answer ids and their EOS; the
question, the image block and the right padding ([PAD]) carry IGNORE.
Text to image: the caption prefix is `OmniTokenizer.caption` (left-padded, head kept); a dropped caption is
`OmniTokenizer.unconditional_caption`, the engine's unconditional side for classifier-free guidance.
Plain text: ids + <|endoftext|>, every token labelled.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor

from ..config import OmniMambaConfig
from ..config import EOS_ID, PAD_ID
from ..tokenizer import OmniTokenizer
from .records import ChatRecord, DataError, T2IRecord, TextRecord, mmu_pixels

IGNORE = -100  # label of a position without loss (F.cross_entropy's ignore_index)
MMU_SPECIALS = 4  # [mmu][soi] ... [eoi][sot] around the image patches
DEFAULT_TEXT_LEN = 1024  # plain-text samples are cut here (no position table limits them)


class _Movable:
    """`.to(device)` and `.pin_memory()` over every tensor field (and the tensors of a dict field)."""

    def _map(self, fn) -> "_Movable":
        def apply(value):
            if isinstance(value, Tensor):
                return fn(value)
            if isinstance(value, dict):
                return {k: fn(v) for k, v in value.items()}
            return value
        return dataclasses.replace(self, **{f.name: apply(getattr(self, f.name)) for f in dataclasses.fields(self)})

    def to(self, device: torch.device | str, non_blocking: bool = False):
        return self._map(lambda t: t.to(device, non_blocking=non_blocking))

    def pin_memory(self):
        return self._map(lambda t: t.pin_memory())


@dataclass
class MMUBatch(_Movable):
    text_ids: Tensor  # (b, n) long, right-padded with [PAD]
    labels: Tensor  # (b, n) long, IGNORE where no loss
    images: Tensor | None  # uint8 (k, 3, S, S), `vision.resize_image` of the k rows that have an image; the loss
    # normalises them on the device (`vision.normalize_pixels`): 8x fewer bytes through the loader than fp32 inputs
    has_image: Tensor  # (b,) bool; rows without an image get the zero image block
    image_block: int  # sequence positions before the text: 4 specials + the image patches

    @property
    def num_tokens(self) -> int:
        b, n = self.text_ids.shape
        return b * (self.image_block + n)


@dataclass
class T2IBatch(_Movable):
    prefix_ids: Tensor  # (b, P) long: [t2i][sot] caption [eot][soi]
    image_ids: Tensor  # (b, image_grid^2) long VQ codes: the targets

    @property
    def num_tokens(self) -> int:
        return self.prefix_ids.shape[0] * (self.prefix_ids.shape[1] + self.image_ids.shape[1])


@dataclass
class TextBatch(_Movable):
    ids: Tensor  # (b, n) long, right-padded with [PAD]
    labels: Tensor  # (b, n) long, IGNORE on padding

    @property
    def num_tokens(self) -> int:
        return self.ids.numel()


Batch = MMUBatch | T2IBatch | TextBatch


class BatchBuilder:
    """Turns records into batches with the inference tokenizer and the model's sizes."""

    def __init__(self, tokenizer: OmniTokenizer, config: OmniMambaConfig, caption_dropout: float = 0.1,
                 max_text_len: int = DEFAULT_TEXT_LEN):
        self.tok, self.config, self.caption_dropout = tokenizer, config, caption_dropout
        self.image_block = MMU_SPECIALS + config.vision.num_patches
        self.max_chat_len = config.mmu_positions - self.image_block  # the MMU position table ends there
        self.max_text_len = max_text_len

    # ----------------------------------------------------------------- image chat
    def chat_ids(self, turns: Sequence[tuple[str, str]]) -> tuple[list[int], list[int]]:
        """(ids, labels) of a conversation after the image block, cut at the MMU position table's end."""
        ids, labels = [], []
        for question, answer in turns:
            prompt = self.tok.chat_turn(question)
            reply = self.tok.encode(" " + answer) + [EOS_ID]
            ids += prompt + reply
            labels += [IGNORE] * len(prompt) + reply
        return ids[:self.max_chat_len], labels[:self.max_chat_len]

    def mmu(self, records: Sequence[ChatRecord]) -> MMUBatch:
        rows = [self.chat_ids(r.turns) for r in records]
        ids, labels = _pad([r[0] for r in rows], PAD_ID), _pad([r[1] for r in rows], IGNORE)
        with_image = [r for r in records if r.image is not None]
        images = torch.stack([mmu_pixels(r, self.config.vision) for r in with_image]) if with_image else None
        has_image = torch.tensor([r.image is not None for r in records], dtype=torch.bool)
        return MMUBatch(ids, labels, images, has_image, self.image_block)

    # ----------------------------------------------------------------- text to image
    def caption_prefix(self, caption: str, dropped: bool) -> list[int]:
        if dropped:
            return OmniTokenizer.unconditional_caption(self.config.caption_len)
        return self.tok.caption(caption, self.config.caption_len).ids

    def t2i(self, records: Sequence[T2IRecord], dropped: Sequence[bool]) -> T2IBatch:
        """`dropped[i]`: row i trains the unconditional side (its caption becomes all [PAD])."""
        missing = [r.where for r in records if r.codes is None]
        if missing:
            raise DataError(f"{missing[0]}: text-to-image records need VQ codes; run `python -m omnimamba "
                            f"prepare` on the JSONL file and train on the folder it writes")
        prefix = torch.tensor([self.caption_prefix(r.caption, d) for r, d in zip(records, dropped)])
        return T2IBatch(prefix, torch.tensor([list(r.codes) for r in records], dtype=torch.long))

    # ----------------------------------------------------------------- plain text
    def text(self, records: Sequence[TextRecord]) -> TextBatch:
        rows = [(self.tok.encode(r.text) + [EOS_ID])[:self.max_text_len] for r in records]
        return TextBatch(_pad(rows, PAD_ID), _pad(rows, IGNORE))


def _pad(rows: list[list[int]], fill: int) -> Tensor:
    """Right-pad to the longest row."""
    n = max(len(r) for r in rows)
    return torch.tensor([r + [fill] * (n - len(r)) for r in rows], dtype=torch.long)
