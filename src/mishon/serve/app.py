"""The HTTP API and web page (`mishon serve`), on FastAPI.

- POST /v1/recommend  multipart: video (optional), caption, user_id, k -> hashtags with reasons
- POST /v1/posts      JSON: a post with its chosen hashtags, recorded in SQLite
- GET  /v1/health     run, vocabulary, recorded posts
- GET  /              the upload page;  /docs  the OpenAPI documentation

Uploads are bounded (size while streaming, content type, caption length, k), written to a
temporary folder inside the run directory and deleted after use. At most `max_concurrent`
recommendations are computed at once; one taking longer than `timeout_s` answers 504.
"""

from __future__ import annotations

import asyncio
import re
import tempfile
import threading
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

from fastapi import FastAPI, File, Form, HTTPException, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, Field

from mishon.config import ServeSettings
from mishon.data.hashtags import normalize_hashtags
from mishon.serve.service import HashtagService

CHUNK = 1 << 20
USER_ID = re.compile(r"^[\w.@:+-]{1,200}$")
SUFFIXES = {
    "video/mp4": ".mp4",
    "video/quicktime": ".mov",
    "video/webm": ".webm",
    "video/x-matroska": ".mkv",
}


class RecordedPost(BaseModel):
    """A post published with the hashtags its author chose."""

    user_id: str = Field(min_length=1, max_length=200, pattern=USER_ID.pattern)
    hashtags: list[str] = Field(min_length=1, max_length=50)
    caption: str | None = Field(None, max_length=5000)
    post_id: str | None = Field(None, min_length=1, max_length=200, pattern=USER_ID.pattern)


def _check_user(user_id: str | None) -> str | None:
    if user_id is None or user_id == "":
        return None
    if not USER_ID.match(user_id):
        raise HTTPException(422, "user_id: 1 to 200 letters, digits or . _ @ : + -")
    return user_id


async def _save_upload(video: UploadFile, folder: Path, settings: ServeSettings) -> Path:
    media_type = (video.content_type or "").split(";")[0].strip().lower()
    if media_type not in settings.media_types:
        raise HTTPException(
            415,
            f"video: content type {media_type or 'unknown'!r} is not one of "
            f"{', '.join(settings.media_types)}",
        )
    limit = int(settings.max_upload_mb * 2**20)
    if video.size is not None and video.size > limit:
        raise HTTPException(413, f"video: larger than {settings.max_upload_mb:g} MB")
    path = folder / f"upload{SUFFIXES.get(media_type, '.bin')}"  # never the client's file name
    written = 0
    with path.open("wb") as handle:
        while chunk := await video.read(CHUNK):
            written += len(chunk)
            if written > limit:
                raise HTTPException(413, f"video: larger than {settings.max_upload_mb:g} MB")
            handle.write(chunk)
    if written == 0:
        raise HTTPException(422, "video: the file is empty")
    return path


def create_app(service: HashtagService) -> FastAPI:
    """The FastAPI application around a loaded service."""
    settings = service.settings
    app = FastAPI(
        title="MISHON hashtag recommendation",
        version="1",
        description="Hashtags for micro-videos from a trained MISHON run.",
    )
    # A thread semaphore, taken in the worker thread: it bounds the computation whatever event
    # loop the request runs on (an asyncio one is bound to a single loop).
    gate = threading.BoundedSemaphore(settings.max_concurrent)

    def bounded(path: Path | None, caption: str | None, user: str | None, k: int) -> Any:
        with gate:
            return service.recommend(path, caption, user, k)

    uploads = service.run / "uploads"
    uploads.mkdir(exist_ok=True)
    page = resources.files("mishon.serve").joinpath("page.html").read_text("utf-8")

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def index() -> str:
        return page

    @app.get("/v1/health")
    def health() -> dict[str, Any]:
        return service.health()

    @app.post("/v1/recommend")
    async def recommend(
        video: Annotated[UploadFile | None, File(description="the post's video")] = None,
        caption: Annotated[str | None, Form(description="the post's caption")] = None,
        user_id: Annotated[str | None, Form(description="the poster; unknown = new")] = None,
        k: Annotated[int, Form(description="how many hashtags")] = 10,
    ) -> dict[str, Any]:
        if not 1 <= k <= settings.max_k:
            raise HTTPException(422, f"k: must be between 1 and {settings.max_k}")
        if caption is not None and len(caption) > settings.max_caption_chars:
            raise HTTPException(422, f"caption: longer than {settings.max_caption_chars} chars")
        user = _check_user(user_id)
        if video is not None and not video.filename and not video.size:
            video = None  # an empty file field of an HTML form
        if video is None and not (caption and caption.strip()):
            raise HTTPException(422, "give a video, a caption or both")
        with tempfile.TemporaryDirectory(dir=uploads) as folder:
            path = await _save_upload(video, Path(folder), settings) if video else None
            try:
                return await asyncio.wait_for(
                    run_in_threadpool(bounded, path, caption, user, k), settings.timeout_s
                )
            except TimeoutError:
                raise HTTPException(
                    504, f"the recommendation took longer than {settings.timeout_s:g} s"
                ) from None

    @app.post("/v1/posts", status_code=201)
    def record(post: RecordedPost) -> dict[str, Any]:
        try:
            hashtags = normalize_hashtags(post.hashtags)
        except ValueError as exc:
            raise HTTPException(422, f"hashtags: {exc}") from None
        if not hashtags:
            raise HTTPException(422, "hashtags: none is a valid hashtag")
        try:
            post_id = service.record(post.user_id, hashtags, post.caption, post.post_id)
        except ValueError as exc:
            raise HTTPException(409, str(exc)) from None
        return {"post_id": post_id, "user_id": post.user_id, "hashtags": hashtags}

    return app
