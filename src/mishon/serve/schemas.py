"""The HTTP API's request and answer bodies, typed so the OpenAPI schema describes them
(client generators get these classes, not `object`)."""

from __future__ import annotations

from pydantic import BaseModel, Field, field_validator

from mishon.serve.guards import USER_ID_RULE, valid_user_id

IDENTIFIER = "1 to 200 letters, digits or . _ @ : + -"
MAX_SOUND_CHARS = 500  # a sound's title or id


def _identifier(value: str | None) -> str | None:
    if value is not None and not valid_user_id(value):
        raise ValueError(IDENTIFIER)
    return value


class RankedHashtag(BaseModel):
    """One recommended hashtag."""

    hashtag: str
    score: float = Field(description="MISHON live's weighted evidence; higher is better")
    reasons: list[str] = Field(description="why, strongest evidence first")
    evidence: dict[str, float] = Field(
        default_factory=dict, description="the evidence values behind the score, by name"
    )


class NeighbourOut(BaseModel):
    """A graph post similar to the new post, or a popular user linked to a new user."""

    kind: str = Field(description="post or user")
    id: str
    similarity: float
    modality: str | None = None
    hashtags: list[str] = Field(default_factory=list)


class RecommendAnswer(BaseModel):
    """Top-k hashtags for one post."""

    hashtags: list[RankedHashtag]
    user_known: bool = Field(description="whether the user is in the trained graph")
    neighbours: list[NeighbourOut]
    modalities: list[str] = Field(description="the modalities the post gave features for")
    notes: list[str] = Field(description="inputs left out and why")
    timings_s: dict[str, float] = Field(description="seconds per stage")


class RecommendRequest(BaseModel):
    """A post to recommend for, as JSON: a caption, a sound or both (a video needs a multipart
    form)."""

    caption: str | None = Field(None, description="the post's caption")
    sound: str | None = Field(None, description="the title or id of the sound the post uses")
    user_id: str | None = Field(None, description="the poster; unknown or none: a new user")
    k: int = Field(10, description="how many hashtags")

    @field_validator("user_id")
    @classmethod
    def _user(cls, value: str | None) -> str | None:
        return _identifier(value or None)


class BatchRequest(BaseModel):
    """Several posts at once (each as `RecommendRequest`)."""

    posts: list[RecommendRequest] = Field(min_length=1)


class BatchItem(BaseModel):
    """One post's answer, or why it has none (the other posts are answered all the same)."""

    answer: RecommendAnswer | None = None
    error: str | None = None


class BatchAnswer(BaseModel):
    """The answers, in the order of the posts."""

    results: list[BatchItem]


class RecordedPost(BaseModel):
    """A post published with the hashtags its author chose."""

    user_id: str = Field(description=USER_ID_RULE)
    hashtags: list[str] = Field(min_length=1)
    caption: str | None = None
    sound: str | None = Field(None, description="the title or id of the sound the post uses")
    post_id: str | None = Field(None, description=USER_ID_RULE.replace("user_id", "post_id"))

    @field_validator("user_id", "post_id")
    @classmethod
    def _ids(cls, value: str | None) -> str | None:
        return _identifier(value)


class RecordAnswer(BaseModel):
    """The recorded post, committed to the record store."""

    post_id: str
    user_id: str
    hashtags: list[str] = Field(description="as stored: normalised")


class ReloadRequest(BaseModel):
    """Which run directory to serve next."""

    run: str | None = Field(
        None,
        description="a run directory beside the one served now, by its name (no path); "
        "none: the current run directory, read again",
        pattern=r"^[\w.@+-]{1,200}$",
    )


class ReloadAnswer(BaseModel):
    """The run now served."""

    run: str
    version: str = Field(description="the run's name and fingerprint")
    seconds: float = Field(description="how long loading it took")
