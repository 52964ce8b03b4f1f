"""The running evaluator: one faust worker that reads forecasts, flux, flares and the model lifecycle, keeps
the pending forecasts, flux bins and flares in tables (rebuilt from their changelogs after a restart, and
completed from PostgreSQL, which holds the same facts: a broker that lost its changelogs loses nothing),
publishes outcomes, metrics and alerts, and serves `GET /metrics/performance` from the same process.

The forecasts, flux and flares are read with aiokafka (`shared.streaming.BulkReader`), by one consumer that reads
the flux only while the others have nothing waiting (so it cannot run ahead of the forecasts and flares of the same
hours), and the model lifecycle by a faust agent, which keeps the app's tables assigned and recovered. Both take
their records in batches (one at a time live, thousands when behind: a replay, a backlog) and hand each batch to
the same `decide`, one batch at a time, so the decisions in `services.evaluator.core` never interleave. The
forecasts a batch resolves are published together, and once the broker has them all, written in one round trip and
then settled (they leave the pending table, are scored, drift is judged after each in order); only then is the
batch committed. A crash in between resolves them again after the restart, under the same ids, and the metric book
(rebuilt from the prediction log) scores each once.
Metrics are computed from a timer for the groups that changed, at most once a second and at most a fifth of
the time: a replay of years resolves thousands of forecasts a second, and recomputing every window after each
would cost more than the replay. Drift is still judged after every resolution (on the drift window only).

While the database is away, every read and write waits and tries again (the message in hand is not
committed meanwhile); the service does not stop.
"""

from __future__ import annotations

import asyncio
import time

import asyncpg
import faust
from aiokafka.errors import KafkaError
from prometheus_client import Gauge

from shared import infra
from shared import messages as m
from shared.broker_watch import BrokerWatch
from shared.db import create_pool, outlasting_outages_on
from shared.features import CLASS_RANK
from shared.kafka import Received, handler_failed
from shared.logging import bind_correlation, configure_logging, get_logger
from shared.serving import run_faust_worker, serve_in_worker
from shared.settings import Settings, get_settings
from shared.streaming import BULK_BATCH, Acceptor, BulkReader, make_app, raw_topic, send
from shared.topics import topic_registry
from services.evaluator import store
from services.evaluator.api import create_api
from services.evaluator.core import RETENTION_NS, Evaluator, unique_resolutions
from services.evaluator.metrics import GroupKey, MetricBook
from services.evaluator.resolution import FlareMark, FlareRecord, Resolution, hour_of, to_ns

SERVICE = "evaluator"
INPUT_ROLES = ("forecasts", "flux", "flares", "lifecycle")
BULK_ROLES = ("forecasts", "flux", "flares")  # read with aiokafka; the lifecycle by the faust agent
BATCH_SECONDS = 0.05  # live, a lifecycle message waits at most this long for company
METRICS_INTERVAL_SECONDS = 1.0
# Errors that mean "the broker is away", not "this message is bad" (the database's are waited out).
TRANSIENT = (KafkaError,)
log = get_logger(__name__)
SKILL_LABELS = ["model_version", "shadow", "window", "target"]
SKILL_GAUGES = {
    "brier": Gauge("flare_forecast_brier_score", "Latest Brier score of the >=target forecasts (0 best, 1 worst)",
                   SKILL_LABELS),
    "tss": Gauge("flare_forecast_true_skill_statistic", "Latest true skill statistic of the >=target forecasts "
                 "(-1 to 1; 0 is no skill)", SKILL_LABELS),
}


def record_skill(updates: list[m.MetricsUpdated]) -> None:
    """The skill gauges from what the metrics topic just got; a figure without a value (no event yet) is left out."""
    for update in updates:
        for name, gauge in SKILL_GAUGES.items():
            for target in ("C", "M", "X"):
                value = update.metrics.get(f"{target}.{name}")
                if value is not None:
                    gauge.labels(update.model_version, str(update.shadow).lower(), update.window, target).set(value)


