"""``sliplink models list|show|register|activate|rollback|status|cancel|evaluate|drift``.

They work on the configured database (``SLIPLINK_DATABASE_URL`` or the embedded default),
migrating it first.  ``activate`` starts a rollout (``workers.rollout``): with a broker the
workers re-embed and re-cluster in the background (``--wait`` follows the progress); in the
embedded default this command runs it.  The old version serves until the new one is
complete.  Also home of the review-based evaluation that ``sliplink eval --from-reviews``
uses: the risk team's confirmed and rejected links as labelled pairs.
"""

from __future__ import annotations

import getpass
import json
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer
from numpy.typing import NDArray

from cli.options import JobsOption

models_app = typer.Typer(
    help="Embedding model versions: registry, rollout, evaluation.", no_args_is_help=True
)


def register(app: typer.Typer) -> None:
    app.add_typer(models_app, name="models")


class CliError(Exception):
    """A bad argument or input: one line on stderr, exit code 2."""


def _fail(message: str) -> None:
    raise CliError(message)


def _run(fn, *args, **kwargs):  # type: ignore[no-untyped-def]
    from store.errors import DomainError

    try:
        return fn(*args, **kwargs)
    except CliError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise typer.Exit(code=2) from None
    except DomainError as exc:
        print(f"error: {exc.detail}", file=sys.stderr)
        raise typer.Exit(code=2) from None


def default_actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


def _settings():  # type: ignore[no-untyped-def]
    from store.db import migrate
    from store.settings import get_settings

    settings = get_settings()
    migrate(settings.effective_database_url)
    return settings


def _session(settings):  # type: ignore[no-untyped-def]
    from sqlmodel import Session

    from store.db import get_engine

    return Session(get_engine(settings.effective_database_url), expire_on_commit=False)


def _json(value: object) -> str:
    return json.dumps(value, indent=2, sort_keys=True, default=str)


# ---------------------------------------------------------------- review pairs
def review_pairs(session) -> tuple[list[tuple[int, int]], NDArray[np.bool_]]:  # type: ignore[no-untyped-def]
    """The risk team's verdicts as labelled pairs: (slip_a, slip_b) and True for confirmed
    (same writer), False for rejected; the latest verdict on a pair wins."""
    from store import clustering

    must, cannot = clustering.link_constraints(session=session)
    pairs = [*must, *cannot]
    return pairs, np.array([True] * len(must) + [False] * len(cannot), dtype=bool)


def slip_vectors(
    session,
    *,
    slip_ids: list[int],
    version: str | None,
    model: Any,  # type: ignore[no-untyped-def]
) -> dict[int, NDArray[np.float32]]:
    """Embeddings of these slips: stored ones under ``version``, the rest computed from the
    stored image with ``model`` (slips without a usable image are left out)."""
    from sqlmodel import col, select

    from cv.imageio import ImageError, decode_greyscale
    from store.clustering import Embedding
    from store.models import SlipImage

    out: dict[int, NDArray[np.float32]] = {}
    if version:
        for sid, vec, usable in session.exec(
            select(Embedding.slip_id, Embedding.vector, Embedding.usable).where(
                Embedding.model_version == version, col(Embedding.slip_id).in_(slip_ids)
            )
        ).all():
            if usable:
                out[int(sid)] = np.frombuffer(vec, dtype="<f4").astype(np.float32)
    missing = [s for s in slip_ids if s not in out]
    if missing and version:
        # stored but unusable under this version: never compared
        stored = set(
            session.exec(
                select(Embedding.slip_id).where(
                    Embedding.model_version == version, col(Embedding.slip_id).in_(missing)
                )
            ).all()
        )
        missing = [s for s in missing if s not in stored]
    for sid in missing:
        image = session.get(SlipImage, sid)
        if image is None:
            continue
        try:
            grey, _ = decode_greyscale(image.png)
        except ImageError:
            continue
        raw = model.extract(grey)
        if raw.ok:
            out[sid] = np.asarray(model.transform_raw([raw])[0], dtype=np.float32)
    return out


