"""The node's durable index: a SQLite file in WAL mode.

Tables
------
instances  every acknowledged instance (path, hash, study) — written just after Success (dicom_node.indexer)
studies    per study: when the last instance arrived, processing state, run counter
results    every SR / key image written to the archive, with the run that made it
outbox     one row per (result, destination): attempts, next attempt time, state, last error
audit      who did what and when; never patient names

Every method opens its own short transaction; connections are per thread.
"""

from __future__ import annotations

import enum
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

__all__ = ["NodeIndex", "OutboxItem", "OutboxState", "ReceivedInstance", "ResultRow", "StoredInstance", "StudyState", "StudyRow"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS instances (
    sop_instance_uid TEXT PRIMARY KEY,
    sop_class_uid TEXT NOT NULL,
    study_uid TEXT NOT NULL,
    series_uid TEXT NOT NULL,
    path TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    calling_ae TEXT NOT NULL,
    received_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS instances_study ON instances(study_uid);
CREATE TABLE IF NOT EXISTS studies (
    study_uid TEXT PRIMARY KEY,
    last_received_at REAL NOT NULL,
    state TEXT NOT NULL,
    runs INTEGER NOT NULL DEFAULT 0,
    last_error TEXT NOT NULL DEFAULT '',
    updated_at REAL NOT NULL,
    crashes INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS results (
    sop_instance_uid TEXT PRIMARY KEY,
    study_uid TEXT NOT NULL,
    kind TEXT NOT NULL,
    path TEXT NOT NULL,
    run INTEGER NOT NULL,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    result_uid TEXT NOT NULL,
    destination TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL,
    last_error TEXT NOT NULL DEFAULT '',
    updated_at REAL NOT NULL,
    UNIQUE(result_uid, destination)
);
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    event TEXT NOT NULL,
    detail TEXT NOT NULL
);
"""


class StudyState(str, enum.Enum):
    PENDING = "pending"  # instances arrived since the last run
    PROCESSING = "processing"
    PROCESSED = "processed"
    FAILED = "failed"


class OutboxState(str, enum.Enum):
    PENDING = "pending"
    SENT = "sent"
    DEAD = "dead"


@dataclass(frozen=True)
class StoredInstance:
    sop_instance_uid: str
    sop_class_uid: str
    study_uid: str
    series_uid: str
    path: str
    sha256: str


@dataclass(frozen=True)
class ReceivedInstance:
    """An instance durable in the inbox, with what its index row records besides the instance."""

    instance: StoredInstance
    calling_ae: str
    #: When it was stored (seconds since the epoch): the row's receive time. The study's last arrival is
    #: the later of this and the time the row is written.
    received_at: float
    #: (event, detail) of an audit row written in the same transaction.
    audit: tuple[str, str] | None = None


@dataclass(frozen=True)
class StudyRow:
    study_uid: str
    state: StudyState
    runs: int
    instances: int
    last_received_at: float
    last_error: str


@dataclass(frozen=True)
class ResultRow:
    """A result (SR, key image) archived by the node: which document, where, from which run."""

    sop_instance_uid: str
    study_uid: str
    kind: str
    path: str
    run: int
    created_at: float


@dataclass(frozen=True)
class OutboxItem:
    id: int
    result_uid: str
    destination: str
    state: OutboxState
    attempts: int
    next_attempt_at: float
    last_error: str
    path: str


class NodeIndex:
    """Thread-safe access to the node's SQLite index.

    Parameters
    ----------
    path : Path
        The SQLite file; created with the schema when missing.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        # executescript manages its own transaction.
        self._connect().executescript(_SCHEMA)
        self._migrate()

    def _migrate(self) -> None:
        """Add the columns newer versions use to an index written by an older one."""
        db = self._connect()
        columns = {row[1] for row in db.execute("PRAGMA table_info(studies)")}
        if "crashes" not in columns:
            db.execute("ALTER TABLE studies ADD COLUMN crashes INTEGER NOT NULL DEFAULT 0")

    def _connect(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")  # an acknowledged instance survives power loss
            db.row_factory = sqlite3.Row
            self._local.db = db
        return db

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        db = self._connect()
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        else:
            db.execute("COMMIT")

    def close(self) -> None:
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None

    # -- instances -------------------------------------------------------------
    def instance(self, sop_instance_uid: str) -> StoredInstance | None:
        row = self._connect().execute(
            "SELECT sop_instance_uid, sop_class_uid, study_uid, series_uid, path, sha256 FROM instances WHERE sop_instance_uid=?",
            (sop_instance_uid,),
        ).fetchone()
        return StoredInstance(*row) if row else None

    def record_instance(
        self,
        instance: StoredInstance,
        calling_ae: str,
        *,
        now: float | None = None,
        audit: tuple[str, str] | None = None,
    ) -> bool:
        """Record (or replace) an instance and mark its study pending. Returns False if it was identical.

        Parameters
        ----------
        instance : StoredInstance
            The instance, already durable in the inbox.
        calling_ae : str
            Who sent it.
        now : float, optional
            Receive time (default: now).
        audit : (event, detail), optional
            An audit row written in the same transaction.
        """
        received = ReceivedInstance(instance, calling_ae, time.time() if now is None else now, audit)
        return self.record_instances([received])[0]

    def record_instances(self, received: Sequence[ReceivedInstance], *, sync: bool = True) -> list[bool]:
        """Record (or replace) instances and mark their studies pending, in one transaction.

        Parameters
        ----------
        received : sequence of ReceivedInstance
            Instances already durable in the inbox, in the order they were acknowledged.
        sync : bool
            ``False``: commit without waiting for the disk (SQLite
            ``synchronous=NORMAL``; the rows are on disk with the next synced
            commit or checkpoint). Only for rows the node can rebuild from
            their durable inbox files after a crash
            (:meth:`~dicom_node.server.StorageNode.reconcile_inbox`).

        Returns
        -------
        list of bool
            Per instance, False where the index already held it with the same SHA-256.
        """
        db = self._connect()
        if not sync:
            db.execute("PRAGMA synchronous=NORMAL")
        changed: list[bool] = []
        try:
            with self._tx() as db:
                for item in received:
                    changed.append(self._record(db, item))
        finally:
            if not sync:
                db.execute("PRAGMA synchronous=FULL")
        return changed

    @staticmethod
    def _record(db: sqlite3.Connection, item: ReceivedInstance) -> bool:
        instance, now = item.instance, item.received_at
        old = db.execute("SELECT sha256 FROM instances WHERE sop_instance_uid=?", (instance.sop_instance_uid,)).fetchone()
        if old is not None and old[0] == instance.sha256:
            return False
        db.execute(
            "INSERT OR REPLACE INTO instances VALUES (?,?,?,?,?,?,?,?)",
            (instance.sop_instance_uid, instance.sop_class_uid, instance.study_uid, instance.series_uid,
             instance.path, instance.sha256, item.calling_ae, now),
        )
        # The study's last arrival is when its row became visible, not when the instance was stored: a run
        # claimed between the two has not seen the instance, and finish_study must send the study back to
        # pending (rows written late by the indexer thread would otherwise be left out of every SR).
        visible = max(now, time.time())
        db.execute(
            "INSERT INTO studies(study_uid, last_received_at, state, updated_at) VALUES (?,?,?,?) "
            "ON CONFLICT(study_uid) DO UPDATE SET "
            "last_received_at=MAX(studies.last_received_at, excluded.last_received_at), "
            "state=CASE WHEN studies.state='processing' THEN 'processing' ELSE 'pending' END, updated_at=excluded.updated_at",
            (instance.study_uid, visible, StudyState.PENDING.value, visible),
        )
        if item.audit is not None:
            db.execute("INSERT INTO audit(at, event, detail) VALUES (?,?,?)", (now, *item.audit))
        return True

    def instance_paths(self) -> dict[str, float]:
        """Every indexed instance file (absolute path) with the time its row was written."""
        rows = self._connect().execute("SELECT path, received_at FROM instances").fetchall()
        return {os.path.abspath(path): received for path, received in rows}

    def study_instances(self, study_uid: str) -> list[StoredInstance]:
        rows = self._connect().execute(
            "SELECT sop_instance_uid, sop_class_uid, study_uid, series_uid, path, sha256 FROM instances "
            "WHERE study_uid=? ORDER BY series_uid, path",
            (study_uid,),
        ).fetchall()
        return [StoredInstance(*r) for r in rows]

    # -- studies ---------------------------------------------------------------
    def claim_quiet_studies(self, quiet_seconds: float, *, now: float | None = None) -> list[tuple[str, int, float]]:
        """Mark pending studies quiet for ``quiet_seconds`` as processing; return (uid, run, snapshot time)."""
        now = time.time() if now is None else now
        with self._tx() as db:
            rows = db.execute(
                "SELECT study_uid, runs FROM studies WHERE state=? AND last_received_at<=?",
                (StudyState.PENDING.value, now - quiet_seconds),
            ).fetchall()
            for uid, runs in rows:
                db.execute(
                    "UPDATE studies SET state=?, runs=?, updated_at=? WHERE study_uid=?",
                    (StudyState.PROCESSING.value, runs + 1, now, uid),
                )
        return [(uid, runs + 1, now) for uid, runs in rows]

    def finish_study(self, study_uid: str, snapshot: float, *, error: str = "", now: float | None = None) -> None:
        """End a run; a study that received instances during the run goes back to pending."""
        now = time.time() if now is None else now
        with self._tx() as db:
            row = db.execute("SELECT last_received_at FROM studies WHERE study_uid=?", (study_uid,)).fetchone()
            arrived_during_run = row is not None and row[0] > snapshot
            state = StudyState.PENDING if arrived_during_run else StudyState.FAILED if error else StudyState.PROCESSED
            db.execute(
                "UPDATE studies SET state=?, last_error=?, updated_at=?, crashes=0 WHERE study_uid=?",
                (state.value, error, now, study_uid),
            )

    def requeue_after_crash(self, study_uid: str, reason: str, max_attempts: int, *, now: float | None = None) -> StudyState:
        """A run ended because its worker process died: queue the study again, or fail it after ``max_attempts``.

        Returns the study's new state (pending, or failed with the reason
        and the number of attempts in ``last_error``).
        """
        now = time.time() if now is None else now
        with self._tx() as db:
            row = db.execute("SELECT crashes FROM studies WHERE study_uid=?", (study_uid,)).fetchone()
            crashes = (row[0] if row else 0) + 1
            if crashes >= max_attempts:
                state, error = StudyState.FAILED, f"analysis worker died {crashes} times; last: {reason}"
            else:
                state, error = StudyState.PENDING, f"analysis worker died ({reason}); queued again, attempt {crashes + 1} of {max_attempts}"
            db.execute(
                "UPDATE studies SET state=?, crashes=?, last_error=?, updated_at=? WHERE study_uid=?",
                (state.value, crashes, error[:500], now, study_uid),
            )
        return state

    def retry_studies(self, study_uids: list[str] | None = None, *, now: float | None = None) -> int:
        """Queue failed studies for analysis again (``None``: every failed study); returns how many."""
        now = time.time() if now is None else now
        with self._tx() as db:
            query = "UPDATE studies SET state=?, crashes=0, updated_at=? WHERE state=?"
            params: list[object] = [StudyState.PENDING.value, now, StudyState.FAILED.value]
            if study_uids is not None:
                query += f" AND study_uid IN ({','.join('?' * len(study_uids))})"
                params.extend(study_uids)
            return db.execute(query, params).rowcount

    def result_paths(self) -> set[str]:
        """Every archived result's path the index knows."""
        return {row[0] for row in self._connect().execute("SELECT path FROM results")}

    def counts(self) -> dict[str, dict[str, int]]:
        """Studies by state and outbox items by state (for metrics and ``mskus status``)."""
        db = self._connect()
        studies = {state.value: 0 for state in StudyState}
        studies.update({r[0]: r[1] for r in db.execute("SELECT state, COUNT(*) FROM studies GROUP BY state")})
        outbox = {state.value: 0 for state in OutboxState}
        outbox.update({r[0]: r[1] for r in db.execute("SELECT state, COUNT(*) FROM outbox GROUP BY state")})
        return {"studies": studies, "outbox": outbox}

    def oldest_pending_received_at(self) -> float | None:
        """When the oldest study still waiting for analysis got its last instance (``None``: none waits)."""
        row = self._connect().execute(
            "SELECT MIN(last_received_at) FROM studies WHERE state IN (?, ?)",
            (StudyState.PENDING.value, StudyState.PROCESSING.value),
        ).fetchone()
        return row[0] if row and row[0] is not None else None

    def reset_interrupted(self) -> int:
        """After a crash: studies left 'processing' (or failed by a dead worker) become pending again."""
        with self._tx() as db:
            cur = db.execute(
                "UPDATE studies SET state=? WHERE state=?", (StudyState.PENDING.value, StudyState.PROCESSING.value)
            )
            # Left failed by a version that did not survive a dead worker: redo them too.
            legacy = db.execute(
                "UPDATE studies SET state=? WHERE state=? AND last_error LIKE '%terminated abruptly%'",
                (StudyState.PENDING.value, StudyState.FAILED.value),
            )
            return cur.rowcount + legacy.rowcount

    def studies(self) -> list[StudyRow]:
        rows = self._connect().execute(
            "SELECT s.study_uid, s.state, s.runs, (SELECT COUNT(*) FROM instances i WHERE i.study_uid=s.study_uid), "
            "s.last_received_at, s.last_error FROM studies s ORDER BY s.last_received_at"
        ).fetchall()
        return [StudyRow(r[0], StudyState(r[1]), r[2], r[3], r[4], r[5]) for r in rows]

    # -- results and outbox ----------------------------------------------------
    def latest_result_path(self, study_uid: str, kind: str = "sr") -> str | None:
        row = self._connect().execute(
            "SELECT path FROM results WHERE study_uid=? AND kind=? ORDER BY run DESC, created_at DESC LIMIT 1",
            (study_uid, kind),
        ).fetchone()
        return row[0] if row else None

    def latest_result(self, study_uid: str, kind: str = "sr") -> ResultRow | None:
        """The study's newest result of ``kind`` (the current report for ``"sr"``), or ``None``."""
        row = self._connect().execute(
            "SELECT sop_instance_uid, study_uid, kind, path, run, created_at FROM results "
            "WHERE study_uid=? AND kind=? ORDER BY run DESC, created_at DESC LIMIT 1",
            (study_uid, kind),
        ).fetchone()
        return ResultRow(*row) if row else None

    def add_result(self, sop_instance_uid: str, study_uid: str, kind: str, path: str, run: int,
                   destinations: list[str], *, now: float | None = None) -> None:
        """Record an archived result and queue it for every destination, in one transaction."""
        now = time.time() if now is None else now
        with self._tx() as db:
            db.execute(
                "INSERT OR IGNORE INTO results VALUES (?,?,?,?,?,?)", (sop_instance_uid, study_uid, kind, path, run, now)
            )
            for destination in destinations:
                db.execute(
                    "INSERT OR IGNORE INTO outbox(result_uid, destination, state, next_attempt_at, updated_at) "
                    "VALUES (?,?,?,?,?)",
                    (sop_instance_uid, destination, OutboxState.PENDING.value, now, now),
                )

    def due_outbox(self, *, now: float | None = None, destination: str | None = None,
                   exclude: tuple[str, ...] = ()) -> list[OutboxItem]:
        """Pending items due at ``now``: for one ``destination``, or for every destination not in ``exclude``."""
        now = time.time() if now is None else now
        where, params = "", []
        if destination is not None:
            where, params = " AND o.destination=?", [destination]
        elif exclude:
            where, params = f" AND o.destination NOT IN ({','.join('?' * len(exclude))})", list(exclude)
        rows = self._connect().execute(
            "SELECT o.id, o.result_uid, o.destination, o.state, o.attempts, o.next_attempt_at, o.last_error, r.path "
            "FROM outbox o JOIN results r ON r.sop_instance_uid=o.result_uid "
            f"WHERE o.state=? AND o.next_attempt_at<=?{where} ORDER BY o.next_attempt_at",
            (OutboxState.PENDING.value, now, *params),
        ).fetchall()
        return [OutboxItem(r[0], r[1], r[2], OutboxState(r[3]), r[4], r[5], r[6], r[7]) for r in rows]

    def outbox(self) -> list[OutboxItem]:
        rows = self._connect().execute(
            "SELECT o.id, o.result_uid, o.destination, o.state, o.attempts, o.next_attempt_at, o.last_error, r.path "
            "FROM outbox o JOIN results r ON r.sop_instance_uid=o.result_uid ORDER BY o.id"
        ).fetchall()
        return [OutboxItem(r[0], r[1], r[2], OutboxState(r[3]), r[4], r[5], r[6], r[7]) for r in rows]

    def mark_sent(self, item_id: int, *, now: float | None = None) -> None:
        now = time.time() if now is None else now
        with self._tx() as db:
            db.execute(
                "UPDATE outbox SET state=?, attempts=attempts+1, last_error='', updated_at=? WHERE id=?",
                (OutboxState.SENT.value, now, item_id),
            )

    def mark_failed(self, item_id: int, error: str, next_attempt_at: float, dead: bool, *, now: float | None = None) -> None:
        now = time.time() if now is None else now
        state = OutboxState.DEAD if dead else OutboxState.PENDING
        with self._tx() as db:
            db.execute(
                "UPDATE outbox SET state=?, attempts=attempts+1, last_error=?, next_attempt_at=?, updated_at=? WHERE id=?",
                (state.value, error[:500], next_attempt_at, now, item_id),
            )

    def retry(self, item_ids: list[int] | None = None, *, now: float | None = None) -> int:
        """Put dead (or pending) items back to pending, due now. ``None`` = every unsent item."""
        now = time.time() if now is None else now
        with self._tx() as db:
            if item_ids is None:
                cur = db.execute(
                    "UPDATE outbox SET state=?, attempts=0, next_attempt_at=?, updated_at=? WHERE state!=?",
                    (OutboxState.PENDING.value, now, now, OutboxState.SENT.value),
                )
            else:
                marks = ",".join("?" * len(item_ids))
                cur = db.execute(
                    f"UPDATE outbox SET state=?, attempts=0, next_attempt_at=?, updated_at=? WHERE state!=? AND id IN ({marks})",
                    (OutboxState.PENDING.value, now, now, OutboxState.SENT.value, *item_ids),
                )
            return cur.rowcount

    # -- audit -----------------------------------------------------------------
    def audit(self, event: str, detail: str, *, now: float | None = None) -> None:
        """Append to the audit trail (identifiers and AE titles only, never patient names)."""
        now = time.time() if now is None else now
        with self._tx() as db:
            db.execute("INSERT INTO audit(at, event, detail) VALUES (?,?,?)", (now, event, detail))

    def audit_trail(self) -> list[tuple[float, str, str]]:
        return [tuple(r) for r in self._connect().execute("SELECT at, event, detail FROM audit ORDER BY id").fetchall()]
