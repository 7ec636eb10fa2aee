"""The HTTP API and web page (`mishon serve`), on FastAPI.

- POST /v1/recommend  multipart: video (optional), caption, sound, user_id, k -> hashtags with
                      reasons; or JSON {caption, sound, user_id, k} without a video
- POST /v1/recommend/batch  JSON {posts: [...]}: many captions at once, an answer or error each
- POST /v1/posts      JSON: a post with its chosen hashtags, committed to the record store
- GET  /v1/health     run, vocabulary, recorded posts
- POST /v1/admin/reload  swap in a run directory without downtime (token)
- GET  /healthz, /readyz  liveness and readiness;  /metrics  Prometheus text format
- GET  /              the upload page;  /docs  the OpenAPI documentation

Every request body is bounded in size (refused from Content-Length before it is read, else
while it streams in) and in arrival time (`serve/guards.py`); an upload's container is
recognised from its bytes, written under a name of our own to a temporary folder inside the
service's state folder and deleted after use; captions, hashtags, user ids and k are
bounded. At most `max_concurrent` recommendations are computed at once; one taking longer
than `timeout_s` answers 504. With a token set, recording posts and reloading need it
(`Authorization: Bearer`). A record store that cannot commit answers 503: nothing was recorded.
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

from fastapi import FastAPI, File, Form, Header, HTTPException, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import ValidationError

from mishon.allocator import keep_freed_memory
from mishon.config import ServeSettings
from mishon.data.hashtags import normalize_hashtags
from mishon.errors import MishonError
from mishon.serve.balance import ConnectionBoard, board_path
from mishon.serve.docs_page import render_docs
from mishon.serve.fifo import FifoSemaphore
from mishon.serve.guards import (
    USER_ID_RULE,
    BodyLimits,
    check_token,
    sniff_container,
    valid_user_id,
)
from mishon.serve.observe import RequestLog, ServiceMetrics, log_json_lines
from mishon.serve.protocol import GuardedH11Protocol
from mishon.serve.schemas import (
    MAX_SOUND_CHARS,
    BatchAnswer,
    BatchItem,
    BatchRequest,
    RecommendAnswer,
    RecommendRequest,
    RecordAnswer,
    RecordedPost,
    ReloadAnswer,
    ReloadRequest,
)
from mishon.serve.service import HashtagService, keep_temporary_files_in, state_dir_of
from mishon.serve.store import DuplicatePost, StoreUnavailable

WORKER_SPEC = "MISHON_SERVE_WORKER"  # what `mishon serve --workers N` hands its workers
CHUNK = 1 << 20
FORM_OVERHEAD = 1 << 20  # what a recommendation's form fields may add to the video's bytes


def _validation_detail(error: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in error.errors()
    )


def _given(text: str | None) -> bool:
    return bool(text and text.strip())


def _check_user(user_id: str | None) -> str | None:
    if user_id is None or user_id == "":
        return None
    if not valid_user_id(user_id):
        raise HTTPException(422, USER_ID_RULE)
    return user_id


async def _save_upload(video: UploadFile, folder: Path, settings: ServeSettings) -> Path:
    """The upload written to `folder` under a name of our own, its container recognised from
    its first bytes (the declared content type is not trusted)."""
    limit = int(settings.max_upload_mb * 2**20)
    if video.size is not None and video.size > limit:
        raise HTTPException(413, f"video: larger than {settings.max_upload_mb:g} MB")
    head = await video.read(64)
    if not head:
        raise HTTPException(422, "video: the file is empty")
    container = sniff_container(head)
    if container is None or container not in settings.containers:
        raise HTTPException(
            415,
            f"video: not a video container this service reads ({', '.join(settings.containers)})",
        )
    path = folder / f"upload.{container}"  # never the client's file name
    written = len(head)
    with path.open("wb") as handle:
        handle.write(head)
        while chunk := await video.read(CHUNK):
            written += len(chunk)
            if written > limit:
                raise HTTPException(413, f"video: larger than {settings.max_upload_mb:g} MB")
            handle.write(chunk)
    return path


# the routes are functions nested in the factory: their branches count towards its complexity
def create_app(service: HashtagService, owns_service: bool = False) -> FastAPI:  # noqa: C901
    """The FastAPI application around a loaded service (closed with the app if it
    `owns_service`)."""
    settings = service.settings

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        if owns_service:
            service.close()

    app = FastAPI(
        lifespan=lifespan,
        title="MISHON hashtag recommendation",
        version="1",
        description="Hashtags for micro-videos from a trained MISHON run.",
        docs_url=None,  # FastAPI's pages load scripts from a CDN; /docs below needs none
        redoc_url=None,
    )
    metrics = ServiceMetrics(service)
    upload_limit = int(settings.max_upload_mb * 2**20) + FORM_OVERHEAD
    json_limit = int(settings.max_json_kb * 2**10)
    app.add_middleware(
        BodyLimits,
        limit_for=lambda path: upload_limit if path == "/v1/recommend" else json_limit,
        timeout_s=settings.body_timeout_s,
    )
    app.add_middleware(RequestLog, metrics=metrics)  # outermost: sees every answer
    token = settings.token.get_secret_value() if settings.token is not None else None
    # A thread semaphore, taken in the worker thread: it bounds the computation whatever event
    # loop the request runs on (an asyncio one is bound to a single loop); first come, first
    # served, so no request waits more than its turn.
    gate = FifoSemaphore(settings.max_concurrent)

    def bounded(
        path: Path | None, caption: str | None, user: str | None, k: int, sound: str | None
    ) -> Any:
        with gate:
            answer = service.recommend(path, caption, user, k, sound)
        metrics.observe_stages(answer["timings_s"])
        return answer

    uploads = service.state_dir / "uploads"
    uploads.mkdir(parents=True, exist_ok=True)
    page = resources.files("mishon.serve").joinpath("page.html").read_text("utf-8")

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def index() -> str:
        return page

    @app.get("/docs", response_class=HTMLResponse, include_in_schema=False)
    def docs() -> str:
        return render_docs(app.openapi())

    @app.exception_handler(StoreUnavailable)
    def store_unavailable(request: Any, exc: StoreUnavailable) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=503)

    @app.get("/v1/health")
    def health() -> dict[str, Any]:
        return service.health()

    @app.get("/healthz")
    def alive() -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "alive"}

    @app.get("/readyz")
    def ready() -> JSONResponse:
        """Readiness: a model is loaded and the record store answers (else 503)."""
        try:
            recorded = service.store.count()
        except StoreUnavailable as exc:
            return JSONResponse({"status": "not ready", "detail": str(exc)}, status_code=503)
        return JSONResponse(
            {"status": "ready", "version": service.model.version, "recorded_posts": recorded}
        )

    @app.get("/metrics", response_class=PlainTextResponse)
    def prometheus() -> PlainTextResponse:
        """Counters, histograms and state in the Prometheus text format."""
        return PlainTextResponse(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.post("/v1/admin/reload", response_model=ReloadAnswer)
    def reload(
        body: ReloadRequest | None = None,
        authorization: Annotated[str | None, Header()] = None,
    ) -> dict[str, Any]:
        """Swap in a run directory while requests go on (they finish on the old model)."""
        check_token(token, authorization, "reloading")
        run = None
        if body is not None and body.run is not None:
            if body.run in (".", ".."):
                raise HTTPException(422, "run: a directory name, not . or ..")
            run = service.run.parent / body.run
        try:
            return service.reload(run)
        except MishonError as exc:
            detail = f"reload refused, still serving {service.run.name}: {exc}"
            raise HTTPException(422, detail) from None

    def check_request(
        caption: str | None, user_id: str | None, k: int, sound: str | None = None
    ) -> str | None:
        """The user id, once the caption, sound, user and k are checked (422 otherwise)."""
        if not 1 <= k <= settings.max_k:
            raise HTTPException(422, f"k: must be between 1 and {settings.max_k}")
        check_texts(caption, sound)
        return _check_user(user_id)

    def check_texts(caption: str | None, sound: str | None) -> None:
        if caption is not None and len(caption) > settings.max_caption_chars:
            raise HTTPException(422, f"caption: longer than {settings.max_caption_chars} chars")
        if sound is not None and len(sound) > MAX_SOUND_CHARS:
            raise HTTPException(422, f"sound: longer than {MAX_SOUND_CHARS} chars")

    async def answer(
        path: Path | None, caption: str | None, user: str | None, k: int, sound: str | None
    ) -> Any:
        try:
            return await asyncio.wait_for(
                run_in_threadpool(bounded, path, caption, user, k, sound), settings.timeout_s
            )
        except TimeoutError:
            raise HTTPException(
                504, f"the recommendation took longer than {settings.timeout_s:g} s"
            ) from None

    json_body = {"application/json": {"schema": {"$ref": "#/components/schemas/RecommendRequest"}}}

    @app.post(
        "/v1/recommend",
        response_model=RecommendAnswer,
        openapi_extra={"requestBody": {"content": json_body}},
    )
    async def recommend(
        request: Request,
        video: Annotated[UploadFile | None, File(description="the post's video")] = None,
        caption: Annotated[str | None, Form(description="the post's caption")] = None,
        sound: Annotated[str | None, Form(description="the sound's title or id")] = None,
        user_id: Annotated[str | None, Form(description="the poster; unknown = new")] = None,
        k: Annotated[int, Form(description="how many hashtags")] = 10,
    ) -> Any:
        """Top-k hashtags for a new post (a video, a caption, a sound, or several) with their
        reasons: a multipart form, or a JSON body (`RecommendRequest`) without a video."""
        if request.headers.get("content-type", "").startswith("application/json"):
            try:
                post = RecommendRequest.model_validate_json(await request.body())
            except ValidationError as exc:
                raise HTTPException(422, _validation_detail(exc)) from None
            video, caption, sound, user_id, k = None, post.caption, post.sound, post.user_id, post.k
        user = check_request(caption, user_id, k, sound)
        if video is not None and not video.filename and not video.size:
            video = None  # an empty file field of an HTML form
        if video is None and not _given(caption) and not _given(sound):
            raise HTTPException(422, "give a video, a caption or a sound")
        with tempfile.TemporaryDirectory(dir=uploads) as folder:
            path = await _save_upload(video, Path(folder), settings) if video else None
            try:
                return await answer(path, caption, user, k, sound)
            except MishonError as exc:  # e.g. a video that cannot be decoded
                raise HTTPException(422, str(exc).replace(folder + "/", "")) from None

    @app.post("/v1/recommend/batch", response_model=BatchAnswer)
    async def recommend_batch(batch: BatchRequest) -> BatchAnswer:
        """Top-k hashtags for each of several captions (at most `max_batch`); a post that
        cannot be answered gets its error, the others their answers."""
        if len(batch.posts) > settings.max_batch:
            raise HTTPException(422, f"posts: more than {settings.max_batch}")
        results = []
        for post in batch.posts:
            try:
                user = check_request(post.caption, post.user_id, post.k, post.sound)
                if not _given(post.caption) and not _given(post.sound):
                    raise HTTPException(422, "give a caption or a sound")
                answered = await answer(None, post.caption, user, post.k, post.sound)
                results.append(BatchItem(answer=answered))
            except (HTTPException, MishonError) as exc:
                results.append(BatchItem(error=str(getattr(exc, "detail", exc))))
        return BatchAnswer(results=results)

    @app.post("/v1/posts", status_code=201, response_model=RecordAnswer)
    def record(
        post: RecordedPost, authorization: Annotated[str | None, Header()] = None
    ) -> dict[str, Any]:
        """Record a published post with its hashtags; it is known to every later ranking."""
        check_token(token, authorization)
        if len(post.hashtags) > settings.max_hashtags:
            raise HTTPException(422, f"hashtags: more than {settings.max_hashtags}")
        long = [t for t in post.hashtags if len(t) > settings.max_hashtag_chars]
        if long:
            raise HTTPException(
                422,
                f"hashtags: longer than {settings.max_hashtag_chars} characters: {long[0][:40]}...",
            )
        check_texts(post.caption, post.sound)
        try:
            hashtags = normalize_hashtags(post.hashtags)
        except ValueError as exc:
            raise HTTPException(422, f"hashtags: {exc}") from None
        if not hashtags:
            raise HTTPException(422, "hashtags: none is a valid hashtag")
        try:
            post_id = service.record(post.user_id, hashtags, post.caption, post.post_id, post.sound)
        except DuplicatePost as exc:
            raise HTTPException(409, str(exc)) from None
        return {"post_id": post_id, "user_id": post.user_id, "hashtags": hashtags}

    metrics.endpoints = frozenset(getattr(route, "path", "") for route in app.routes)  # bounded
    return app


def worker_spec(run: Path, dataset: Path | None, settings: ServeSettings) -> str:
    """What one worker process needs to load the service, as JSON (secrets included: it
    travels only in the environment of this host's own worker processes)."""
    values = settings.model_dump(mode="json")
    for secret in ("token", "db"):
        value = getattr(settings, secret)
        values[secret] = value.get_secret_value() if value is not None else None
    return json.dumps(
        {"run": str(run), "dataset": str(dataset) if dataset else None, "settings": values}
    )


def prepare_serving_process(run: Path, settings: ServeSettings, worker: bool = False) -> None:
    """What a process that serves sets up before it loads the run (`mishon serve`, and each
    `--workers` process, which is spawned and inherits none of it): JSON log lines, freed
    memory kept for reuse, torch threads (numpy's BLAS too), the connection guards' limits
    (and, for a `worker`, its slot on the workers' connection board), temporary files in the
    state folder."""
    import torch
    from threadpoolctl import threadpool_limits

    log_json_lines()
    keep_freed_memory()  # the extractors' large tensors without page faults (allocator.py)
    torch.set_num_threads(settings.torch_threads)
    threadpool_limits(settings.torch_threads, user_api="blas")
    state_dir = state_dir_of(run, settings)
    keep_temporary_files_in(state_dir)  # makes the state folder the board lives in
    board = ConnectionBoard(board_path(state_dir, settings.port)) if worker else None
    GuardedH11Protocol.configure(
        settings.header_timeout_s, settings.max_connections_per_client, board
    )


def worker_app() -> FastAPI:
    """The application of one `mishon serve --workers N` process (a uvicorn factory)."""
    spec = json.loads(os.environ[WORKER_SPEC])
    settings = ServeSettings.model_validate(spec["settings"])
    run = Path(spec["run"])
    prepare_serving_process(run, settings, worker=True)
    dataset = Path(spec["dataset"]) if spec["dataset"] else None
    return create_app(HashtagService(run, settings, dataset), owns_service=True)
