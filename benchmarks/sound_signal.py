"""Benchmark: how much a post's sound can tell beyond its user, on a dataset with sounds.

For the labelled test posts of a split, with the training and validation posts known (the
known-past protocol), counts:
- the share of test posts that use their author's own sound ("original sound", `LABEL@USER`);
- the share whose sound another user's known post used;
- of the test posts' hashtag occurrences, the share the same user used in a known post, and
  the share found only in other users' known posts with the same sound (the most a sound can
  add beyond the user's history).

Usage: python benchmarks/sound_signal.py DATASET [--split temporal]
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import numpy as np

from mishon.data.sounds import ORIGINAL_SUFFIX
from mishon.data.split_data import load_split_data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--split", default="temporal")
    args = parser.parse_args()
    data = load_split_data(args.dataset, args.split)
    posts = data.posts
    split = posts["split"].to_numpy()
    test = (split == "test") & (posts["hashtags"].str.len() > 0).to_numpy()
    known = (split == "train") | (split == "valid")
    sounds = [s if isinstance(s, str) else None for s in posts.get("sound", [None] * len(posts))]
    users = posts["user_id"].astype(str).to_numpy()
    tags = posts["hashtags"].to_numpy()
    own: dict[str, set[str]] = defaultdict(set)
    by_sound: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for i in np.flatnonzero(known):
        own[users[i]].update(tags[i])
        if sounds[i] is not None:
            by_sound[sounds[i]][users[i]].update(tags[i])
    original = shared = occurrences = in_own = only_sound = 0
    for i in np.flatnonzero(test):
        sound, user = sounds[i], users[i]
        others = {u: t for u, t in by_sound.get(sound, {}).items() if u != user} if sound else {}
        original += bool(sound and ORIGINAL_SUFFIX in sound)
        shared += bool(others)
        from_others = set().union(*others.values()) if others else set()
        for tag in tags[i]:
            occurrences += 1
            if tag in own[user]:
                in_own += 1
            elif tag in from_others:
                only_sound += 1
    cases = int(test.sum())
    print(
        json.dumps(
            {
                "dataset": str(args.dataset),
                "split": args.split,
                "test_posts": cases,
                "author_own_sound": round(original / cases, 3),
                "sound_used_by_another_user": round(shared / cases, 3),
                "occurrences": occurrences,
                "in_the_users_known_hashtags": round(in_own / occurrences, 3),
                "only_in_other_users_same_sound_posts": round(only_sound / occurrences, 3),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
