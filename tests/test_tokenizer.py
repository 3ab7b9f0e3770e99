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
