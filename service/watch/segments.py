"""Per-frame answers → segments: when a product starts and stops being presented.

Each sampled frame gives an `Observation`: the product that led the frame's answer (None when the
service abstained) and its top products with their scores. A vote over the last `window_s` seconds
smooths them. A frame **supports** a product when the product leads it (pooled vote: when the product's
score is within `tie` of the frame's top score, so two look-alikes that trade first place frame by frame
both keep their support):

- a product **starts** when it is supported by at least `min_share` of the window's frames (and at least
  two); the segment begins at its first supporting frame in the window;
- it **continues** while frames keep supporting it: one bad frame, or a few, does not split it;
- it **ends** when another product qualifies with more supporting frames in the window (the segment ends
  where the new one begins), or when nothing has supported it for `gap_s` seconds (it ends after its last
  supporting frame).

Pooled vote: a segment is one presentation, and it is named after the product with the highest mean
score over all of its frames (the rule `/identify` uses across a clip's frames), decided again as frames
come, so its name may change while it is open; `segment_ended` carries the final one.

A frame stands for the `interval_s` after it, so a segment's end is its last supporting frame + interval.
Pure and synchronous: the watcher feeds it, the tuning script replays recorded answers through it
(docs/WATCHING.md has the measurement behind the defaults).
"""

from __future__ import annotations

from collections import Counter, defaultdict, deque
from collections.abc import Iterable
from dataclasses import dataclass, field

from watchbuy.settings import Settings


@dataclass(frozen=True, slots=True)
class SegmentConfig:
    window_s: float = 3.0  # the defaults are the settings' (chosen in docs/WATCHING.md)
    min_share: float = 0.34
    gap_s: float = 3.0
    pooled: bool = True  # vote on pooled scores of each frame's top products, not on single-frame winners
    tie: float = 0.05  # pooled: a frame supports the products within this much of its top score

    @classmethod
    def from_settings(cls, settings: Settings) -> SegmentConfig:
        return cls(settings.watch_window_seconds, settings.watch_min_share, settings.watch_gap_seconds,
                   settings.watch_pooled, settings.watch_tie)


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
    score: float  # pooled vote: the product's mean score over the segment's frames; else over those it led


def _pooled(frames: Iterable[Observation]) -> dict[str, float]:
    """Each product's summed score over the frames' top products."""
    sums: defaultdict[str, float] = defaultdict(float)
    for o in frames:
        for product_id, score in o.ranked:
            sums[product_id] += score
    return sums