def evaluate_reviews(
    session,  # type: ignore[no-untyped-def]
    *,
    model: Any,
    version: str | None,
    threshold: float,
    target_precision: float = 0.98,
) -> tuple[dict[str, Any], NDArray, NDArray[np.bool_]]:
    """Pair precision / recall / F1 of ``score >= threshold`` on the reviewed pairs, the
    same for "both slips in one cluster" when ``version`` has memberships, and the
    operating point for ``target_precision``.  Returns (figures, scores, same)."""
    from sqlmodel import col, select

    from cv.metrics import precision_threshold
    from store.clustering import ClusterMember

    pairs, labels = review_pairs(session)
    if not pairs:
        _fail("no reviewed links in the database (confirm or reject links in the UI first)")
    ids = sorted({s for p in pairs for s in p})
    vectors = slip_vectors(session, slip_ids=ids, version=version, model=model)
    keep = [i for i, (a, b) in enumerate(pairs) if a in vectors and b in vectors]
    if not keep:
        _fail("none of the reviewed slips has usable handwriting under this model")
    scores = np.array([float(vectors[pairs[i][0]] @ vectors[pairs[i][1]]) for i in keep])
    same = labels[keep]
    figures: dict[str, Any] = {
        "model": str(model.version),
        "pairs": len(keep),
        "confirmed": int(same.sum()),
        "rejected": int((~same).sum()),
        "skipped_pairs": len(pairs) - len(keep),
        "threshold": float(threshold),
    }
    figures |= _pair_figures(scores >= threshold, same, prefix="pair")
    if version:
        clusters = dict(
            session.exec(
                select(ClusterMember.slip_id, ClusterMember.cluster_id).where(
                    ClusterMember.model_version == version, col(ClusterMember.slip_id).in_(ids)
                )
            ).all()
        )
        if clusters:
            together = np.array(
                [
                    clusters.get(pairs[i][0]) is not None
                    and clusters.get(pairs[i][0]) == clusters.get(pairs[i][1])
                    for i in keep
                ]
            )
            figures |= _pair_figures(together, same, prefix="cluster")
    op = precision_threshold(scores, same, target_precision=target_precision)
    figures |= {
        "target_precision": target_precision,
        "threshold_at_target": op["threshold"],
        "recall_at_target": op["recall"],
    }
    return figures, scores, same


def _pair_figures(predicted: NDArray[np.bool_], same: NDArray[np.bool_], *, prefix: str) -> dict:
    tp = int((predicted & same).sum())
    fp = int((predicted & ~same).sum())
    fn = int((~predicted & same).sum())
    p = tp / (tp + fp) if tp + fp else float("nan")
    r = tp / (tp + fn) if tp + fn else float("nan")
    f1 = 2 * p * r / (p + r) if tp else 0.0
    return {
        f"{prefix}_precision": p,
        f"{prefix}_recall": r,
        f"{prefix}_f1": f1,
        f"{prefix}_false_links": fp,
    }


def format_reviews(r: dict[str, Any]) -> str:
    lines = [
        f"model            {r['model']}",
        f"reviewed pairs   {r['pairs']} ({r['confirmed']} confirmed, {r['rejected']} rejected, "
        f"{r['skipped_pairs']} skipped)",
        f"pair scores      threshold {r['threshold']:.4f}: precision {r['pair_precision']:.3f} "
        f"recall {r['pair_recall']:.3f} F1 {r['pair_f1']:.3f} "
        f"({r['pair_false_links']} rejected pairs above it)",
    ]
    if "cluster_precision" in r:
        lines.append(
            f"clusters         same cluster: precision {r['cluster_precision']:.3f} "
            f"recall {r['cluster_recall']:.3f} F1 {r['cluster_f1']:.3f}"
        )
    lines.append(
        f"operating point  threshold {r['threshold_at_target']:.4f} for pair precision >= "
        f"{r['target_precision']}, recall {r['recall_at_target']:.3f}"
    )
    return "\n".join(lines)


# ---------------------------------------------------------------- registry commands
def _version_row(session, ref: str):  # type: ignore[no-untyped-def]
    from store import models_registry

    return models_registry.resolve(session=session, ref=ref)


@models_app.command("list")
def list_cmd(
    as_json: Annotated[bool, typer.Option("--json", help="JSON instead of a table.")] = False,
) -> None:
    """Every registered model version, newest first; * marks the active one."""
    _run(_list, as_json=as_json)


def _list(*, as_json: bool) -> None:
    from store import models_registry
    from workers import model as worker_model

    settings = _settings()
    with _session(settings) as s:
        worker_model.register_configured(session=s, settings=settings)
        s.commit()
        rows = models_registry.list_versions(session=s)
    if as_json:
        typer.echo(_json(rows))
        return
    typer.echo(f"  {'version':34} {'dim':>4} {'threshold':>9} {'embedded':>8}  rollout")
    for r in rows:
        ro = r["rollout"]
        state = f"{ro['state']} {ro['done']}/{ro['total']}" if ro else "-"
        thr = "-" if r["threshold"] is None else f"{r['threshold']:.4f}"
        typer.echo(
            f"{'*' if r['active'] else ' '} {r['version']:34} {r['dim']:>4} {thr:>9} "
            f"{r['embeddings']:>8}  {state}"
        )


