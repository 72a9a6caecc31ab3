"""The kNN report picture: which ranks are drawn, and what the drawing shows (read from its pixels)."""

import io

import numpy as np
import pytest

from nbknn.knn.distance_picture import MAX_PLOTTED_RANKS, distance_png, picture_title, plotted_ranks

LINE_RGB = np.array([0x3B, 0x75, 0xAF]) / 255


def test_every_rank_is_drawn_up_to_the_cap_then_an_even_spread_with_both_ends():
    assert plotted_ranks(1) == [1]
    assert plotted_ranks(MAX_PLOTTED_RANKS) == list(range(1, MAX_PLOTTED_RANKS + 1))
    spread = plotted_ranks(1000)
    assert spread[0] == 1 and spread[-1] == 1000 and len(spread) == MAX_PLOTTED_RANKS
    assert np.all(np.diff(spread) > 0)


def _pixels(png: bytes) -> np.ndarray:
    from matplotlib.image import imread

    return imread(io.BytesIO(png), format="png")[:, :, :3]


def _line_height_by_column(image: np.ndarray) -> dict[int, float]:
    """Mean row of the median line's (opaque blue) pixels in each column that has some."""
    line = np.all(np.abs(image - LINE_RGB) < 0.03, axis=2)
    return {int(c): float(np.nonzero(line[:, c])[0].mean()) for c in np.nonzero(line.any(axis=0))[0]}


@pytest.mark.parametrize("shape", ["rising", "flat"])
def test_the_picture_draws_the_median_by_rank_over_its_shaded_band(shape):
    ranks = list(range(1, 11))
    median = [1.0 + r for r in ranks] if shape == "rising" else [5.0] * 10
    stats = {"ranks": ranks, "median": median, "p10": [m - 0.5 for m in median], "p90": [m + 0.5 for m in median]}
    image = _pixels(distance_png(stats, "euclidean", picture_title(10, "euclidean", "broadcast", 100, None)))
    assert image.shape == (400, 700, 3)
    heights = _line_height_by_column(image)
    columns = sorted(heights)
    assert columns[-1] - columns[0] > 300  # the line spans the plot
    # Image rows grow downwards: a rising median climbs, a flat one stays level.
    left, right = heights[columns[5]], heights[columns[-5]]
    if shape == "rising":
        assert left - right > 150
    else:
        assert abs(left - right) < 3
    # The band: the line's colour at a quarter opacity over white fills an area around it.
    band = np.all(np.abs(image - (0.75 + 0.25 * LINE_RGB)) < 0.03, axis=2)
    assert band.sum() > 2000


def test_the_title_names_the_annoy_recall():
    title = picture_title(10, "cosine", "annoy", 500, {"recall_at_k": 0.9731, "sample_queries": 300})
    assert "recall@10 = 0.9731 on 300 sampled queries" in title