class EvaluatorWorker:
    def __init__(self, app: faust.App, settings: Settings, database_url: str, bootstrap_servers: str):
        self.app = app
        self.settings = settings
        self.database_url = database_url
        topics = topic_registry(settings)
        self.lifecycle = Acceptor(app, SERVICE, topics["lifecycle"], topics["dead_letters"])
        self.lifecycle_topic = raw_topic(app, topics["lifecycle"])
        self.inputs = BulkReader(
            app, [topics[role] for role in BULK_ROLES], bootstrap_servers=bootstrap_servers, group="inputs",
            service=SERVICE, dead_letter_topic=topics["dead_letters"].name, held_back=[topics["flux"].name])
        self.outcomes_topic = topics["outcomes"].name
        self.dead_letters_topic = topics["dead_letters"].name
        self.metrics_topic = raw_topic(app, topics["metrics"])
        self.alerts = raw_topic(app, topics["alerts"])
        # keys and values as JSON; written while a batch is taken, not inside one event's iteration (which says
        # the partition): with one partition, the producer's partitioner picks the one the event would
        self.tables = {
            name: app.Table(name, partitions=1, use_partitioner=True)
            for name in ("pending-forecasts", "flux-hours", "flares")
        }
        self.core: Evaluator | None = None
        self.dirty: dict[GroupKey, int] = {}
        self._metrics_not_before = 0.0
        self._pool: asyncpg.Pool | None = None
        self._pool_lock = asyncio.Lock()
        self._deciding = asyncio.Lock()  # one batch at a time, whichever reader took it

    async def pool(self) -> asyncpg.Pool:
        async with self._pool_lock:
            if self._pool is None:
                self._pool = await create_pool(self.database_url)
            return self._pool

    async def _with_database(self, work):
        return await outlasting_outages_on(await self.pool(), work)

    async def _load(self) -> Evaluator:
        """Build the decisions' state once the tables are recovered: the book and drift episodes come from
        PostgreSQL, so what was scored before a restart stays scored; the tables are completed from it too."""
        book = MetricBook(await self._with_database(store.resolved_forecasts))
        episodes = await self._with_database(store.drift_episodes)
        await self._with_database(self._complete_tables)
        core = Evaluator.for_settings(
            self.settings, book, episodes, pending=self.tables["pending-forecasts"],
            flux_hours=self.tables["flux-hours"], flares=self.tables["flares"],
        )
        for key in book.keys():  # republish the current figures: a crash may have left the last ones unpublished
            self.dirty[key] = book.group(key).newest_resolved_ns
        log.info("evaluator.loaded", scored=len(book), pending=len(core.pending), flux_hours=len(core.record.store),
                 open_drift_episodes=len(core.drift.open))
        return core

    async def _complete_tables(self, conn: asyncpg.Connection) -> None:
        """When all three tables come back empty (an in-memory broker restarted and lost the changelogs, or the
        first start on an existing database), fill them with what PostgreSQL holds: the unresolved forecasts of
        the prediction log, and the stored flux bins and flares from the oldest of those forecasts or the
        retention period, whichever is earlier. A forecast then resolves as `flare match-actuals` resolves it."""
        if any(len(table) for table in self.tables.values()):
            return
        pending = [forecast for forecast, _ in await store.prediction_log(conn, unresolved_only=True)]
        hours, newest = await store.flux_hours(conn)
        since_ns = to_ns(newest) - RETENTION_NS if newest else 0
        since_ns = min([since_ns, *(forecast.issued_ns for forecast in pending)])
        for forecast in pending:
            self.tables["pending-forecasts"][forecast.forecast_id] = forecast.to_dict()
        for hour in hours:
            if hour >= hour_of(since_ns):
                self.tables["flux-hours"][hour] = True
        flares = FlareRecord(self.tables["flares"])
        for row in await store.stored_flares(conn):
            mark = FlareMark.from_values(row["peak_time"], row["peak_flux"], row["scaling_era"])
            if mark.peak_ns >= since_ns and mark.rank >= CLASS_RANK["C"]:
                flares.put(row["event_id"], mark)
        log.info("evaluator.tables_from_database", pending=len(pending), flux_hours=len(self.tables["flux-hours"]),
                 flares=len(self.tables["flares"]))

    async def on_lifecycle(self, stream) -> None:
        async for events in stream.take_events(BULK_BATCH, within=BATCH_SECONDS):
            taken = []
            for event in events:
                message = await self.lifecycle.accept(event)
                if message is not None:
                    taken.append(Received(message, event.message.topic, event.message.partition,
                                          event.message.offset, value=event.value))
            if not await self.decide(taken):
                return

    async def read(self) -> None:
        """The forecasts, flux and flares, read in bulk; each batch committed once decided."""
        await self.inputs.start()
        await self.app.tables.recovery.completed.wait()  # the agent's events wait for it too: the tables are whole
        async for taken in self.inputs.batches():
            if taken and not await self.decide(taken):
                return
            await self.inputs.done()

    async def decide(self, taken: list[Received]) -> bool:
        """The decisions on a batch of messages, then the settling of what they resolved; False when the
        broker is away and the service is stopping (the batch uncommitted, to be read again after the restart)."""
        await self.inputs.started.wait()  # the agent's first batch may come before the publisher is started
        async with self._deciding:
            resolved: list[tuple[Received, list[Resolution]]] = []
            for item in taken:
                with bind_correlation(item.message.correlation_id):
                    try:
                        if self.core is None:
                            self.core = await self._load()
                        resolutions = await self.handle(self.core, item.message)
                    except TRANSIENT as exc:
                        await self._stop(exc, item)
                        return False
                    except Exception as exc:  # a message the evaluator cannot handle must not stop the stream
                        await self._dead_letter(item, exc)
                        continue
                if resolutions:
                    resolved.append((item, resolutions))
            if not resolved:
                return True
            try:
                await self._settle(self.core, unique_resolutions(r for _, rs in resolved for r in rs))
            except TRANSIENT as exc:
                await self._stop(exc, resolved[-1][0])
                return False
            except Exception as exc:  # the messages whose outcomes could not be settled go aside, the stream on
                for item, _ in resolved:
                    await self._dead_letter(item, exc)
            return True

    async def _stop(self, exc: Exception, item: Received) -> None:
        # the broker is away: stop before this batch is committed, so the restarted service sees it again
        log.error("evaluator.stopping", reason=repr(exc), topic=item.topic, offset=item.offset)
        await self.app.crash(exc)

    async def _dead_letter(self, item: Received, exc: Exception) -> None:
        await self.inputs.publisher.publish(self.dead_letters_topic, handler_failed(
            SERVICE, item.topic, item.value, exc, partition=item.partition, offset=item.offset,
            correlation_id=item.message.correlation_id,
        ))

    async def handle(self, core: Evaluator, message: m.Message) -> list[Resolution]:
        """The decisions on one message; the forecasts it resolves are settled with the rest of its batch."""
        if isinstance(message, m.ForecastIssued):
            await self._know_version(core, message.model_version)
            resolutions = core.take_forecast(message)
        elif isinstance(message, m.FluxObserved):
            resolutions = core.take_flux(message)
        elif isinstance(message, m.FlareObserved):
            alert = core.take_flare(message)
            if alert is not None:
                await send(self.alerts, alert)
                log.warning("alert.x_class_flare", goes_class=alert.goes_class, peak_time=alert.peak_time.isoformat())
            return []
        elif isinstance(message, (m.ModelPromoted, m.ModelRolledBack)):
            await self._know_version(core, message.version, refresh=True)
            return []
        else:
            return []
        return resolutions

    async def _know_version(self, core: Evaluator, version: str, refresh: bool = False) -> None:
        if refresh or version not in core.references:
            core.references[version] = await self._with_database(lambda conn: store.registry_reference(conn, version))

    async def _settle(self, core: Evaluator, resolutions: list[Resolution]) -> None:
        # On the broker before they are stored: a crash after the write would otherwise leave an outcome that
        # PostgreSQL holds and the outcomes topic never gets (the forecast is no longer pending to resolve again).
        await self.inputs.publisher.publish_many(self.outcomes_topic, [resolution.message() for resolution in
                                                                        resolutions])
        # each write is waited out on its own: settling (in memory) must happen once, after the outcomes are stored
        await self._with_database(lambda conn: store.record_outcomes(conn, resolutions))
        settled = core.settle(resolutions)
        for episode in settled.episodes:
            if episode.cleared_ns is None:
                await send(self.alerts, episode.alert())
                log.warning("alert.metric_drift", model_version=episode.model_version, metric=episode.breach.metric,
                            value=episode.breach.value, baseline=episode.breach.baseline,
                            threshold=episode.breach.threshold)
            else:
                log.info("drift.cleared", model_version=episode.model_version, ordinal=episode.ordinal)
            await self._with_database(lambda conn, episode=episode: store.record_episode(conn, episode))
        for key, as_of in settled.dirty.items():
            self.dirty[key] = max(self.dirty.get(key, 0), as_of)

    async def publish_metrics(self) -> None:
        if self.core is None or not self.dirty or time.monotonic() < self._metrics_not_before:
            return
        started = time.monotonic()
        dirty, self.dirty = self.dirty, {}
        updates = [update for key, as_of in sorted(dirty.items()) for update in self.core.metrics(key, as_of)]
        # years of forecasts make the cumulative window costly (the C-index most): keep it under a fifth of the time
        self._metrics_not_before = time.monotonic() + 4 * (time.monotonic() - started)
        for update in updates:
            await send(self.metrics_topic, update)
        await self._with_database(lambda conn: store.record_metrics(conn, updates))
        record_skill(updates)

    async def close(self, *_: object, **__: object) -> None:
        await self.inputs.stop()
        if self._pool is not None:
            await self._pool.close()


def build_app(settings: Settings, endpoints: infra.Endpoints) -> faust.App:
    app = make_app(settings.evaluator.app_name, settings, endpoints.kafka_bootstrap_servers)
    worker = EvaluatorWorker(app, settings, endpoints.database_url, endpoints.kafka_bootstrap_servers)
    app.agent(worker.lifecycle_topic, name="lifecycle")(worker.on_lifecycle)
    app.task(worker.read)
    app.timer(METRICS_INTERVAL_SECONDS)(worker.publish_metrics)
    serve_in_worker(app, create_api(settings, worker.pool), settings.bind_host, settings.evaluator_port)
    log.info("evaluator.api", url=f"http://{settings.bind_host}:{settings.evaluator_port}/metrics/performance")
    app.task(BrokerWatch(endpoints.kafka_bootstrap_servers, SERVICE).run)
    app.on_before_shutdown.connect(worker.close)
    return app


def main() -> None:
    settings = get_settings()
    configure_logging(SERVICE, level=settings.log_level)
    endpoints = asyncio.run(infra.prepare_service(settings))
    run_faust_worker(build_app(settings, endpoints))
