"""The segmenter: starts after a product leads the window, survives bad frames, ends on takeover or gap;
the single-frame vote first, then the pooled one."""

from __future__ import annotations

from service.watch.segments import Observation, Segment, SegmentConfig, Segmenter

FPS = 4.0


def run(labels: list[str | None], config: SegmentConfig | None = None) -> list[Segment]:
    """Feed one label per frame at FPS; every finished segment, in order."""
    segmenter = Segmenter(config or SegmentConfig(window_s=2.0, min_share=0.5, gap_s=2.0, pooled=False), 1 / FPS)
    done = []
    for n, label in enumerate(labels):
        ended = segmenter.feed(Observation(n / FPS, label, 0.8 if label else 0.0)).ended
        if ended is not None:
            done.append(ended)
    last = segmenter.finish()
    return done + ([last] if last is not None else [])


def spans(segments: list[Segment]) -> list[tuple[str, float, float]]:
    return [(s.product_id, s.start_s, s.end_s) for s in segments]


def test_a_product_shown_alone_is_one_segment_with_its_own_times() -> None:
    labels = [None] * 8 + ["a"] * 20 + [None] * 12
    assert spans(run(labels)) == [("a", 2.0, 7.0)]


def test_one_bad_frame_or_a_few_abstentions_do_not_split_a_segment() -> None:
    labels = ["a"] * 10 + ["b"] + ["a"] * 5 + [None, None, None] + ["a"] * 10
    assert spans(run(labels)) == [("a", 0.0, 7.25)]


def test_a_takeover_ends_the_first_where_the_second_begins() -> None:
    labels = ["a"] * 16 + ["b"] * 16
    assert spans(run(labels)) == [("a", 0.0, 4.0), ("b", 4.0, 8.0)]


def test_a_gap_ends_the_segment_after_its_last_frame() -> None:
    labels = ["a"] * 12 + [None] * 12 + ["a"] * 12
    assert spans(run(labels)) == [("a", 0.0, 3.0), ("a", 6.0, 9.0)]


def test_scattered_wrong_answers_start_nothing() -> None:
    labels = ["x", None, None, "y", None, None, "z", None, None, "x", None, None] * 4
    assert run(labels) == []


def test_a_segment_scores_the_mean_of_the_frames_it_led() -> None:
    segmenter = Segmenter(SegmentConfig(2.0, 0.5, 2.0, pooled=False), 1 / FPS)
    for n, score in enumerate([0.6, 0.8, 0.7, 0.9]):
        segmenter.feed(Observation(n / FPS, "a", score))
    assert segmenter.current is not None and segmenter.current.product_id == "a"
    finished = segmenter.finish()
    assert finished is not None and abs(finished.score - 0.75) < 1e-6
    assert segmenter.current is None


def test_the_end_of_the_source_can_cut_the_last_segment() -> None:
    segmenter = Segmenter(SegmentConfig(2.0, 0.5, 2.0, pooled=False), 1 / FPS)
    for n in range(8):
        segmenter.feed(Observation(n / FPS, "a", 0.7))
    finished = segmenter.finish(end_s=1.9)
    assert finished is not None and finished.end_s == 1.9


def pooled(labels: list[tuple[tuple[str, float], ...]], threshold: float = 0.4, tie: float = 0.0) -> list[Segment]:
    segmenter = Segmenter(SegmentConfig(window_s=2.0, min_share=0.34, gap_s=2.0, pooled=True, tie=tie), 1 / FPS)
    done = []
    for n, ranked in enumerate(labels):
        top = ranked[0] if ranked and ranked[0][1] >= threshold else None
        obs = Observation(n / FPS, top[0] if top else None, top[1] if top else 0.0, ranked, threshold)
        if (ended := segmenter.feed(obs).ended) is not None:
            done.append(ended)
    last = segmenter.finish()
    return done + ([last] if last is not None else [])


def test_the_pooled_vote_keeps_the_product_whose_scores_stay_high_through_flips() -> None:
    a_first, b_first = (("a", 0.62), ("b", 0.60)), (("b", 0.61), ("a", 0.59))
    labels = [a_first, b_first] * 10  # the single-frame winner flips every frame
    assert spans(pooled(labels)) == [("a", 0.0, 4.75)]  # its last leading frame is at 4.5 s


def test_the_pooled_vote_names_nothing_below_the_streams_threshold() -> None:
    assert pooled([(("a", 0.35), ("b", 0.2))] * 20) == []


def test_look_alikes_within_the_tie_stay_one_segment_named_after_the_best_over_all_its_frames() -> None:
    a_first, b_first = (("a", 0.62), ("b", 0.60)), (("b", 0.64), ("a", 0.61))
    labels = [a_first] * 8 + [b_first] * 12  # a leads first; over the 20 frames b scores more
    assert spans(pooled(labels, tie=0.05)) == [("b", 0.0, 5.0)]
    assert spans(pooled(labels, tie=0.0)) == [("a", 0.0, 2.0), ("b", 2.0, 5.0)]  # without the tie: a takeover


def test_a_real_change_of_product_still_splits_with_a_tie() -> None:
    labels = [(("a", 0.7), ("c", 0.2))] * 12 + [(("b", 0.7), ("d", 0.2))] * 12
    segments = pooled(labels, tie=0.05)
    assert spans(segments) == [("a", 0.0, 3.0), ("b", 3.0, 6.0)]
    assert abs(segments[0].score - 0.7) < 1e-6  # the product's mean score over the segment's frames
