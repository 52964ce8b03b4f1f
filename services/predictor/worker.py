"""The running predictor: a faust worker with an agent for the model lifecycle, a task reading the observations
(flux and flares), and the REST API served in the same event loop, so the stream and the API share the models.

The observations are read with aiokafka, not faust agents: a replay of years is millions of readings, and
faust's handling of each record (measured by `tests/bench/faust_floor.py`: about 3,000 records/s on 2 cores,
whatever the agent does with them) would cap a replay at a tenth of what the broker delivers. One consumer
reads both topics, the flux only while no flare waits, so the flux cannot run ahead of the flares. It takes
them in batches (one record at a time live, up to BATCH when behind) and hands the readings to
`Predictor.on_flux` in order; a batch's offsets are committed once its forecasts are published and logged,
so a crash in between reads it again (and the forecasts the log holds are not issued twice).
"""

from __future__ import annotations

from typing import Sequence

import faust

from services.predictor.api import build_api
from services.predictor.service import Predictor
from shared import infra
from shared import messages as m
from shared.broker_watch import BrokerWatch
from shared.kafka import LIVE_FETCH_WAIT_MS, Publisher, TypedConsumer
from shared.logging import bind_correlation, get_logger
from shared.serving import serve_in_worker
from shared.settings import Settings
from shared.streaming import Acceptor, make_app, raw_topic
from shared.topics import topic_registry

log = get_logger(__name__)
SERVICE = "predictor"
BATCH = 2000
POLL_MS = 500  # how long a read waits for the first record; a record already there is taken at once
LIFECYCLE_SIGNALS = (m.ModelPromoted, m.ModelRolledBack, m.ChallengerChanged)


class PredictorWorker:
    def __init__(self, app: faust.App, settings: Settings, endpoints: infra.Endpoints):
        self.app = app
        self.settings = settings
        topics = topic_registry(settings)
        self.predictor = Predictor(settings, endpoints.database_url, endpoints.kafka_bootstrap_servers)
        self.lifecycle_topic = raw_topic(app, topics["lifecycle"])
        self.lifecycle = Acceptor(app, SERVICE, topics["lifecycle"], topics["dead_letters"])
        self.forecasts_topic = topics["forecasts"].name
        self.observations = [topics["flux"], topics["flares"]]
        self.flux_topic = topics["flux"].name
        self.dead_letters_topic = topics["dead_letters"].name
        self.bootstrap_servers = endpoints.kafka_bootstrap_servers
        # the aiokafka clients are made on the worker's event loop, which faust starts after building the app
        self.publisher: Publisher | None = None
        self.observed: TypedConsumer | None = None
        flux_partition = faust.types.TP(self.flux_topic, 0)
        self.predictor.position.highwater = lambda: self.observed.highwater(flux_partition) if self.observed else None

    async def start(self) -> None:
        await self.predictor.start()
        log.info("predictor.api", url=f"http://{self.settings.bind_host}:{self.settings.api_port}/docs")

    async def publish(self, forecasts: Sequence[m.ForecastIssued]) -> None:
        assert self.publisher is not None, "forecasts come from the flux, read once the publisher is started"
        await self.publisher.publish_many(self.forecasts_topic, forecasts)

    async def read_observations(self) -> None:
        # an error stops the worker (faust crashes the app when a task raises) before the batch is committed, so
        # the restarted service reads it again
        self.publisher = Publisher(self.bootstrap_servers)
        self.observed = TypedConsumer(
            self.bootstrap_servers, self.observations, group_id=f"{self.app.conf.id}-observations", service=SERVICE,
            dead_letter_topic=self.dead_letters_topic, publisher=self.publisher, held_back=[self.flux_topic],
            fetch_max_wait_ms=LIVE_FETCH_WAIT_MS)
        await self.publisher.start()
        await self.observed.start()
        async for received in self.observed.batches(timeout_ms=POLL_MS, max_records=BATCH):
            await self.predictor.ready.wait()
            readings = []
            for item in received:
                if isinstance(item.message, m.FlareObserved):  # held until the flux reaches the time it is known
                    self.predictor.on_flare(item.message)
                else:
                    readings.append(item.message)
                    self.predictor.position.processed_offset = item.offset
            if readings:
                with bind_correlation(readings[-1].correlation_id):
                    await self.predictor.on_flux(readings, self.publish)
            await self.observed.commit()  # a batch of refused records only is done with too: they are dead-lettered

    async def on_lifecycle(self, stream) -> None:
        async for event in stream.events():
            await self.predictor.ready.wait()
            message = await self.lifecycle.accept(event)
            if isinstance(message, LIFECYCLE_SIGNALS):
                with bind_correlation(message.correlation_id):
                    await self.predictor.reload_models(f"{message.type} {getattr(message, 'version', None)}")

    async def close(self, *_: object, **__: object) -> None:
        for client in (self.observed, self.publisher):
            if client is not None:
                await client.stop()
        await self.predictor.stop()


def build_app(settings: Settings, endpoints: infra.Endpoints) -> faust.App:
    app = make_app(settings.predictor.app_name, settings, endpoints.kafka_bootstrap_servers)
    worker = PredictorWorker(app, settings, endpoints)
    app.task(worker.start)
    app.task(worker.read_observations)
    app.agent(worker.lifecycle_topic, name="lifecycle")(worker.on_lifecycle)
    # the API answers once the champion is loaded (or known to be missing), as the stream does
    serve_in_worker(app, build_api(worker.predictor), settings.bind_host, settings.api_port,
                    ready=worker.predictor.ready)
    app.task(BrokerWatch(endpoints.kafka_bootstrap_servers, SERVICE).run)
    app.on_before_shutdown.connect(worker.close)
    return app