@models_app.command("show")
def show_cmd(
    version: Annotated[str, typer.Argument(help="Version, a unique prefix/hash, or 'active'.")],
) -> None:
    """Everything the registry knows about a version (JSON)."""
    _run(_show, version)


def _show(version: str) -> None:
    from store import models_registry

    settings = _settings()
    with _session(settings) as s:
        row = _version_row(s, version)
        typer.echo(_json(models_registry.detail(session=s, version=row.version)))


@models_app.command("register")
def register_cmd(
    model_file: Annotated[Path, typer.Argument(help="A model file written by sliplink train.")],
    note: Annotated[str | None, typer.Option("--note", help="Free text kept with it.")] = None,
    actor: Annotated[str | None, typer.Option("--actor", help="Who registers it.")] = None,
) -> None:
    """Add a model file to the registry (its file is stored in the database)."""
    _run(_register_file, model_file, note=note, actor=actor or default_actor())


def _register_file(model_file: Path, *, note: str | None, actor: str) -> str:
    version = register_loaded(_load_file(model_file), model_file, actor=actor, note=note)
    typer.echo(version)
    return version


def register_loaded(
    model: Any,
    model_file: Path,
    *,
    actor: str,
    note: str | None = None,
    fit_data: dict[str, Any] | None = None,
) -> str:
    """Register ``model`` (already loaded from ``model_file``, whose bytes are stored) and say
    on stderr whether it was new; returns its version."""
    from store import models_registry

    with _session(_settings()) as s:
        row, created = models_registry.register_model(
            session=s,
            model=model,
            data=model_file.read_bytes(),
            source=str(model_file),
            actor=actor,
            fit_data=fit_data,
            note=note,
        )
        s.commit()
    print(f"{'registered' if created else 'already registered'}: {row.version}", file=sys.stderr)
    return row.version


def _load_file(path: Path):  # type: ignore[no-untyped-def]
    from cv.embed import EmbeddingModel

    try:
        return EmbeddingModel.load(path)
    except ValueError as exc:
        _fail(str(exc))


@models_app.command("activate")
def activate_cmd(
    version: Annotated[str, typer.Argument(help="A registered version, or a model file.")],
    wait: Annotated[
        bool, typer.Option("--wait/--no-wait", help="With a broker: follow it to the end.")
    ] = False,
    actor: Annotated[str | None, typer.Option("--actor", help="Who activates it.")] = None,
) -> None:
    """Roll VERSION out: re-embed and re-cluster the stored slips under it, then switch.

    The active version keeps serving until the new one is complete."""
    _run(_activate, version, wait=wait, actor=actor or default_actor())


@models_app.command("rollback")
def rollback_cmd(
    wait: Annotated[
        bool, typer.Option("--wait/--no-wait", help="With a broker: follow it to the end.")
    ] = False,
    actor: Annotated[str | None, typer.Option("--actor", help="Who rolls back.")] = None,
) -> None:
    """Make the previously active version the active one again (its embeddings and clusters
    are kept, so only slips that arrived since need embedding)."""
    _run(_rollback, wait=wait, actor=actor or default_actor())


def _rollback(*, wait: bool, actor: str) -> None:
    from store import models_registry

    settings = _settings()
    with _session(settings) as s:
        previous = models_registry.previous_version(session=s)
    if previous is None:
        _fail("no earlier version has been active")
    _activate(str(previous), wait=wait, actor=actor)


def _activate(ref: str, *, wait: bool, actor: str) -> None:
    from store import models_registry
    from workers import model as worker_model

    settings = _settings()
    if Path(ref).suffix == ".npz" or Path(ref).is_file():
        ref = _register_file(Path(ref), note=None, actor=actor)
    with _session(settings) as s:
        worker_model.register_configured(session=s, settings=settings)
        row = _version_row(s, ref)
        rollout, started = models_registry.start_rollout(
            session=s, version=row.version, actor=actor
        )
        s.commit()
        rid = int(rollout.id)  # type: ignore[arg-type]  # set by the commit above
        print(
            f"{'rollout' if started else 'resuming rollout'} {rid}: {row.version} "
            f"(now serving {rollout.previous_version or 'nothing'})",
            file=sys.stderr,
        )
    if settings.embedded:
        _run_inline(settings)
        return
    from workers.client import CeleryPipeline

    pipeline = CeleryPipeline(settings)
    try:
        if not pipeline.send("sliplink.rollout_tick"):
            print("the broker is down: the beat scheduler will start it", file=sys.stderr)
        if wait:
            _follow(settings, rid)
    finally:
        pipeline.shutdown()


