"""The recommendation service without HTTP: a loaded run, its featurizer and the known posts.

A post is ranked as MISHON live ranks it (`recommenders/live.py`, the ranker `mishon evaluate`
measures, loaded by `recommend/served.py`): the inductive path gives the model's probabilities
and the post's place in the model's space; the evidence of the known posts (every labelled post
of the dataset, then every post recorded through any replica) scores every hashtag they carry,
so a hashtag recorded a moment ago for one user is recommendable to similar posts of everybody.
The weights are those MISHON live selected on the validation posts under the stream protocol
(`mishon evaluate RUN --protocol stream`), else the defaults.

Recorded posts live in a record store (`serve/store`: SQLite in the state folder by default,
or a PostgreSQL shared by replicas), kept with their units, so every replica places every
recorded post without running extractors. A follower thread takes in what other replicas
recorded every `follow_s`. A record that cannot be read back is reported and set aside; the
others load. `reload` swaps in a run directory while requests go on: a request finishes on
the model it started with, and the new model takes in every recorded post before it serves.
Nothing is written into a run directory: the service's own files go to its state folder.
"""

from __future__ import annotations

import atexit
import logging
import os
import socket
import sqlite3
import tempfile
import threading
import time
import weakref
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mishon.config import ServeSettings
from mishon.errors import MishonError
from mishon.recommend.featurize import PostFeaturizer
from mishon.recommend.served import ServedRun, load_served
from mishon.recommenders.inductive import NewPost
from mishon.recommenders.live import LiveMishon
from mishon.serve.fifo import FifoSemaphore
from mishon.serve.store import (
    DamagedRecord,
    RecordStore,
    StoredPost,
    StoreUnavailable,
    Units,
    open_store,
)
from mishon.serve.store.base import assemble

LEGACY_RECORDS = "service.sqlite"  # where the service kept recorded posts before the store
FOLLOW_BATCH = 1000
log = logging.getLogger("mishon.serve")


def state_dir_of(run: Path, settings: ServeSettings) -> Path:
    """The service's own folder: `settings.state_dir`, else serve-state/ beside the run."""
    return settings.state_dir or run.resolve().parent / "serve-state"


def keep_temporary_files_in(state_dir: Path) -> Path:
    """Make this process's temporary files (an upload over 1 MB is spooled to one while its
    request is parsed) go to `state_dir/tmp` rather than the system's folder; for a process
    that only serves (`mishon serve`, each `--workers` process)."""
    folder = state_dir / "tmp"
    folder.mkdir(parents=True, exist_ok=True)
    tempfile.tempdir = str(folder)
    return folder


def store_url_of(run: Path, settings: ServeSettings) -> str:
    """The record store's URL: `settings.db`, else SQLite in the state folder."""
    if settings.db is not None:
        return settings.db.get_secret_value()
    return f"sqlite:///{state_dir_of(run, settings) / 'records.sqlite'}"


@dataclass
class LoadedModel:
    """One run ready to rank, and how far into the record store it has read."""

    served: ServedRun
    lock: threading.Lock = field(default_factory=threading.Lock)  # the ranker's state
    applied: int = 0  # every record with seq <= applied is in the ranker (or set aside)
    ahead: set[int] = field(default_factory=set)  # recorded here before `applied` got there
    loaded_at: float = field(default_factory=time.time)

    @property
    def version(self) -> str:
        """The run's name and fingerprint (its lineage and best weights)."""
        return f"{self.served.path.name}@{self.served.run.fingerprint}"


