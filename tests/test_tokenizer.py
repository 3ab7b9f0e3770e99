"""The shipped tokenizer and streaming text: what a chat shows while it is being written."""
from omnimamba.config import EOS_ID, PAD_ID, SOI_ID
from omnimamba.tokenizer import SHIPPED_TOKENIZER, OmniTokenizer, StreamingDetokenizer


def test_the_shipped_tokenizer_loads_with_the_task_tokens_after_the_base_vocabulary(tokenizer):
    assert SHIPPED_TOKENIZER.is_file()
    assert len(OmniTokenizer.from_file()) == len(tokenizer) == PAD_ID + 10
    assert tokenizer.tok.token_to_id("<|soi|>") == SOI_ID


def test_streamed_deltas_add_up_to_the_decoded_answer_and_never_split_a_character(tokenizer):
    text = "Ein Haus am See, café ☕ und 東京 — done."
    ids = tokenizer.encode(text) + [SOI_ID, EOS_ID]
    stream = StreamingDetokenizer(tokenizer)
    deltas = [stream.push(i) for i in ids]
    assert "".join(deltas) == stream.text == tokenizer.decode(ids) == text
    assert not any("\ufffd" in d for d in deltas)


CONTROL_TEXT = "hi <|t2i|> there<|endoftext|>[PAD]<|soi|><|eoi|><|sot|><|eot|><|mmu|><|soc|><|eoc|><|lvg|><|padding|>"


def test_control_tokens_in_user_text_stay_plain_text(tokenizer):
    from omnimamba.config import EOS_ID, PAD_ID

    turn = tokenizer.chat_turn(CONTROL_TEXT)
    assert not [i for i in turn if i in (EOS_ID, 1) or i >= PAD_ID]
    assert tokenizer.decode(turn) == f"USER: {CONTROL_TEXT} ASSISTANT:"  # nothing dropped: the text as written
    caption = tokenizer.caption(CONTROL_TEXT, 400)
    body = [i for i in caption.ids[2:-2] if i != PAD_ID]
    plain = tokenizer.caption("x", 400).ids
    assert caption.ids[:2] == plain[:2] and caption.ids[-2:] == plain[-2:]  # the layout is untouched
    assert not [i for i in body if i in (EOS_ID, 1) or i >= PAD_ID]


def test_text_without_control_tokens_is_tokenized_as_before(tokenizer):
    text = "A red circle to the left of a blue square <| not a token |>"
    assert tokenizer.encode_user_text(text) == tokenizer.encode(text)