def _print_progress(r: dict[str, Any]) -> None:
    print(
        f"\rre-embedding {r['version']}: {r['done']}/{r['total']} ({r['percent']:.1f}%) "
        f"{r['state']}",
        end="",
        file=sys.stderr,
        flush=True,
    )


def _run_inline(settings) -> None:  # type: ignore[no-untyped-def]
    from workers import rollout

    result = rollout.run_inline(settings=settings, progress=_print_progress)
    print(file=sys.stderr)
    if not result.get("switched"):
        _fail("the rollout did not finish (cancelled, or replaced by another activation)")
    print(
        f"active: {_active(settings)} (re-clustered {result.get('slips', 0)} slips, "
        f"{result.get('changed', 0)} memberships, assigned {result.get('assigned', 0)} more)",
        file=sys.stderr,
    )


def _active(settings) -> str:  # type: ignore[no-untyped-def]
    from store import models_registry

    with _session(settings) as s:
        return models_registry.serving_version(session=s)


def _follow(settings, rollout_id: int, *, every: float = 1.0) -> None:  # type: ignore[no-untyped-def]
    from store import models_registry
    from store.models_registry import ModelRollout

    while True:
        with _session(settings) as s:
            r = s.get(ModelRollout, rollout_id)
            assert r is not None
            models_registry.progress(session=s, rollout=r)
            s.commit()
            info = models_registry.rollout_public(r)
        _print_progress(info)
        if info["state"] not in ("running", "finishing"):
            print(file=sys.stderr)
            if info["state"] != "complete":
                _fail(f"rollout {rollout_id} ended {info['state']}: {info['error'] or ''}")
            print(f"active: {info['version']}", file=sys.stderr)
            return
        time.sleep(every)


@models_app.command("status")
def status_cmd() -> None:
    """The active version and the latest rollout's progress (JSON)."""
    _run(_status)


def _status() -> None:
    from store import models_registry

    settings = _settings()
    with _session(settings) as s:
        r = models_registry.latest_rollout(session=s)
        if r is not None and r.state in ("running", "finishing"):
            models_registry.progress(session=s, rollout=r)
            s.commit()
        typer.echo(
            _json(
                {
                    "active": models_registry.serving_version(session=s) or None,
                    "rollout": models_registry.rollout_public(r) if r is not None else None,
                }
            )
        )


@models_app.command("cancel")
def cancel_cmd(
    actor: Annotated[str | None, typer.Option("--actor", help="Who cancels it.")] = None,
) -> None:
    """Stop the running rollout; the active version stays."""
    _run(_cancel, actor=actor or default_actor())


def _cancel(*, actor: str) -> None:
    from store import models_registry

    settings = _settings()
    with _session(settings) as s:
        r = models_registry.cancel_rollout(session=s, actor=actor)
        s.commit()
        print(f"cancelled rollout {r.id} of {r.version}", file=sys.stderr)


# ---------------------------------------------------------------- evaluate
@models_app.command("evaluate")
def evaluate_cmd(
    version: Annotated[str, typer.Argument(help="Version, a unique prefix/hash, or 'active'.")],
    directory: Annotated[
        Path | None, typer.Argument(help="Folder of labelled images (with --labels).")
    ] = None,
    labels: Annotated[
        Path | None, typer.Option("--labels", help="CSV with image,writer[,template].")
    ] = None,
    from_reviews: Annotated[
        bool, typer.Option("--from-reviews", help="Use the confirmed/rejected links as labels.")
    ] = False,
    target_precision: Annotated[
        float, typer.Option("--target-precision", help="Pairwise precision to calibrate for.")
    ] = 0.98,
    calibrate: Annotated[
        bool,
        typer.Option("--calibrate", help="Store the threshold for --target-precision."),
    ] = False,
    report: Annotated[
        Path | None, typer.Option("--report", help="Write the HTML report into this folder.")
    ] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Also write JSON.")] = None,
    jobs: JobsOption = 1,
    actor: Annotated[str | None, typer.Option("--actor", help="Who evaluates it.")] = None,
) -> None:
    """Evaluate VERSION on labelled images or on the risk team's reviews; the figures are
    stored with the version, and with --calibrate its assignment threshold too."""
    _run(
        _evaluate,
        version,
        directory=directory,
        labels=labels,
        from_reviews=from_reviews,
        target_precision=target_precision,
        calibrate=calibrate,
        report=report,
        json_out=json_out,
        jobs=jobs,
        actor=actor or default_actor(),
    )


