"""Model lifecycle of the watch-folder daemon: which model is the champion of each
modality (state and history in the ledger's database), the shadow candidate's paired
records, the comparison of both on reviewer feedback and the promotion gate.

Tables (created here, ``CREATE TABLE IF NOT EXISTS``, in ``OUTBOX/.medimg-edge/
ledger.sqlite`` beside the ledger's own; none holds a path below the inbox or patient data):

* ``model_state``: one row per modality, the **champion** (sidecar path, name, version,
  sha256 of the model file), where it came from (``config``, ``promote``, ``rollback``),
  the config's model at the time (``config_ref``, for the precedence rule below) and the
  stack of earlier champions (``previous``, JSON) that ``rollback`` returns to.
* ``model_history``: append-only: every ``start``, ``config`` change, ``promote``,
  ``rollback``, ``applied`` (the daemon's workers switched), ``switch_failed`` (the daemon
  could not load it: the state went back to the model it runs), with a JSON ``detail``
  (metrics of the gate, the margin, the daemon's pid, the error).
* ``model_results``: per result id and role (``champion`` / ``shadow``) the model
  (name, version, sha256) and its status, label and positive score.  The champion's row
  repeats what ``<id>.json`` says (the finding); a shadow row is never written anywhere
  else: a candidate's answer is never a finding.

**Precedence at start**: the ``model_state`` row of a modality wins over the config's
``models`` (and the reference model) as long as the config still names the model it
named when the row was written; when the config names another model than then (the
operator changed it), the config wins and the row is replaced (the old champion is
pushed on the rollback stack, history ``config``).  So a promotion survives restarts,
and an explicit new config is never silently ignored.

Writes go through short transactions on a connection of their own (SQLite WAL: the
daemon's ledger connection, ``medimg-edge promote`` / ``rollback`` and the result
recorder may write concurrently; ``timeout`` waits for the lock).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from .._errors import InvalidInputError, ModelError
from .._modality import MODALITIES

__all__ = [
    "DEFAULT_MARGIN",
    "DEFAULT_MIN_LABELLED",
    "GATE_METRICS",
    "NEGATIVE_LABELS",
    "ModelSpec",
    "ResultLog",
    "StateRow",
    "connect",
    "describe",
    "evaluate_pair",
    "feedback_labels",
    "gate",
    "history",
    "init_state",
    "json_safe",
    "ledger_path",
    "metrics",
    "paired_records",
    "promote",
    "read_state",
    "record",
    "result_summary",
    "revert",
    "rollback",
    "shadow_refs",
    "verify_package",
]

#: Largest worsening (absolute, on each of :data:`GATE_METRICS`) ``promote`` accepts.
DEFAULT_MARGIN = 0.02
#: Labelled results both models answered, needed before a promotion is judged.
DEFAULT_MIN_LABELLED = 20
#: What the gate compares, candidate vs champion, on the same labelled results.
GATE_METRICS = ("auc", "sensitivity", "specificity")
#: Feedback labels that mean "no lesion" (besides each model's own negative label).
NEGATIVE_LABELS = frozenset({"negative", "normal"})

_SCHEMA = """
CREATE TABLE IF NOT EXISTS model_state (
    modality TEXT PRIMARY KEY,
    ref TEXT NOT NULL,
    name TEXT NOT NULL,
    version TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    source TEXT NOT NULL,
    config_ref TEXT NOT NULL,
    previous TEXT NOT NULL,
    updated REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS model_history (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    time REAL NOT NULL,
    action TEXT NOT NULL,
    modality TEXT,
    name TEXT,
    version TEXT,
    sha256 TEXT,
    ref TEXT,
    previous_sha256 TEXT,
    detail TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS model_results (
    result_id TEXT NOT NULL,
    role TEXT NOT NULL,
    modality TEXT NOT NULL,
    name TEXT NOT NULL,
    version TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    status TEXT NOT NULL,
    label TEXT,
    positive_score REAL,
    recorded REAL NOT NULL,
    PRIMARY KEY (result_id, role)
);
CREATE INDEX IF NOT EXISTS model_results_sha ON model_results(sha256);
"""


# ---- model packages ------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """A model package as the lifecycle names it: the absolute sidecar path (``ref``),
    name, version, the sha256 of its model file and the modality it declares."""

    ref: str
    name: str
    version: str
    sha256: str
    modality: str

    def to_dict(self) -> dict[str, str]:
        return dataclasses.asdict(self)

    def label(self) -> str:
        return f"{self.name} {self.version} (sha256 {self.sha256[:12]})"


def describe(ref: str | os.PathLike[str]) -> ModelSpec:
    """The :class:`ModelSpec` of a model name or sidecar path, from its sidecar only (the
    model file is not read: see :func:`verify_package`).

    Raises
    ------
    ModelError
        No such model, or a sidecar that does not validate.
    """
    from ..runtime import read_package
    from ..runtime._package import find_sidecar

    sidecar = Path(os.path.abspath(find_sidecar(ref)))
    pkg = read_package(sidecar)
    return ModelSpec(str(sidecar), pkg.name, pkg.version, pkg.cpu.sha256, pkg.modality)


def verify_package(ref: str | os.PathLike[str], modality: str | None = None) -> ModelSpec:
    """Verify a package fully: the sidecar against the schema and its rules, every model
    file's size, sha256 and flatbuffer identifier (:func:`medimg_edge.runtime.read_verified`),
    then the model is loaded on the CPU and one synthetic frame diagnosed.

    Raises
    ------
    ModelError
        The package does not verify or cannot run (the message says why).
    """
    import numpy as np

    from ..diagnosis import Diagnoser
    from ..runtime import read_package, read_verified

    spec = describe(ref)
    pkg = read_package(spec.ref)
    read_verified(pkg.cpu)
    if pkg.edgetpu is not None:
        read_verified(pkg.edgetpu)
    mod = modality or (spec.modality if spec.modality != "any" else "ultrasound")
    if spec.modality not in ("any", mod):
        raise ModelError(f"model {spec.name} is for {spec.modality} frames, not {mod}")
    try:
        d = Diagnoser(spec.ref, mod, delegate="cpu", num_threads=1)
        rng = np.random.default_rng(0)
        d.diagnose(rng.integers(0, 256, (160, 160), dtype=np.uint8))
    except ModelError:
        raise
    except Exception as exc:  # the runtime refused it: say so, never a traceback
        raise ModelError(f"model {spec.name} does not run: {type(exc).__name__}: {exc}") from None
    if d.model.info["sha256"] != spec.sha256:  # pragma: no cover - read_verified checks it
        raise ModelError(f"model {spec.name}: the loaded file is not the sidecar's")
    return spec


def shadow_refs(value: str | Mapping[str, str] | None) -> dict[str, str]:
    """The shadow candidate per modality from the ``shadow`` setting: a model name or path
    (it shadows the modality its package declares, every modality for ``any``) or a table
    modality -> model.

    Raises
    ------
    ModelError
        A model that cannot be found or whose sidecar does not validate.
    """
    if not value:
        return {}
    if isinstance(value, Mapping):
        return {str(m): str(r) for m, r in value.items()}
    spec = describe(value)
    mods = MODALITIES if spec.modality == "any" else (spec.modality,)
    return dict.fromkeys(mods, spec.ref)


# ---- the ledger's database --------------------------------------------------------------


def ledger_path(outbox: str | os.PathLike[str]) -> Path:
    """``OUTBOX/.medimg-edge/ledger.sqlite`` (the default ``state_dir``)."""
    return Path(outbox) / ".medimg-edge" / "ledger.sqlite"


def connect(path: str | os.PathLike[str], *, thread_safe: bool = False) -> sqlite3.Connection:
    """A connection to the ledger's database with this module's tables (``thread_safe``:
    usable from another thread than this one, one thread at a time).

    Raises
    ------
    InvalidInputError
        No ledger there (``code="no_ledger"``: the daemon never ran on this outbox).
    """
    p = Path(path)
    if not p.is_file():
        raise InvalidInputError(
            f"no ledger at {p}: start medimg-edge watch on this outbox first", code="no_ledger"
        )
    db = sqlite3.connect(p, isolation_level=None, timeout=30.0, check_same_thread=not thread_safe)
    db.execute("PRAGMA synchronous=FULL")
    db.executescript(_SCHEMA)
    return db


@contextlib.contextmanager
def _tx(db: sqlite3.Connection) -> Iterator[None]:
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
        raise


@dataclasses.dataclass(frozen=True)
class StateRow:
    """One ``model_state`` row: the champion of ``modality``."""

    modality: str
    spec: ModelSpec
    source: str
    config_ref: str
    previous: tuple[ModelSpec, ...]


def _spec(d: Mapping[str, Any]) -> ModelSpec:
    return ModelSpec(
        str(d["ref"]), str(d["name"]), str(d["version"]), str(d["sha256"]), str(d["modality"])
    )


def read_state(db: sqlite3.Connection) -> dict[str, StateRow]:
    """The champion of every modality that has one recorded."""
    out: dict[str, StateRow] = {}
    rows = db.execute(
        "SELECT modality, ref, name, version, sha256, source, config_ref, previous FROM model_state"
    )
    for mod, ref, name, version, sha, source, cfg, prev in rows:
        declared = json.loads(prev)
        out[str(mod)] = StateRow(
            str(mod),
            ModelSpec(str(ref), str(name), str(version), str(sha), str(mod)),
            str(source),
            str(cfg),
            tuple(_spec(p) for p in declared),
        )
    return out


def _write_state(db: sqlite3.Connection, row: StateRow) -> None:
    s = row.spec
    db.execute(
        "INSERT OR REPLACE INTO model_state (modality, ref, name, version, sha256, source, "
        "config_ref, previous, updated) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            row.modality,
            s.ref,
            s.name,
            s.version,
            s.sha256,
            row.source,
            row.config_ref,
            json.dumps([p.to_dict() for p in row.previous]),
            time.time(),
        ),
    )


def record(
    db: sqlite3.Connection,
    action: str,
    *,
    modality: str | None = None,
    spec: ModelSpec | None = None,
    previous: ModelSpec | None = None,
    detail: Mapping[str, Any] | None = None,
) -> int:
    """Append a ``model_history`` row (inside the caller's transaction, if any); returns
    its ``seq``."""
    cur = db.execute(
        "INSERT INTO model_history (time, action, modality, name, version, sha256, ref, "
        "previous_sha256, detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            time.time(),
            action,
            modality,
            None if spec is None else spec.name,
            None if spec is None else spec.version,
            None if spec is None else spec.sha256,
            None if spec is None else spec.ref,
            None if previous is None else previous.sha256,
            json.dumps(json_safe(dict(detail or {})), allow_nan=False, default=_json_default),
        ),
    )
    return int(cur.lastrowid or 0)


def json_safe(x: Any) -> Any:
    """``x`` with every NaN replaced by None, recursively (JSON has no NaN)."""
    if isinstance(x, float) and math.isnan(x):
        return None
    if isinstance(x, Mapping):
        return {k: json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [json_safe(v) for v in x]
    return x


def _json_default(x: Any) -> Any:
    if isinstance(x, ModelSpec):
        return x.to_dict()
    raise TypeError(type(x).__name__)


def history(db: sqlite3.Connection, since_seq: int = 0) -> list[dict[str, Any]]:
    """The ``model_history`` rows after ``since_seq``, oldest first."""
    cols: tuple[str, ...] = ("seq", "time", "action", "modality", "name", "version")
    cols += ("sha256", "ref", "previous_sha256", "detail")
    out = []
    for r in db.execute(
        f"SELECT {', '.join(cols)} FROM model_history WHERE seq > ? ORDER BY seq", (since_seq,)
    ):
        d = dict(zip(cols, r, strict=True))
        d["detail"] = json.loads(d["detail"])
        out.append(d)
    return out


def init_state(
    db: sqlite3.Connection, config_models: Mapping[str, str], *, pid: int | None = None
) -> dict[str, ModelSpec]:
    """The champions the daemon starts with (module docstring: precedence), recorded in
    ``model_state`` and the history (``start``, and ``config`` where the config won).

    ``config_models`` maps every modality to the config's model (its ``models`` entry or
    the reference model's name).

    Raises
    ------
    ModelError
        A model that cannot be found or whose sidecar does not validate.
    """
    champions: dict[str, ModelSpec] = {}
    with _tx(db):
        state = read_state(db)
        for mod, cfg in config_models.items():
            row = state.get(mod)
            if row is not None and row.config_ref == cfg:
                champions[mod] = row.spec
                continue
            spec = describe(cfg)
            spec = dataclasses.replace(spec, modality=mod)
            previous: tuple[ModelSpec, ...] = ()
            if row is not None:
                previous = (
                    (*row.previous, row.spec) if row.spec.sha256 != spec.sha256 else row.previous
                )
                record(
                    db,
                    "config",
                    modality=mod,
                    spec=spec,
                    previous=row.spec,
                    detail={"why": "the config names another model than when the state was "
                            "written: the config wins"},
                )  # fmt: skip
            _write_state(db, StateRow(mod, spec, "config", cfg, previous))
            champions[mod] = spec
        record(db, "start", detail={"pid": pid, "champions": champions})
    return champions


def promote(
    db: sqlite3.Connection, modality: str, spec: ModelSpec, detail: Mapping[str, Any]
) -> int:
    """Make ``spec`` the champion of ``modality`` (the old one pushed on the rollback
    stack); returns the history ``seq``.

    Raises
    ------
    InvalidInputError
        No champion recorded for ``modality`` (``code="no_champion"``).
    """
    with _tx(db):
        row = read_state(db).get(modality)
        if row is None:
            raise InvalidInputError(
                f"no {modality} champion recorded in this ledger: start the daemon first",
                code="no_champion",
            )
        spec = dataclasses.replace(spec, modality=modality)
        _write_state(
            db,
            StateRow(modality, spec, "promote", row.config_ref, (*row.previous, row.spec)),
        )
        return record(db, "promote", modality=modality, spec=spec, previous=row.spec, detail=detail)


def rollback(
    db: sqlite3.Connection, modality: str, detail: Mapping[str, Any], *, verify: bool = True
) -> tuple[int, ModelSpec, ModelSpec]:
    """Return ``modality`` to the champion before the current one (the top of the
    rollback stack), after verifying its package (its file must still have the sha256
    recorded); returns ``(seq, from, to)``.

    Raises
    ------
    InvalidInputError
        Nothing to return to (``code="no_previous"``).
    ModelError
        The previous package no longer verifies, or is not the same file any more.
    """
    with _tx(db):
        row = read_state(db).get(modality)
        if row is None or not row.previous:
            raise InvalidInputError(
                f"no earlier {modality} model to return to (history has no promotion)",
                code="no_previous",
            )
        target = row.previous[-1]
        if verify:
            found = verify_package(target.ref, modality)
            if found.sha256 != target.sha256:
                raise ModelError(
                    f"the earlier model {target.label()} at {target.ref} is another file now "
                    f"(sha256 {found.sha256[:12]}): not returned to"
                )
        _write_state(db, StateRow(modality, target, "rollback", row.config_ref, row.previous[:-1]))
        seq = record(
            db, "rollback", modality=modality, spec=target, previous=row.spec, detail=detail
        )
    return seq, row.spec, target


def revert(
    db: sqlite3.Connection,
    running: Mapping[str, ModelSpec],
    error: str,
    *,
    pid: int | None = None,
) -> None:
    """The daemon could not switch to the recorded champions: the state goes back to the
    models it runs (history ``switch_failed`` with the error), so that the next start
    does not fail on them either."""
    with _tx(db):
        state = read_state(db)
        for mod, spec in running.items():
            row = state.get(mod)
            if row is None or row.spec == spec:
                continue
            previous = row.previous
            if previous and previous[-1] == spec:
                previous = previous[:-1]
            _write_state(db, StateRow(mod, spec, "revert", row.config_ref, previous))
            record(
                db,
                "switch_failed",
                modality=mod,
                spec=row.spec,
                previous=spec,
                detail={"error": error, "pid": pid, "kept": spec},
            )


# ---- per-result records (the shadow's answers) ------------------------------------------


def result_summary(role: str, modality: str, result: Mapping[str, Any]) -> dict[str, Any]:
    """What ``model_results`` keeps of a result (a :meth:`Diagnosis.to_dict` mapping)."""
    m = result.get("model") or {}
    score = result.get("positive_score")
    return {
        "role": role,
        "modality": modality,
        "name": str(m.get("name", "")),
        "version": str(m.get("version", "")),
        "sha256": str(m.get("sha256", "")),
        "status": str(result.get("status", "")),
        "label": result.get("label"),
        "positive_score": None if score is None else float(score),
    }


class ResultLog:
    """Writes ``model_results`` rows from the daemon's slot threads in batches, on a
    thread and connection of its own (a slot thread never waits for the database).

    Rows still queued when the daemon is killed are lost (about 0.2 s of results; the
    finding itself, in ``<id>.json``, names its model anyway); :meth:`close` writes the
    rest.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._db = connect(path, thread_safe=True)  # used by the thread below only
        self._queue: queue.Queue[tuple[str, list[dict[str, Any]]] | None] = queue.Queue()
        self.errors = 0
        self._thread = threading.Thread(target=self._loop, name="model-results", daemon=True)
        self._thread.start()

    def add(self, result_id: str, summaries: list[dict[str, Any]]) -> None:
        """Queue the rows of one result (replacing earlier ones of the same id and role)."""
        self._queue.put((result_id, summaries))

    def _loop(self) -> None:
        done = False
        while not done:
            item = self._queue.get()
            batch = [item]
            time.sleep(0.1)
            while True:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            done = None in batch
            rows = [
                (rid, s["role"], s["modality"], s["name"], s["version"], s["sha256"],
                 s["status"], s["label"], s["positive_score"], time.time())
                for it in batch if it is not None
                for rid, ss in (it,) for s in ss
            ]  # fmt: skip
            if not rows:
                continue
            ids = [(it[0],) for it in batch if it is not None]
            try:
                with _tx(self._db):
                    # a result processed again (after a crash) keeps only its latest rows:
                    # no shadow row of an earlier run beside a new champion row
                    self._db.executemany("DELETE FROM model_results WHERE result_id = ?", ids)
                    self._db.executemany(
                        "INSERT OR REPLACE INTO model_results (result_id, role, modality, "
                        "name, version, sha256, status, label, positive_score, recorded) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        rows,
                    )
            except sqlite3.Error as exc:  # a full disk: evaluation records, never a finding
                if not self.errors:
                    logging.getLogger("medimg_edge.daemon").warning(
                        f"model records could not be written ({exc}): comparison records "
                        "of these results are lost; the results themselves are not affected",
                        extra={"event": "model_records_failed"},
                    )
                self.errors += 1

    def close(self) -> None:
        """Write what is queued and close."""
        self._queue.put(None)
        self._thread.join(timeout=60)
        with contextlib.suppress(sqlite3.Error):
            self._db.close()


# ---- evaluation ----------------------------------------------------------------------------


def feedback_labels(
    outbox: str | os.PathLike[str], *, state_dir: str | os.PathLike[str] | None = None
) -> dict[str, str]:
    """Reviewer labels by result id (:func:`medimg_edge.daemon._feedback.labels`)."""
    from ._feedback import labels

    return labels(Path(outbox), state_dir=None if state_dir is None else Path(state_dir))


def _done_ids(db: sqlite3.Connection) -> set[str]:
    """Result ids of the ledger's ``done`` rows (a record of a result never written, e.g.
    quarantined after an output error, is not counted)."""
    inst = db.execute("SELECT value FROM meta WHERE key = 'instance'").fetchone()
    if inst is None:
        return set()
    rows = db.execute("SELECT rowid FROM files WHERE state = 'done'")
    return {f"{inst[0]}-{int(r[0]):08d}" for r in rows}


def paired_records(
    db: sqlite3.Connection, modality: str | None = None
) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """Champion / shadow records of the same results, grouped by (champion sha256,
    shadow sha256): ``[{"result_id", "modality", "champion": {...}, "shadow": {...}}]``."""
    done = _done_ids(db)
    sql = (
        "SELECT c.result_id, c.modality, c.name, c.version, c.sha256, c.status, c.label, "
        "c.positive_score, s.name, s.version, s.sha256, s.status, s.label, s.positive_score "
        "FROM model_results c JOIN model_results s ON s.result_id = c.result_id "
        "AND s.role = 'shadow' WHERE c.role = 'champion'"
    )
    params: tuple[Any, ...] = ()
    if modality is not None:
        sql += " AND c.modality = ?"
        params = (modality,)
    out: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in db.execute(sql + " ORDER BY c.result_id", params):
        if r[0] not in done:
            continue
        keys = ("name", "version", "sha256", "status", "label", "positive_score")
        champ, shadow = dict(zip(keys, r[2:8], strict=True)), dict(zip(keys, r[8:14], strict=True))
        out.setdefault((champ["sha256"], shadow["sha256"]), []).append(
            {"result_id": r[0], "modality": r[1], "champion": champ, "shadow": shadow}
        )
    return out


def _is_positive(label: str, negatives: frozenset[str]) -> bool:
    return label.strip().lower() not in negatives


def metrics(truth: list[bool], status: list[str], score: list[float | None]) -> dict[str, Any]:
    """AUC, sensitivity and specificity of one model on labelled results.

    ``truth`` True = lesion present (feedback); ``status`` positive / negative /
    indeterminate; ``score`` the positive score (None when the model gave none: quality
    or out-of-distribution refusals).  AUC over the results with a score;
    sensitivity / specificity over the decided (positive / negative) ones; NaN when a
    class is missing.
    """
    from ..training import roc_auc

    n = len(truth)
    scored = [(t, s) for t, s in zip(truth, score, strict=True) if s is not None]
    ys = [t for t, _ in scored]
    auc = (
        roc_auc([int(t) for t in ys], [s for _, s in scored])
        if scored and any(ys) and not all(ys)
        else math.nan
    )
    tp = sum(1 for t, st in zip(truth, status, strict=True) if t and st == "positive")
    fn = sum(1 for t, st in zip(truth, status, strict=True) if t and st == "negative")
    tn = sum(1 for t, st in zip(truth, status, strict=True) if not t and st == "negative")
    fp = sum(1 for t, st in zip(truth, status, strict=True) if not t and st == "positive")
    return {
        "n": n,
        "positives": sum(truth),
        "negatives": n - sum(truth),
        "auc": auc,
        "sensitivity": tp / (tp + fn) if tp + fn else math.nan,
        "specificity": tn / (tn + fp) if tn + fp else math.nan,
        "indeterminate": sum(1 for st in status if st not in ("positive", "negative")),
        "scored": len(scored),
    }


def evaluate_pair(
    pairs: list[dict[str, Any]],
    labels: Mapping[str, str],
    *,
    negative_labels: frozenset[str] = frozenset(),
) -> dict[str, Any]:
    """Agreement, score deltas and (on the results with feedback) the metrics of both.

    Returns
    -------
    dict
        ``n``, ``agreement`` (same status and label), ``status_agreement``,
        ``score_delta`` (shadow - champion over results both scored: ``n``, ``mean``,
        ``mean_abs``, ``max_abs``), ``labelled`` and ``champion`` / ``shadow``
        (:func:`metrics`, on the labelled results).
    """
    negatives = NEGATIVE_LABELS | {v.lower() for v in negative_labels}
    n = len(pairs)
    same = sum(
        1
        for p in pairs
        if (p["champion"]["status"], p["champion"]["label"])
        == (p["shadow"]["status"], p["shadow"]["label"])
    )
    same_status = sum(1 for p in pairs if p["champion"]["status"] == p["shadow"]["status"])
    deltas = [
        p["shadow"]["positive_score"] - p["champion"]["positive_score"]
        for p in pairs
        if p["shadow"]["positive_score"] is not None and p["champion"]["positive_score"] is not None
    ]
    lab = [p for p in pairs if p["result_id"] in labels]
    truth = [_is_positive(labels[p["result_id"]], negatives) for p in lab]
    out: dict[str, Any] = {
        "n": n,
        "agreement": same / n if n else math.nan,
        "status_agreement": same_status / n if n else math.nan,
        "score_delta": {
            "n": len(deltas),
            "mean": sum(deltas) / len(deltas) if deltas else math.nan,
            "mean_abs": sum(abs(d) for d in deltas) / len(deltas) if deltas else math.nan,
            "max_abs": max((abs(d) for d in deltas), default=math.nan),
        },
        "labelled": len(lab),
    }
    for role in ("champion", "shadow"):
        out[role] = metrics(
            truth,
            [p[role]["status"] for p in lab],
            [p[role]["positive_score"] for p in lab],
        )
    return out


def gate(result: Mapping[str, Any], *, margin: float, min_labelled: int) -> tuple[bool, list[str]]:
    """Whether a candidate (the ``shadow`` of :func:`evaluate_pair`) may replace the
    champion: at least ``min_labelled`` labelled results with both classes, and on each of
    :data:`GATE_METRICS` the candidate no more than ``margin`` below the champion (a
    metric the champion has and the candidate has not, NaN, is a refusal).  Returns
    ``(accepted, reasons for a refusal)``."""
    reasons: list[str] = []
    c, s = result["champion"], result["shadow"]
    if result["labelled"] < min_labelled:
        reasons.append(
            f"only {result['labelled']} labelled results answered by both models "
            f"(at least {min_labelled} needed): run the candidate with --shadow and record "
            "reviewer feedback"
        )
        return False, reasons
    if not c["positives"] or not c["negatives"]:
        reasons.append("the labelled results need both lesion and no-lesion cases")
        return False, reasons
    for key in GATE_METRICS:
        cv, sv = c[key], s[key]
        if math.isnan(cv):
            continue
        if math.isnan(sv) or sv < cv - margin:
            reasons.append(
                f"{key} {_fmt(sv)} is worse than the champion's {_fmt(cv)} by more than "
                f"the margin {margin:g}"
            )
    return not reasons, reasons


def _fmt(x: float) -> str:
    return "n/a" if math.isnan(x) else f"{x:.3f}"
