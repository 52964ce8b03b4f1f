"""The running predictor: a faust worker with an agent for the model lifecycle, a bulk reader of the
observations (flux and flares), and the REST API served in the same event loop, so the stream and the API share
the models.

The observations are read with aiokafka (`shared.streaming.BulkReader`), not faust agents, by one consumer that
reads the flux only while no flare waits, so the flux cannot run ahead of the flares. It takes them in batches
(one record at a time live, thousands when behind) and hands the readings to `Predictor.on_flux` in order; a
batch's offsets are committed once its forecasts are published and logged, so a crash in between reads it again
(and the forecasts the log holds are not issued twice).
"""

from __future__ import annotations

from typing import Sequence

import faust

from services.predictor.api import build_api
from services.predictor.service import Predictor
from shared import infra
from shared import messages as m
from shared.broker_watch import BrokerWatch
from shared.logging import bind_correlation, get_logger
from shared.serving import serve_in_worker
from shared.settings import Settings
from shared.streaming import Acceptor, BulkReader, make_app, raw_topic
from shared.topics import topic_registry

log = get_logger(__name__)
SERVICE = "predictor"
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
        self.observations = BulkReader(
            app, [topics["flux"], topics["flares"]], bootstrap_servers=endpoints.kafka_bootstrap_servers,
            group="observations", service=SERVICE, dead_letter_topic=topics["dead_letters"].name,
            held_back=[topics["flux"].name])
        self.predictor.flux_lag = lambda: self.observations.lag(topics["flux"].name)

    async def start(self) -> None:
        await self.predictor.start()
        log.info("predictor.api", url=f"http://{self.settings.bind_host}:{self.settings.api_port}/docs")

    async def publish(self, forecasts: Sequence[m.ForecastIssued]) -> None:
        assert self.observations.publisher is not None, "forecasts come from the flux, read once it is started"
        await self.observations.publisher.publish_many(self.forecasts_topic, forecasts)

    async def read_observations(self) -> None:
        # an error stops the worker (faust crashes the app when a task raises) before the batch is committed, so
        # the restarted service reads it again
        await self.observations.start()
        async for received in self.observations.batches():
            await self.predictor.ready.wait()
            readings = []
            for item in received:
                if isinstance(item.message, m.FlareObserved):  # held until the flux reaches the time it is known
                    self.predictor.on_flare(item.message)
                else:
                    readings.append(item.message)
            if readings:
                with bind_correlation(readings[-1].correlation_id):
                    await self.predictor.on_flux(readings, self.publish)
            await self.observations.done()

    async def on_lifecycle(self, stream) -> None:
        async for event in stream.events():
            await self.predictor.ready.wait()
            message = await self.lifecycle.accept(event)
            if isinstance(message, LIFECYCLE_SIGNALS):
                with bind_correlation(message.correlation_id):
                    await self.predictor.reload_models(f"{message.type} {getattr(message, 'version', None)}")

    async def close(self, *_: object, **__: object) -> None:
        await self.observations.stop()
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
