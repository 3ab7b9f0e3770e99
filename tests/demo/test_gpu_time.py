"""ZeroGPU reservations follow the request: what a visitor asks for sets how long the GPU is held."""
from demo.gpu import LONGEST_S, START_S, by_images, by_tokens, one_pair, seconds


def test_the_reservation_grows_with_the_work_asked_for_and_is_bounded():
    assert seconds() == START_S
    assert START_S < seconds(images=1) < seconds(images=4) < seconds(images=4, guidance=3.0)
    assert seconds(tokens=16) < seconds(tokens=1024) <= LONGEST_S
    assert seconds(tokens=10**9) == LONGEST_S
    assert seconds(tokens="lots", images=float("nan")) == START_S, "bad input is refused later, with a message"


def test_each_handler_reads_its_own_arguments():
    chat = by_tokens(2)  # respond(history, conv, max_new_tokens, ...)
    assert chat([], None, 1000, 1.0, 1, 0.0, -1) > chat([], None, 10, 1.0, 1, 0.0, -1)
    images = by_images(1, 6)  # images(prompt, num_images, seed, temperature, top_k, top_p, guidance_scale, ...)
    assert images("p", 8, -1, 1.0, 1, 0.0, 1.0, True) > images("p", 1, -1, 1.0, 1, 0.0, 1.0, True)
    assert images("p", 1, -1, 1.0, 1, 0.0, 3.0, True) > images("p", 1, -1, 1.0, 1, 0.0, 1.0, True)
    pair = one_pair(guidance=3, tokens=4)  # make_side(cset, index, params, guidance_scale, max_new_tokens)
    assert pair(None, 0, None, 1.0, 100) == max(seconds(images=1), seconds(tokens=100))
