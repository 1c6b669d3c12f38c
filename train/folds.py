"""The speaker-independent evaluation protocol: EmoBox's 6 RAVDESS actor folds."""

from __future__ import annotations

PROTOCOL_NAME = "ravdess-emobox-6fold-speaker-independent"

# Held-out actors per fold, exactly as EmoBox (Ma et al., Interspeech 2024) splits RAVDESS.
TEST_ACTORS: tuple[tuple[int, ...], ...] = (
    (1, 11, 20, 21),
    (4, 10, 12, 14),
    (8, 9, 19, 23),
    (3, 5, 7, 24),
    (2, 15, 16, 18),
    (6, 13, 17, 22),
)


def fold_of_actor(actor: int) -> int:
    """Index (0-5) of the fold in which `actor` is held out."""
    for index, actors in enumerate(TEST_ACTORS):
        if actor in actors:
            return index
    raise ValueError(f"actor {actor} is in no fold (RAVDESS actors are 1-24)")
