"""mosaic_assembler.batch: one COG per feature of a vector file, resumable, with an index.

    read      FEATURES → lon/lat polygons with sanitised, unique ids (`_features`)
    options   one `AssembleOptions` per feature: its polygon as the AOI, its own run directory
    ledger    OUT_DIR/ledger.jsonl says which features are finished (done or empty)
    run       the others, each an `assemble()` of its own (threads, or a Dask task each)
    index     OUT_DIR/index.json (STAC ItemCollection) and mosaic.json (`_batch_index`)

The ledger is a `mosaic_assembler.ledger` log written by the driver only:

    {"event": "batch", "hash": …, "features": n, "skipped": [ids]}   each time a batch starts
    {"event": "start", "feature": id}                                a feature is handed out
    {"event": "done" | "empty" | "failed", "feature": id, "g": …, …} a feature ended

A rerun skips the features whose last event is done (and whose COG is there) or empty, with
the same geometry (`g`); a failed one is retried, an interrupted one resumes its chunks from
its run directory. A batch directory belongs to one set of options (`hash`): another set is
refused unless `restart`, which starts the ledger afresh.

Dependency order: _features <- _batch_index, _batch_run (<- api, ledger) <- batch.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from typing_extensions import Unpack

from mosaic_assembler._batch_index import index_text, mosaicjson_text
from mosaic_assembler._batch_out import LEDGER, RUNS, LocalOut, S3Out, open_out
from mosaic_assembler._batch_run import FeatureJob, failed_entry, run_jobs
from mosaic_assembler._features import Feature, read_features
from mosaic_assembler.errors import ConfigError, StateMismatchError
from mosaic_assembler.ledger import last_by
from mosaic_assembler.options import AssembleKwargs, AssembleOptions, build_options

logger = logging.getLogger(__name__)

__all__ = [
    "LEDGER",
    "RUNS",
    "BatchProgress",
    "BatchResult",
    "Feature",
    "FeatureResult",
    "assemble_batch",
    "read_features",
]

INDEX = "index.json"
MOSAICJSON = "mosaic.json"

#: Features computed at once by default. One: each feature's run already uses every core for
#: its tiles, and bench_batch (20 regions, 2 cores) measured 1, 2 and 3 workers within noise
#: (medians 21.1, 22.2, 20.3 s); more workers only add the memory of more runs at once.
#: Raise it for small features over remote assets, whose reads mostly wait on the network.
DEFAULT_FEATURE_WORKERS = 1

#: Options a batch decides itself (the features are the AOIs; one COG per feature).
_REFUSED = {
    "bbox": "the features are the AOIs",
    "aoi": "the features are the AOIs",
    "split_zoom": "a batch writes one COG per feature",
    "save_mosaicjson": "every feature would write the same file",
}
#: Options that change how a run goes, not its pixels (not part of the batch's hash).
_EXECUTION = (
    "concurrency", "run_dir", "keep_run_dir", "restart", "overwrite", "allow_empty", "executor",
)  # fmt: skip

Status = Literal["done", "empty", "failed"]


@dataclass(frozen=True)
class BatchProgress:
    """Features finished so far (skipped ones count as finished); given after each feature."""

    done: int
    empty: int
    failed: int
    skipped: int
    total: int
    feature: str = ""


@dataclass(frozen=True)
class FeatureResult:
    """What became of one feature.

    Attributes:
        id: the sanitised id (the output is `OUT_DIR/<id>.tif`).
        value: the id field's value as read.
        status: done (a COG), empty (no asset or no data: no COG) or failed.
        path: the COG (done only).
        message: why it is empty or failed.
        skipped: finished by an earlier run and not computed again.
        seconds: the feature's run time (0 when skipped).
    """

    id: str
    value: str
    status: Status
    path: Path | str | None = None
    message: str = ""
    skipped: bool = False
    seconds: float = 0.0


@dataclass(frozen=True)
class BatchResult:
    """What a batch did; `failed` is not empty when a feature failed (no exception)."""

    out_dir: Path | str
    features: tuple[FeatureResult, ...]
    index: Path | str | None
    mosaicjson: Path | str | None
    seconds: float = 0.0
    ledger: Path | str = field(default=Path(LEDGER))

    def _of(self, status: str) -> tuple[FeatureResult, ...]:
        return tuple(f for f in self.features if f.status == status)

    @property
    def done(self) -> tuple[FeatureResult, ...]:
        """Features with a COG."""
        return self._of("done")

    @property
    def empty(self) -> tuple[FeatureResult, ...]:
        """Features over no data (no COG)."""
        return self._of("empty")

    @property
    def failed(self) -> tuple[FeatureResult, ...]:
        """Features that failed, with their messages."""
        return self._of("failed")

    @property
    def skipped(self) -> tuple[FeatureResult, ...]:
        """Features an earlier run had finished."""
        return tuple(f for f in self.features if f.skipped)

    def to_json(self) -> str:
        """The result as a JSON object (paths as strings)."""
        return json.dumps(
            {
                "out_dir": str(self.out_dir),
                "index": str(self.index) if self.index else None,
                "mosaicjson": str(self.mosaicjson) if self.mosaicjson else None,
                "ledger": str(self.ledger),
                "seconds": round(self.seconds, 3),
                "done": len(self.done),
                "empty": len(self.empty),
                "failed": len(self.failed),
                "skipped": len(self.skipped),
                "features": [
                    {**dataclasses.asdict(f), "path": str(f.path) if f.path else None}
                    for f in self.features
                ],
            }
        )


def assemble_batch(
    features: str | Path,
    out_dir: str | Path,
    *,
    id_field: str,
    wkt_field: str | None = None,
    layer: str | int | None = None,
    feature_workers: int | None = None,
    progress: Callable[[BatchProgress], None] | None = None,
    **kwargs: Unpack[AssembleKwargs],
) -> BatchResult:
    """Assemble one COG per feature of `features` into `out_dir`, resumably.

    Args:
        features: GeoJSON, GeoPackage, Shapefile, or CSV with a WKT column (`wkt_field`).
        out_dir: the directory of `<id>.tif`, `ledger.jsonl`, `index.json`, `mosaic.json`.
        id_field: the attribute naming each feature's COG (sanitised, made unique).
        wkt_field: a CSV's WKT column (default `WKT`, then `geometry`).
        layer: the layer of a multi-layer file (default: the first).
        feature_workers: features computed at once in threads (default 1); with
            `dask_local`/`dask_scheduler`, every feature is a Dask task instead.
        progress: a callback given a `BatchProgress` after each feature.
        **kwargs: the options of every feature's `assemble()` (`AssembleKwargs`), but not
            `bbox`, `aoi` or `split_zoom`. `run_dir` is the parent of the features' run
            directories (default `out_dir/.runs`); `overwrite` lets a batch write into a
            non-empty directory that holds no ledger; `restart` redoes every feature.

    Returns:
        BatchResult: every feature's status; failed features do not raise.

    Raises:
        ConfigError: bad `features` or options (before any feature runs).
        StateMismatchError: `out_dir` holds a batch of other options (without `restart`).
        OutputError: `out_dir` cannot be used.
    """
    t0 = time.perf_counter()
    out = open_out(out_dir)
    given: dict[str, Any] = dict(kwargs)
    for name, why in _REFUSED.items():
        if given.get(name) is not None:
            raise ConfigError(f"`{name}` is not an option of a batch: {why}")
    workers = DEFAULT_FEATURE_WORKERS if feature_workers is None else feature_workers
    if workers < 1:
        raise ConfigError(f"`feature_workers` must be >= 1, got {workers}")
    feats = read_features(features, id_field, wkt_field=wkt_field, layer=layer)
    overwrite, restart = bool(given.get("overwrite")), bool(given.get("restart"))
    runs = str(given.pop("run_dir", None) or out.default_runs())
    jobs = {f.id: _job(f, out, runs, given) for f in feats}
    options_hash = _options_hash(next(iter(jobs.values())).options)
    ledger = out.ledger
    out.check(overwrite)
    finished = {} if restart else _finished(out, feats, options_hash)
    out.prepare(runs)
    ledger.append({"event": "batch", "hash": options_hash, "features": len(feats),
                   "skipped": sorted(finished), "restart": restart})  # fmt: skip
    counts = {"done": 0, "empty": 0, "failed": 0}
    for e in finished.values():
        counts[e["event"]] += 1

    def report(feature: str) -> None:
        if progress is not None:
            progress(BatchProgress(**counts, skipped=len(finished), total=len(feats),
                                   feature=feature))  # fmt: skip

    report("")
    pending = [jobs[f.id] for f in feats if f.id not in finished]
    ends = []
    for entry in run_jobs(pending, workers, ledger):
        ledger.append(entry)
        ends.append({**entry, "t": round(time.time(), 3)})
        counts[entry["event"]] += 1
        report(entry["feature"])
    # what this run ended comes from memory (an S3 ledger is not listed again); skipped
    # features keep the entries (and times `t`) an earlier run wrote
    last = {**finished, **last_by(ends, "feature")}
    entries = {f.id: _final(last.get(f.id), jobs[f.id]) for f in feats}
    out.write_text(INDEX, index_text(feats, entries, out.href))
    index = out.result_path(INDEX)
    mosaic = mosaicjson_text(entries, out.mosaic_path)
    if mosaic is None:
        out.remove(MOSAICJSON)
    else:
        out.write_text(MOSAICJSON, mosaic)
    mosaicjson = out.result_path(MOSAICJSON) if mosaic is not None else None
    out.finish(runs)
    return BatchResult(
        out.where, tuple(_feature_result(f, entries[f.id], out, f.id in finished) for f in feats),
        index, mosaicjson, time.perf_counter() - t0, ledger.location,
    )  # fmt: skip


def _job(feature: Feature, out: LocalOut | S3Out, runs: str, kwargs: dict[str, Any]) -> FeatureJob:
    """The feature's run: its polygon as the AOI, its own run directory, its own COG."""
    opts = build_options(
        **{**kwargs, "allow_empty": False, "overwrite": True},
        aoi=feature.geometry,
        run_dir=out.run_dir(runs, feature.id),
    )
    return FeatureJob(feature, out.output(f"{feature.id}.tif"), opts)