class HashtagService:
    """Loads `run` once; `recommend`, `record` and `reload` are safe to call from several
    threads. `store`: an open record store, else the one `settings` name (`db`, else SQLite
    in the state folder). `follow`: start the thread that takes in other replicas' posts."""

    def __init__(
        self,
        run: Path,
        settings: ServeSettings,
        dataset: Path | None = None,
        served: ServedRun | None = None,
        store: RecordStore | None = None,
        follow: bool = True,
    ) -> None:
        self.settings = settings
        self.state_dir = state_dir_of(run, settings)
        try:
            self.state_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise MishonError(
                f"cannot create the service's state folder {self.state_dir} ({exc.strerror}): "
                "pass --state-dir (or MISHON_STATE_DIR) to a folder this process may write"
            ) from None
        self.store = store or open_store(store_url_of(run, settings))
        self.damaged: dict[int, DamagedRecord] = {}
        self.reloads = 0
        self._dataset = dataset
        self._extracting = FifoSemaphore(settings.extract_workers)
        self._reloading = threading.Lock()
        self._stop = threading.Event()
        self.last_followed = 0.0  # when the store last answered the follower
        import_legacy_records(run / LEGACY_RECORDS, self.store)
        self.model = self._ready(served or self._load(run, dataset))
        self._follower: threading.Thread | None = None
        self._closed = False
        if follow:
            self._follower = threading.Thread(target=self._follow, name="follower", daemon=True)
            self._follower.start()
            # a follower still inside torch when the interpreter ends aborts the process
            atexit.register(_close_at_exit, weakref.ref(self))

    # ----------------------------------------------------------------- the model

    @property
    def run(self) -> Path:
        return self.model.served.path

    @property
    def served(self) -> ServedRun:
        return self.model.served

    @property
    def live(self) -> LiveMishon:
        return self.model.served.ranker

    @property
    def featurizer(self) -> PostFeaturizer:
        return self.model.served.featurizer

    @property
    def weights_source(self) -> str:
        return self.model.served.weights_source

    def _load(self, run: Path, dataset: Path | None) -> ServedRun:
        current = getattr(self, "model", None)
        served = load_served(
            run, dataset, self.settings.device, self.settings.evidence,
            keep_in=self.state_dir / "cache",
        )  # fmt: skip
        if current is not None:  # keep the extractors already loaded where they are the same
            old = current.served
            if (
                old.run.data.dataset == served.run.data.dataset
                and old.run.network.modalities == served.run.network.modalities
            ):
                served.featurizer = old.featurizer
        served.ranker.inductive()  # built now, not by the first request
        return served

    def _ready(self, served: ServedRun) -> LoadedModel:
        model = LoadedModel(served)
        self.catch_up(model)
        return model

    def reload(self, run: Path | None = None) -> dict[str, Any]:
        """Swap in `run` (else the current run directory, read again): loaded and brought up
        to date with the record store beside the current model, then swapped in; requests
        in flight finish on the old one. One reload at a time."""
        with self._reloading:
            started = time.perf_counter()
            target = run or self.run
            dataset = self._dataset if target == self.run else None
            old = self.model
            new = self._ready(self._load(target, dataset))
            self.model = new
            self.catch_up(new)  # what was recorded while it loaded
            self.reloads += 1
            seconds = time.perf_counter() - started
            log.info(
                "reloaded %s -> %s in %.1f s", old.version, new.version, seconds,
                extra={"event": "reload", "seconds": round(seconds, 3)},
            )  # fmt: skip
            return {"run": target.name, "version": new.version, "seconds": round(seconds, 3)}

    # ----------------------------------------------------------------- the store

    def catch_up(self, model: LoadedModel | None = None) -> int:
        """Take into `model` (the current one) every record committed after what it has;
        returns how many were new to it. A damaged record is reported and set aside."""
        model = model or self.model
        taken = 0
        while batch := self.store.since(model.applied, FOLLOW_BATCH):
            for record in batch:
                units = self._stored_units(model, record) if isinstance(record, StoredPost) else {}
                with model.lock:
                    if record.seq <= model.applied:
                        continue  # another thread took it in meanwhile
                    if isinstance(record, StoredPost) and record.seq not in model.ahead:
                        record = self._take_in(model, record, units)
                        taken += isinstance(record, StoredPost)
                    if isinstance(record, DamagedRecord):
                        if record.seq not in self.damaged:
                            log.warning("%s: set aside", record, extra={"event": "damaged"})
                        self.damaged[record.seq] = record
                    model.ahead.discard(record.seq)
                    model.applied = record.seq
            if len(batch) < FOLLOW_BATCH:
                break
        return taken

    @staticmethod
    def _take_in(
        model: LoadedModel, record: StoredPost, units: Units
    ) -> StoredPost | DamagedRecord:
        """`record` known to `model`'s ranker; a record its network cannot place (units of
        another shape than the run's extractors give) is returned as damaged, not raised."""
        expected = model.served.run.inputs.modalities
        units = {m: u for m, u in units.items() if m in expected}  # another run's modality
        for modality, (values, _) in units.items():
            shape = tuple(expected[modality].units.shape[1:])
            if shape != values.shape:
                return DamagedRecord(
                    record.seq, record.post_id, "units",
                    f"{modality} units of shape {values.shape}; this run takes {shape}",
                )  # fmt: skip
        model.served.ranker.add(NewPost(units, record.user_id, record.sound), record.hashtags)
        return record

    def _stored_units(self, model: LoadedModel, record: StoredPost) -> Units:
        if record.units or not (record.caption and record.caption.strip()):
            return record.units
        return self._units(record.caption, model)  # kept before units were: extracted again

    def _follow(self) -> None:
        while not self._stop.wait(self.settings.follow_s):
            try:
                self.catch_up()
                self.last_followed = time.time()
            except StoreUnavailable as exc:
                log.warning("follower: %s", exc, extra={"event": "store_unavailable"})
            except Exception:  # the follower must outlive any one bad moment
                log.exception("follower failed; trying again", extra={"event": "follower"})

    def close(self) -> None:
        """Stop following the store and close it (again: nothing)."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        if self._follower is not None:
            self._follower.join(timeout=10)
        self.store.close()

    # ----------------------------------------------------------------- requests

    def _units(
        self,
        caption: str | None,
        model: LoadedModel | None = None,
        sound: str | None = None,
        user_id: str | None = None,
    ) -> Units:
        if not any(text and text.strip() for text in (caption, sound)):
            return {}
        featurizer = (model or self.model).served.featurizer
        with self._extracting:
            return featurizer.featurize(None, caption, sound, user_id)[0]

    def health(self) -> dict[str, Any]:
        model = self.model
        live = model.served.ranker
        return {
            "status": "ok",
            "replica": f"{socket.gethostname()}:{os.getpid()}",  # which process answered
            "run": model.served.path.name,
            "version": model.version,
            "modalities": live.network.modalities,
            "vocabulary": len(live.model_.tags_),
            "graph_posts": live.inputs.num_posts,
            "known_posts": int(live.known_.known.sum()),
            "recorded_posts": self.store.count(),
            "store": self.store.url,
            "damaged_records": [str(d) for d in self.damaged.values()][:20],
            "weights": asdict(live.weights),
            "weights_source": model.served.weights_source,
            "second_stage": "search" if live.ranker is None else "learned",
            "reloads": self.reloads,
        }

    def recommend(
        self,
        video: Path | None,
        caption: str | None,
        user_id: str | None,
        k: int,
        sound: str | None = None,
    ) -> dict[str, Any]:
        """Top-k hashtags with scores, evidence, reasons, neighbours, notes and stage timings.
        Extraction waits only for other extractions (`extract_workers` at once); ranking only
        for the ranker's state."""
        started = time.perf_counter()
        model = self.model  # this request finishes on the model it started with
        with self._extracting:
            post, timings, notes = model.served.featurizer.new_post(video, caption, sound, user_id)
        clock = time.perf_counter()
        with model.lock:
            result = model.served.ranker.rank_new(post, k)
        timings["graph_model_and_evidence_s"] = time.perf_counter() - clock
        timings["total_s"] = time.perf_counter() - started
        if video is not None:  # no server path in an answer
            notes = [note.replace(f"{video.parent}/", "") for note in notes]
        return {
            **result.as_dict(),
            "modalities": list(post.units),
            "notes": notes,
            "timings_s": {name: round(value, 4) for name, value in timings.items()},
        }

    def record(
        self,
        user_id: str,
        hashtags: list[str],
        caption: str | None,
        post_id: str | None,
        sound: str | None = None,
    ) -> str:
        """Record a post with its caption's units: committed to the store first (nothing is
        acknowledged before), then known at once here; other replicas take it in from the
        store. DuplicatePost for a known post_id, StoreUnavailable when not committed."""
        units = self._units(caption, sound=sound, user_id=user_id)
        identity = self.model.served.featurizer.sound_identity(sound, user_id)
        stored = self.store.add(user_id, hashtags, caption, post_id, units or None, identity)
        model = self.model
        with model.lock:
            if stored.seq > model.applied and stored.seq not in model.ahead:
                model.served.ranker.add(NewPost(units, user_id, identity), hashtags)
                model.ahead.add(stored.seq)
        return stored.post_id


