"""Names and words for synthetic topics: readable themes, then generated ones past the list."""

from __future__ import annotations

THEMES: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "food",
        (
            "recipe",
            "delicious",
            "kitchen",
            "spicy",
            "pasta",
            "breakfast",
            "chef",
            "homemade",
            "taste",
            "dinner",
        ),
    ),
    (
        "travel",
        (
            "beach",
            "flight",
            "island",
            "passport",
            "hotel",
            "mountains",
            "roadtrip",
            "sunset",
            "explore",
            "backpack",
        ),
    ),
    (
        "fitness",
        (
            "workout",
            "gym",
            "squats",
            "cardio",
            "protein",
            "running",
            "stretch",
            "muscles",
            "sweat",
            "training",
        ),
    ),
    (
        "music",
        (
            "guitar",
            "song",
            "beat",
            "concert",
            "piano",
            "lyrics",
            "melody",
            "drums",
            "cover",
            "vocals",
        ),
    ),
    (
        "pets",
        (
            "puppy",
            "kitten",
            "paws",
            "fluffy",
            "walkies",
            "treats",
            "vet",
            "cuddles",
            "bark",
            "whiskers",
        ),
    ),
    (
        "fashion",
        (
            "outfit",
            "dress",
            "sneakers",
            "style",
            "thrift",
            "jacket",
            "denim",
            "runway",
            "accessories",
            "lookbook",
        ),
    ),
    (
        "gaming",
        (
            "console",
            "level",
            "boss",
            "controller",
            "speedrun",
            "quest",
            "stream",
            "pixel",
            "multiplayer",
            "loot",
        ),
    ),
    (
        "nature",
        (
            "forest",
            "river",
            "wildflowers",
            "hiking",
            "birds",
            "waterfall",
            "moss",
            "trail",
            "meadow",
            "leaves",
        ),
    ),
    (
        "comedy",
        (
            "prank",
            "joke",
            "skit",
            "funny",
            "laugh",
            "parody",
            "meme",
            "awkward",
            "bloopers",
            "standup",
        ),
    ),
    (
        "dance",
        (
            "choreo",
            "moves",
            "routine",
            "hiphop",
            "ballet",
            "spin",
            "groove",
            "salsa",
            "freestyle",
            "rehearsal",
        ),
    ),
    (
        "tech",
        (
            "gadget",
            "unboxing",
            "laptop",
            "code",
            "review",
            "phone",
            "setup",
            "keyboard",
            "robot",
            "battery",
        ),
    ),
    (
        "art",
        (
            "painting",
            "sketch",
            "canvas",
            "watercolor",
            "brush",
            "portrait",
            "ink",
            "gallery",
            "doodle",
            "sculpture",
        ),
    ),
)

FILLER_WORDS: tuple[str, ...] = (
    "today",
    "my",
    "new",
    "so",
    "love",
    "check",
    "this",
    "with",
    "the",
    "best",
    "day",
    "you",
    "again",
    "finally",
    "week",
    "little",
    "first",
    "time",
    "look",
    "what",
    "just",
    "we",
    "our",
    "really",
    "vibes",
    "moment",
    "here",
    "more",
    "quick",
    "guess",
)

GENERIC_TAGS: tuple[str, ...] = ("fyp", "viral", "foryou", "trending")

_SYLLABLES = (
    "ka",
    "lo",
    "mi",
    "ra",
    "te",
    "vu",
    "zen",
    "po",
    "li",
    "da",
    "ne",
    "so",
    "ri",
    "fa",
    "go",
    "bel",
)


def pseudo_word(index: int, length: int = 3) -> str:
    """A pronounceable made-up word, distinct for distinct (index, length)."""
    parts = []
    value = index
    for _ in range(length):
        parts.append(_SYLLABLES[value % len(_SYLLABLES)])
        value //= len(_SYLLABLES)
    return "".join(parts)


def theme(topic: int) -> tuple[str, tuple[str, ...]]:
    """Name and caption words of a topic; topics past the list get generated ones."""
    if topic < len(THEMES):
        return THEMES[topic]
    name = f"topic{topic}"
    return name, tuple(pseudo_word(topic * 16 + k, 3) for k in range(10))