def _options_hash(opts: AssembleOptions) -> str:
    """What makes the features' pixels (a batch directory belongs to one such set)."""
    d = dataclasses.asdict(opts)
    for name in ("aoi", *_EXECUTION):
        d.pop(name, None)
    text = json.dumps(d, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _finished(
    out: LocalOut | S3Out, feats: list[Feature], options_hash: str
) -> dict[str, dict[str, Any]]:
    """The features an earlier run finished: their last entry, done (COG there) or empty."""
    entries = _since_restart(out.ledger.read())
    batches = [e for e in entries if e.get("event") == "batch"]
    if batches and batches[-1].get("hash") != options_hash:
        raise StateMismatchError(
            f"`out_dir` {out.where} holds a batch made with other options; use another directory, "
            "or `restart` to redo every feature with these"
        )
    last = last_by(entries, "feature")
    finished = {}
    for f in feats:
        e = last.get(f.id)
        if e is None or e.get("g") != f.token:
            continue
        if e["event"] == "empty" or (e["event"] == "done" and out.has(e["path"])):
            finished[f.id] = e
    return finished


def _since_restart(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The ledger's entries from the last batch started with `restart` on."""
    starts = [n for n, e in enumerate(entries) if e.get("event") == "batch" and e.get("restart")]
    return entries[starts[-1] :] if starts else entries


def _final(entry: dict[str, Any] | None, job: FeatureJob) -> dict[str, Any]:
    """A feature's last entry, which ends it (a feature the driver lost is failed)."""
    if entry is not None and entry.get("event") in ("done", "empty", "failed"):
        return entry
    return failed_entry(job, "the feature did not finish (its task was lost)")


def _feature_result(
    f: Feature, e: dict[str, Any], out: LocalOut | S3Out, skipped: bool
) -> FeatureResult:
    status: Status = e["event"]
    return FeatureResult(
        f.id, f.value, status, out.result_path(e["path"]) if status == "done" else None,
        e.get("message", ""), skipped, 0.0 if skipped else float(e.get("seconds", 0.0)),
    )  # fmt: skip