def _evaluate(
    ref: str,
    *,
    directory: Path | None,
    labels: Path | None,
    from_reviews: bool,
    target_precision: float,
    calibrate: bool,
    report: Path | None,
    json_out: Path | None,
    jobs: int,
    actor: str,
) -> dict[str, Any]:
    from store import models_registry
    from workers import model as worker_model

    if not 0.0 < target_precision <= 1.0:
        _fail(f"--target-precision must be in (0, 1], got {target_precision}")
    if from_reviews == (directory is not None):
        _fail("give either DIR --labels FILE or --from-reviews")
    if directory is not None and labels is None:
        _fail("DIR needs --labels FILE")
    settings = _settings()
    with _session(settings) as s:
        row = _version_row(s, ref)
        version = row.version
        model = worker_model.model_for(version, session=s, settings=settings)
        threshold = worker_model.threshold(model)
        if from_reviews:
            figures, _, _ = evaluate_reviews(
                s,
                model=model,
                version=version,
                threshold=threshold,
                target_precision=target_precision,
            )
            name = "reviews"
            typer.echo(format_reviews(figures))
            op = (figures["threshold_at_target"], figures["recall_at_target"])
        else:
            from cli.offline import folder_evaluation

            assert directory is not None and labels is not None
            figures, op, x = folder_evaluation(
                directory,
                labels_path=labels,
                model=model,
                threshold=threshold,
                jobs=jobs,
                target_precision=target_precision,
                report=report,
                title=f"sliplink {version} on {directory.name}",
            )
            name = directory.name
            # the drift watch compares new slips with labelled data the model was not fitted
            # on: the latest folder evaluation is its reference
            from workers.rollout import score_reference

            models_registry.set_reference(
                session=s,
                version=version,
                reference=score_reference(x, source=f"evaluation on {directory}"),
            )
            if report is not None:
                files = {p.name: p.read_bytes() for p in sorted(report.iterdir()) if p.is_file()}
                models_registry.store_report(session=s, version=version, files=files)
                print(f"report: {report / 'index.html'} (also on the model page)", file=sys.stderr)
        clean = {k: v for k, v in figures.items() if _finite_or_text(v)}
        models_registry.record_evaluation(
            session=s, version=version, name=name, figures=clean, actor=actor
        )
        if calibrate:
            threshold_at, recall_at = op
            if not np.isfinite(threshold_at):
                _fail(f"no threshold reaches pairwise precision {target_precision} on {name}")
            models_registry.calibrate(
                session=s,
                version=version,
                threshold=float(threshold_at),
                target_precision=target_precision,
                expected_recall=float(recall_at),
                actor=actor,
                evaluation=name,
            )
            print(
                f"calibrated {version}: threshold {threshold_at:.4f} for pairwise precision "
                f">= {target_precision}, expected recall {recall_at:.3f}",
                file=sys.stderr,
            )
        s.commit()
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(_json(figures) + "\n", encoding="utf-8")
    return figures


def _finite_or_text(value: object) -> bool:
    if isinstance(value, float):
        return bool(np.isfinite(value))
    return isinstance(value, int | str | bool) or value is None


# ---------------------------------------------------------------- drift
@models_app.command("drift")
def drift_cmd(
    days: Annotated[int, typer.Option("--days", help="Slips of the last N days.")] = 7,
    limit: Annotated[
        float, typer.Option("--limit", help="KS distance that raises the alert.")
    ] = 0.2,
) -> None:
    """Run the drift watch now: recent slips' score distribution against the active
    model's fitting data; raises an operations alert when it moved."""
    _run(_drift, days=days, limit=limit)


def _drift(*, days: int, limit: float) -> None:
    from workers import rollout

    if days < 1:
        _fail(f"--days must be >= 1, got {days}")
    if not 0.0 < limit < 1.0:
        _fail(f"--limit must be in (0, 1), got {limit}")
    figures = rollout.check_drift(settings=_settings(), days=days, limit=limit)
    typer.echo(_json(figures))