@dataclass(slots=True)
class _Open:
    product_id: str  # single-frame vote: the product it started with; pooled: the best pooled so far
    start_s: float
    last_s: float  # its last supporting frame
    pooled: bool
    frames: list[Observation] = field(default_factory=list)
    sums: dict[str, float] = field(default_factory=dict)  # pooled: summed scores over the frames up to last_s
    counted: int = 0  # frames in `sums`: those after the last supporting one may yet fall outside the segment

    def __post_init__(self) -> None:
        self._count()

    def add(self, obs: Observation, supports: bool) -> None:
        self.frames.append(obs)
        if supports:
            self.last_s = obs.time_s
            self._count()

    def _count(self) -> None:
        if not self.pooled:
            return
        for o in self.frames[self.counted:]:
            for product_id, score in o.ranked:
                self.sums[product_id] = self.sums.get(product_id, 0.0) + score
        self.counted = len(self.frames)
        if self.sums:
            self.product_id = max(self.sums, key=self.sums.__getitem__)

    def running(self, interval_s: float) -> Segment:
        """The segment as it stands (cheap: from the running sums)."""
        if self.pooled:
            score = self.sums.get(self.product_id, 0.0) / max(1, self.counted)
        else:
            score = self._led_mean(self.frames)
        return Segment(self.product_id, round(self.start_s, 3), round(self.last_s + interval_s, 3), round(score, 4))

    def close(self, end_s: float) -> Segment:
        frames = [o for o in self.frames if o.time_s < end_s] or self.frames[:1]
        product_id, score = self.product_id, 0.0
        if self.pooled:
            sums = _pooled(frames)
            if sums:
                product_id = max(sums, key=sums.__getitem__)
                score = sums[product_id] / len(frames)
        else:
            score = self._led_mean(frames)
        return Segment(product_id, round(self.start_s, 3), round(max(end_s, self.start_s), 3), round(score, 4))

    def _led_mean(self, frames: list[Observation]) -> float:
        led = [o.score for o in frames if o.product_id == self.product_id]
        return sum(led) / len(led) if led else 0.0


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

    @property
    def current(self) -> Segment | None:
        """The segment open now (end = its last supporting frame + interval)."""
        return self._open.running(self.interval_s) if self._open is not None else None

    def feed(self, obs: Observation) -> Changes:
        self._window.append(obs)
        while self._window and self._window[0].time_s <= obs.time_s - self.config.window_s:
            self._window.popleft()
        ended = started = None
        current = self._open
        if current is not None:
            current.add(obs, self._supports(obs, current.product_id))
        leader = self._qualified_leader()
        if current is not None and leader is not None and leader != current.product_id:
            if self._leads(leader) > self._leads(current.product_id):
                begin = self._first_lead(leader)
                closed = current.close(min(current.last_s + self.interval_s, begin))
                if closed.product_id == leader:  # over its own frames the segment was the leader's all along
                    current.last_s = obs.time_s
                else:
                    ended, self._open, current = closed, None, None
        if current is not None and obs.time_s - current.last_s > self.config.gap_s:
            ended = current.close(current.last_s + self.interval_s)
            self._open = current = None
        if current is None and leader is not None:
            begin = self._first_lead(leader)
            if ended is not None:
                begin = max(begin, ended.end_s)
            frames = [o for o in self._window if o.time_s >= begin]
            self._open = _Open(leader, begin, obs.time_s, self.config.pooled, frames)
            started = Segment(leader, round(begin, 3), round(begin, 3), 0.0)
        return Changes(ended, started)

    def finish(self, end_s: float | None = None) -> Segment | None:
        """The source ended: close the open segment (at its last supporting frame + interval, or `end_s`)."""
        if self._open is None:
            return None
        stop = self._open.last_s + self.interval_s
        segment = self._open.close(min(stop, end_s) if end_s is not None else stop)
        self._open = None
        self._window.clear()
        return segment

    def _supports(self, obs: Observation, product_id: str) -> bool:
        """Single-frame vote: the product is the frame's answer. Pooled: within `tie` of the frame's top."""
        if not self.config.pooled:
            return obs.product_id == product_id
        if not obs.ranked:
            return False
        top = obs.ranked[0][1]
        return any(p == product_id and s >= top - self.config.tie for p, s in obs.ranked)

    def _qualified_leader(self) -> str | None:
        n = len(self._window)
        if self.config.pooled:  # the window's mean score per product must clear the stream's threshold
            pooled = _pooled(self._window)
            if not pooled:
                return None
            product = max(pooled, key=pooled.__getitem__)
            if pooled[product] / n < self._window[-1].threshold:
                return None
        else:
            votes = Counter(o.product_id for o in self._window if o.product_id is not None)
            if not votes:
                return None
            product = max(votes, key=lambda p: (votes[p], self._score_sum(p)))
        leads = self._leads(product)
        if leads < 2 or leads < self.config.min_share * n:
            return None
        return product

    def _leads(self, product_id: str) -> int:
        return sum(1 for o in self._window if self._supports(o, product_id))

    def _first_lead(self, product_id: str) -> float:
        return next(o.time_s for o in self._window if self._supports(o, product_id))

    def _score_sum(self, product_id: str) -> float:
        return sum(o.score for o in self._window if o.product_id == product_id)
