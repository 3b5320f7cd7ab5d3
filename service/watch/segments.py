"""Per-frame answers → segments: when a product starts and stops being presented.

Each sampled frame gives an `Observation`: the product that led the frame's answer, or None when the
service abstained. A vote over the last `window_s` seconds smooths them:

- a product **starts** when it leads at least `min_share` of the window's frames (and at least two of
  them); the segment begins at its first leading frame in the window;
- it **continues** while it keeps leading some frames: one bad frame, or a few, does not split it;
- it **ends** when another product qualifies with more frames in the window (the segment ends where the
  new one begins), or when it has not led for `gap_s` seconds (it ends after its last leading frame).

A frame stands for the `interval_s` after it, so a segment's end is its last leading frame + interval.
Pure and synchronous: the watcher feeds it, the tuning script replays recorded answers through it
(docs/WATCHING.md has the measurement behind the defaults).
"""

from __future__ import annotations

from collections import Counter, defaultdict, deque
from dataclasses import dataclass, field

from watchbuy.settings import Settings


@dataclass(frozen=True, slots=True)
class SegmentConfig:
    window_s: float = 4.0  # the defaults are the settings' (chosen in docs/WATCHING.md)
    min_share: float = 0.5
    gap_s: float = 3.0
    pooled: bool = True  # vote on pooled scores of each frame's top products, not on single-frame winners

    @classmethod
    def from_settings(cls, settings: Settings) -> SegmentConfig:
        return cls(settings.watch_window_seconds, settings.watch_min_share, settings.watch_gap_seconds,
                   settings.watch_pooled)


@dataclass(frozen=True, slots=True)
class Observation:
    time_s: float
    product_id: str | None  # None: the answer abstained
    score: float = 0.0
    ranked: tuple[tuple[str, float], ...] = ()  # the frame's top products and scores, abstained or not
    threshold: float = 0.0  # the stream's abstain threshold

@dataclass(frozen=True, slots=True)
class Segment:
    product_id: str
    start_s: float
    end_s: float
    score: float  # mean score of the frames it led


@dataclass(slots=True)
class _Open:
    product_id: str
    start_s: float
    last_s: float
    scores: list[float] = field(default_factory=list)

    def close(self, end_s: float) -> Segment:
        score = sum(self.scores) / len(self.scores) if self.scores else 0.0
        return Segment(self.product_id, round(self.start_s, 3), round(max(end_s, self.start_s), 3), round(score, 4))


@dataclass(frozen=True, slots=True)
class Changes:
    """What one observation changed: a segment that ended and/or one that started (its product, start)."""

    ended: Segment | None = None
    started: Segment | None = None  # end_s = start_s while open


class Segmenter:
    def __init__(self, config: SegmentConfig, interval_s: float) -> None:
        self.config = config
        self.interval_s = interval_s
        self._window: deque[Observation] = deque()
        self._open: _Open | None = None
        self._last_s = 0.0

    @property
    def current(self) -> Segment | None:
        """The segment open now (end = its last leading frame + interval)."""
        if self._open is None:
            return None
        return self._open.close(self._open.last_s + self.interval_s)

    def feed(self, obs: Observation) -> Changes:
        self._last_s = obs.time_s
        self._window.append(obs)
        while self._window and self._window[0].time_s <= obs.time_s - self.config.window_s:
            self._window.popleft()
        ended = started = None
        current = self._open
        if current is not None and self._lead(obs) == current.product_id:
            current.last_s = obs.time_s
            current.scores.append(self._score_of(obs, current.product_id))
        leader = self._qualified_leader()
        if current is not None and leader is not None and leader != current.product_id:
            if self._leads(leader) > self._leads(current.product_id):
                begin = self._first_lead(leader)
                ended = current.close(min(current.last_s + self.interval_s, begin))
                self._open = current = None
        if current is not None and obs.time_s - current.last_s > self.config.gap_s:
            ended = current.close(current.last_s + self.interval_s)
            self._open = current = None
        if current is None and leader is not None:
            begin = self._first_lead(leader)
            if ended is not None:
                begin = max(begin, ended.end_s)
            scores = [self._score_of(o, leader) for o in self._window if self._lead(o) == leader and o.time_s >= begin]
            self._open = _Open(leader, begin, obs.time_s, scores)
            started = Segment(leader, round(begin, 3), round(begin, 3), 0.0)
        return Changes(ended, started)

    def finish(self, end_s: float | None = None) -> Segment | None:
        """The source ended: close the open segment (at its last leading frame + interval, or `end_s`)."""
        if self._open is None:
            return None
        stop = self._open.last_s + self.interval_s
        segment = self._open.close(min(stop, end_s) if end_s is not None else stop)
        self._open = None
        self._window.clear()
        return segment

    def _lead(self, obs: Observation) -> str | None:
        """Who leads a frame: its answer's product (None when abstained); pooled: its top product."""
        if self.config.pooled:
            return obs.ranked[0][0] if obs.ranked else None
        return obs.product_id

    def _score_of(self, obs: Observation, product_id: str) -> float:
        if self.config.pooled:
            return dict(obs.ranked).get(product_id, 0.0)
        return obs.score if obs.product_id == product_id else 0.0

    def _qualified_leader(self) -> str | None:
        n = len(self._window)
        if self.config.pooled:  # the window's mean score per product must clear the stream's threshold
            pooled: defaultdict[str, float] = defaultdict(float)
            for o in self._window:
                for product_id, score in o.ranked:
                    pooled[product_id] += score / n
            if not pooled:
                return None
            product = max(pooled, key=lambda p: pooled[p])
            if pooled[product] < self._window[-1].threshold:
                return None
        else:
            votes = Counter(lead for o in self._window if (lead := self._lead(o)) is not None)
            if not votes:
                return None
            product = max(votes, key=lambda p: (votes[p], self._score_sum(p)))
        leads = self._leads(product)
        if leads < 2 or leads < self.config.min_share * n:
            return None
        return product

    def _leads(self, product_id: str) -> int:
        return sum(1 for o in self._window if self._lead(o) == product_id)

    def _first_lead(self, product_id: str) -> float:
        return next(o.time_s for o in self._window if self._lead(o) == product_id)

    def _score_sum(self, product_id: str) -> float:
        return sum(self._score_of(o, product_id) for o in self._window)