def _close_at_exit(service: weakref.ref[HashtagService]) -> None:
    alive = service()
    if alive is not None:
        alive.close()


def import_legacy_records(path: Path, store: RecordStore) -> int:
    """Copy the posts a service recorded into `RUN/service.sqlite` (before the record store)
    into an empty `store`, in their order; the run directory is only read. Returns how many."""
    if not path.is_file() or store.count():
        return 0
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            rows = db.execute(
                "SELECT rowid, post_id, user_id, caption, hashtags, created_at, NULL FROM posts "
                "ORDER BY created_at, rowid"
            ).fetchall()
            unit_rows = db.execute("SELECT post_id, modality, units, mask FROM units").fetchall()
        finally:
            db.close()
    except sqlite3.DatabaseError as exc:
        raise MishonError(
            f"{path}: the posts recorded before the record store cannot be read ({exc}); move "
            "the file out of the run directory to start without them"
        ) from None
    copied = 0
    for record in assemble(rows, unit_rows):
        if isinstance(record, DamagedRecord):
            log.warning("%s in %s: not copied", record, path, extra={"event": "damaged"})
            continue
        store.add(record.user_id, record.hashtags, record.caption, record.post_id, record.units)
        copied += 1
    log.info("copied %d recorded posts from %s into %s", copied, path, store.url)
    return copied
