"""The evaluation command's drawing: how many images, which are greedy, and that each sampled one has its seed."""
import numpy as np

from omnimamba.shapes.evaluate import draw_fn


def pixels(image):
    return np.asarray(image, dtype=np.int16)


def test_images_are_sampled_with_their_own_seeds_and_greedy_only_when_asked(tiny_engine):
    sampled = draw_fn(tiny_engine, seed=0)("a red circle", 2)
    assert len(sampled) == 2 and np.abs(pixels(sampled[0]) - pixels(sampled[1])).mean() > 0
    again = draw_fn(tiny_engine, seed=0)("a red circle", 2)  # the same seeds: the same images
    assert all(np.array_equal(pixels(a), pixels(b)) for a, b in zip(sampled, again))
    first_greedy = draw_fn(tiny_engine, seed=0, greedy_first=True)("a red circle", 2)
    greedy = draw_fn(tiny_engine, seed=5, greedy_first=True)("a red circle", 1)
    assert np.array_equal(pixels(first_greedy[0]), pixels(greedy[0]))  # greedy: no seed involved
    guided = draw_fn(tiny_engine, seed=0, guidance_scale=3.0)("a red circle", 1)
    assert not np.array_equal(pixels(guided[0]), pixels(sampled[0]))
