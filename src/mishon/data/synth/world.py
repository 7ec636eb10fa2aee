"""The generative story of the synthetic corpus: topics, users, hashtags, posts.

Everything here is sampled from one seeded generator in a fixed order, so a seed fixes the
corpus. The structure each model mechanism can find is documented in docs/synthetic.md:
- topics show in the frames (hue, shape, motion), the sound (tone, pulse, noise colour) and the
  caption words; each modality follows the post's topic only with its `*_fidelity` chance, and
  pairs of topics share a hue (visual) or a tone (acoustic), so no modality alone is enough;
- users have topic preferences and a personal signature hashtag;
- users form groups with a shared habit hashtag (found by user-user Jaccard edges);
- a few popular users (many followers, high engagement) have an influencer hashtag; other users
  of the same main topic copy it, late-joining users twice as often (the cold-start signal);
- each topic has trending hashtags whose use rises and falls around a peak date.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import numpy as np
import pandas as pd

from mishon.config import SynthSettings
from mishon.data.synth.themes import FILLER_WORDS, GENERIC_TAGS, pseudo_word, theme

SHAPES = ("disc", "square", "stripes", "diamond")
NOISE_COLOURS = ("white", "pink", "brown")
TOPIC_TAG_PATTERNS = ("{}", "{}lover", "insta{}", "{}life", "{}gram", "{}daily")
TREND_PATTERNS = ("{}challenge", "summer{}")


@dataclass(frozen=True)
class TopicStyle:
    """How a topic looks and sounds."""

    hue: float
    shape: str
    angle: float
    speed: float
    tone_hz: float
    pulse_hz: float
    noise: str


@dataclass(frozen=True)
class RenderSpec:
    """What one post's clip shows: the styles of the topics its frames and sound follow."""

    index: int
    post_id: str
    visual: TopicStyle
    acoustic: TopicStyle
    has_sound: bool


@dataclass
class World:
    """The sampled corpus: tables to write, ground truth, and a render spec per post."""

    posts: pd.DataFrame
    users: pd.DataFrame
    truth_posts: pd.DataFrame
    truth: dict[str, Any]
    renders: list[RenderSpec] = field(default_factory=list)


def topic_styles(n_topics: int) -> list[TopicStyle]:
    """Styles chosen so that topics t and t^1 share a hue and t, t+ceil(T/2) share a tone."""
    half = math.ceil(n_topics / 2)
    styles = []
    for t in range(n_topics):
        styles.append(
            TopicStyle(
                hue=((t // 2) * 0.618034) % 1.0,
                shape=SHAPES[t % len(SHAPES)],
                angle=2 * math.pi * (t % 3) / 3,
                speed=0.15 + 0.1 * (t % 2),
                tone_hz=220.0 * 2 ** (2 * (t % half) / half),
                pulse_hz=(1.5, 3.0, 6.0)[t % 3],
                noise=NOISE_COLOURS[(t // 2) % 3],
            )
        )
    return styles


def _other_topic(rng: np.random.Generator, topic: int, n_topics: int, fidelity: float) -> int:
    """`topic` with probability `fidelity`, else a uniformly drawn other topic."""
    if rng.random() < fidelity:
        return topic
    return int((topic + rng.integers(1, n_topics)) % n_topics)


@dataclass
class _Topics:
    """Each topic's name, caption words, hashtags and trends (peak day, width in days)."""

    names: list[str]
    words: list[tuple[str, ...]]
    tags: list[list[str]]
    trends: list[list[str]]
    trend_peak: np.ndarray
    trend_width: np.ndarray


@dataclass
class _Users:
    """Who posts: topics, groups, popularity, join time, audience and hashtag habits."""

    ids: list[str]
    main_topic: np.ndarray
    popular: np.ndarray
    is_popular: np.ndarray
    group_of: np.ndarray
    group_topic: np.ndarray
    prefs: np.ndarray
    late: np.ndarray
    join_day: np.ndarray
    followers: np.ndarray
    engagement: np.ndarray
    follows: np.ndarray
    signature: list[str]
    group_tag: list[str]
    influencer_tag: dict[int, str]


def build_world(cfg: SynthSettings) -> World:
    """Sample users, posts and their hashtags; deterministic for `cfg.seed` (the draws come
    in one order: topics' trends, users, post authors and times, then post by post)."""
    rng = np.random.default_rng(cfg.seed)
    topics = _sample_topics(rng, cfg)
    users = _sample_users(rng, cfg, topics)
    U, N = cfg.users, cfg.posts
    # Posts: every user posts once, the rest by activity.
    activity = rng.lognormal(0.0, 0.8, size=U) * np.where(users.is_popular, 3.0, 1.0)
    authors = np.concatenate([np.arange(U), rng.choice(U, size=N - U, p=activity / activity.sum())])
    authors = authors[rng.permutation(N)]
    join = users.join_day[authors]
    days = join + rng.uniform(0.0, 1.0, size=N) * (cfg.days - join)
    time_order = np.argsort(days, kind="stable")
    authors, days = authors[time_order], days[time_order]
    rows: list[dict[str, Any]] = []
    truth_rows: list[dict[str, Any]] = []
    renders: list[RenderSpec] = []
    styles = topic_styles(cfg.topics)
    for i in range(N):
        row, truth_row = _sample_post(rng, cfg, topics, users, i, int(authors[i]), float(days[i]))
        rows.append(row)
        truth_rows.append(truth_row)
        renders.append(
            RenderSpec(
                i,
                row["post_id"],
                styles[truth_row["visual_topic"]],
                styles[truth_row["acoustic_topic"]],
                truth_row["has_sound"],
            )
        )
    posts = pd.DataFrame(rows)
    posts["created_at"] = pd.to_datetime(posts["created_at"], utc=True)
    table = pd.DataFrame({"user_id": users.ids, "followers": users.followers})
    truth = _truth(cfg, topics, users, styles)
    return World(posts, table, pd.DataFrame(truth_rows), truth, renders)


def _sample_topics(rng: np.random.Generator, cfg: SynthSettings) -> _Topics:
    T = cfg.topics
    names = [theme(t)[0] for t in range(T)]
    return _Topics(
        names,
        [theme(t)[1] for t in range(T)],
        [[p.format(n) for p in TOPIC_TAG_PATTERNS] for n in names],
        [[p.format(n) for p in TREND_PATTERNS] for n in names],
        rng.uniform(0.1, 0.9, size=(T, len(TREND_PATTERNS))) * cfg.days,
        rng.uniform(6.0, 14.0, size=(T, len(TREND_PATTERNS))),
    )


def _sample_users(rng: np.random.Generator, cfg: SynthSettings, topics: _Topics) -> _Users:
    """Users: main topic, preferences, groups, popularity, join time, audience."""
    T, U = cfg.topics, cfg.users
    handles = [pseudo_word(u + 7, 2) + pseudo_word(u * 3 + 1, 1) for u in range(U)]
    main_topic = rng.integers(0, T, size=U)
    n_popular = max(1, round(cfg.popular_fraction * U))
    popular = np.sort(rng.choice(U, size=n_popular, replace=False))
    for k, u in enumerate(popular):  # spread influencers over topics
        main_topic[u] = k % T
    is_popular = np.zeros(U, dtype=bool)
    is_popular[popular] = True
    order = rng.permutation(U)
    group_of = np.empty(U, dtype=int)
    n_groups = math.ceil(U / cfg.group_size)
    for g in range(n_groups):
        group_of[order[g * cfg.group_size : (g + 1) * cfg.group_size]] = g
    group_topic = rng.integers(0, T, size=n_groups)
    prefs = np.empty((U, T))
    for u in range(U):
        spread = rng.dirichlet(np.full(T, 0.5))
        prefs[u] = 0.35 * spread + 0.2 * np.eye(T)[group_topic[group_of[u]]]
        prefs[u, main_topic[u]] += 0.45
    regular = np.flatnonzero(~is_popular)
    n_late = round(cfg.late_user_fraction * U)
    late = np.zeros(U, dtype=bool)
    late[rng.choice(regular, size=min(n_late, len(regular)), replace=False)] = True
    join_day = np.where(late, rng.uniform(2 * cfg.days / 3, 0.9 * cfg.days, size=U), 0.0)
    followers = np.where(
        is_popular,
        rng.lognormal(math.log(200_000), 0.5, size=U),
        rng.lognormal(math.log(800), 1.0, size=U),
    ).astype(np.int64)
    engagement = np.where(is_popular, 0.09, 0.025) * rng.lognormal(0.0, 0.25, size=U)
    # A user follows the influencer of their main topic, if that topic has one.
    influencer_of_topic = {int(main_topic[u]): int(u) for u in popular[::-1]}
    follows = np.array(
        [-1 if is_popular[u] else influencer_of_topic.get(int(main_topic[u]), -1) for u in range(U)]
    )
    return _Users(
        ids=[f"u{u:04d}" for u in range(U)],
        main_topic=main_topic,
        popular=popular,
        is_popular=is_popular,
        group_of=group_of,
        group_topic=group_topic,
        prefs=prefs,
        late=late,
        join_day=join_day,
        followers=followers,
        engagement=engagement,
        follows=follows,
        signature=[f"{handles[u]}vlogs" for u in range(U)],
        group_tag=[f"crew{pseudo_word(g + 3, 2)}" for g in range(n_groups)],
        influencer_tag={int(u): f"{topics.names[main_topic[u]]}with{handles[u]}" for u in popular},
    )


def _post_hashtags(
    rng: np.random.Generator, topics: _Topics, users: _Users, u: int, topic: int, day: float
) -> list[str]:
    """A post's hashtags: its topic's, trends at their peak, the user's, group's, influencer's."""
    zipf = 1.0 / np.arange(1, len(TOPIC_TAG_PATTERNS) + 1)
    zipf /= zipf.sum()
    picked = rng.choice(
        len(TOPIC_TAG_PATTERNS), size=1 + rng.binomial(2, 0.4), replace=False, p=zipf
    )
    tags: list[str] = [topics.tags[topic][k] for k in picked]
    for k, tag in enumerate(topics.trends[topic]):
        z = (day - topics.trend_peak[topic, k]) / topics.trend_width[topic, k]
        if rng.random() < 0.7 * math.exp(-0.5 * z * z):
            tags.append(tag)
    if rng.random() < 0.35:
        tags.append(users.signature[u])
    if rng.random() < 0.4:
        tags.append(users.group_tag[users.group_of[u]])
    if users.is_popular[u]:
        if rng.random() < 0.8:
            tags.append(users.influencer_tag[u])
    elif users.follows[u] >= 0 and rng.random() < (0.5 if users.late[u] else 0.2):
        tags.append(users.influencer_tag[int(users.follows[u])])
    for tag in GENERIC_TAGS:
        if rng.random() < 0.08:
            tags.append(tag)
    return tags


def _sample_post(
    rng: np.random.Generator,
    cfg: SynthSettings,
    topics: _Topics,
    users: _Users,
    i: int,
    u: int,
    day: float,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Post `i` of user `u` on `day`: its row of posts.parquet and of the truth table."""
    T = cfg.topics
    topic = int(rng.choice(T, p=users.prefs[u] / users.prefs[u].sum()))
    tags = _post_hashtags(rng, topics, users, u, topic, day)
    if rng.random() < cfg.unlabeled_fraction:
        tags = []
    visual_topic = _other_topic(rng, topic, T, cfg.visual_fidelity)
    acoustic_topic = _other_topic(rng, topic, T, cfg.acoustic_fidelity)
    textual_topic = _other_topic(rng, topic, T, cfg.textual_fidelity)
    caption = None
    if rng.random() >= cfg.no_caption_fraction:
        n_words = int(rng.integers(4, 11))
        own = rng.random(n_words) < 0.5
        caption = " ".join(
            str(rng.choice(topics.words[textual_topic])) if o else str(rng.choice(FILLER_WORDS))
            for o in own
        )
    has_sound = bool(rng.random() >= cfg.no_sound_fraction)
    views = int(users.followers[u] * rng.lognormal(-1.0, 0.7) + rng.lognormal(3.0, 1.0))
    likes = int(views * users.engagement[u] * rng.lognormal(0.0, 0.3))
    post_id = f"p{i:06d}"
    row = {
        "post_id": post_id,
        "user_id": users.ids[u],
        "hashtags": list(dict.fromkeys(tags)),
        "caption": caption,
        "video": f"media/{post_id}.mp4",
        "created_at": cfg.start + timedelta(days=day),
        "likes": likes,
        "comments": int(likes * 0.06 * rng.lognormal(0.0, 0.4)),
        "shares": int(likes * 0.03 * rng.lognormal(0.0, 0.4)),
        "views": views,
    }
    truth = {
        "post_id": post_id,
        "topic": topic,
        "visual_topic": visual_topic,
        "acoustic_topic": acoustic_topic,
        "textual_topic": textual_topic,
        "has_sound": has_sound,
    }
    return row, truth


def _truth(
    cfg: SynthSettings, topics: _Topics, users: _Users, styles: list[TopicStyle]
) -> dict[str, Any]:
    """The generating structure, for analysis (truth/): no stage reads it."""
    return {
        "topics": [
            {
                "topic": t,
                "name": topics.names[t],
                "hashtags": topics.tags[t],
                "trends": topics.trends[t],
                "trend_peak_day": [round(float(d), 2) for d in topics.trend_peak[t]],
                "trend_width_days": [round(float(w), 2) for w in topics.trend_width[t]],
                "style": styles[t].__dict__,
            }
            for t in range(cfg.topics)
        ],
        "users": [
            {
                "user_id": users.ids[u],
                "main_topic": int(users.main_topic[u]),
                "group": int(users.group_of[u]),
                "popular": bool(users.is_popular[u]),
                "late": bool(users.late[u]),
                "join_day": round(float(users.join_day[u]), 2),
                "follows": users.ids[users.follows[u]] if users.follows[u] >= 0 else None,
                "signature": users.signature[u],
            }
            for u in range(cfg.users)
        ],
        "groups": [
            {"group": g, "hashtag": users.group_tag[g], "topic": int(users.group_topic[g])}
            for g in range(len(users.group_tag))
        ],
        "influencers": {users.ids[u]: tag for u, tag in users.influencer_tag.items()},
    }
