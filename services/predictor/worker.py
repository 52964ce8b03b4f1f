"""The running predictor: a faust worker with agents for flux, flares and the model lifecycle, and the REST API
served by uvicorn in the same event loop, so the stream and the API share the loaded models.

The flux agent takes the stream in batches (a replay of years is millions of readings) and hands them to
`Predictor.on_flux` in order; the batch is acknowledged once its forecasts are published and logged.
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
from shared.streaming import Acceptor, make_app, raw_topic, send
from shared.topics import topic_registry

log = get_logger(__name__)
SERVICE = "predictor"
FLUX_BATCH = 2000
FLUX_BATCH_SECONDS = 0.05  # in live mode a reading waits at most this long for company
LIFECYCLE_SIGNALS = (m.ModelPromoted, m.ModelRolledBack, m.ChallengerChanged)


class PredictorWorker:
    def __init__(self, app: faust.App, settings: Settings, endpoints: infra.Endpoints):
        self.app = app
        self.settings = settings
        topics = topic_registry(settings)
        self.predictor = Predictor(settings, endpoints.database_url, endpoints.kafka_bootstrap_servers)
        self.flux_topic = raw_topic(app, topics["flux"])
        self.flare_topic = raw_topic(app, topics["flares"])
        self.lifecycle_topic = raw_topic(app, topics["lifecycle"])
        self.forecasts = raw_topic(app, topics["forecasts"])
        self.acceptors = {
            role: Acceptor(app, SERVICE, topics[role], topics["dead_letters"])
            for role in ("flux", "flares", "lifecycle")
        }

    async def start(self) -> None:
        await self.predictor.start()
        flux_partition = faust.types.TP(self.flux_topic.get_topic_name(), 0)
        self.predictor.position.highwater = lambda: self._highwater(flux_partition)
        log.info("predictor.api", url=f"http://{self.settings.bind_host}:{self.settings.api_port}/docs")

    def _highwater(self, tp) -> int | None:
        try:
            return self.app.consumer.highwater(tp)
        except Exception:  # the partition is not assigned yet (aiokafka asserts it); /health must answer anyway
            return None

    async def publish(self, forecasts: Sequence[m.ForecastIssued]) -> None:
        for forecast in forecasts:
            await send(self.forecasts, forecast)
        if forecasts:
            await self.app.producer.flush()

    async def on_flux(self, stream) -> None:
        async for events in stream.take_events(FLUX_BATCH, within=FLUX_BATCH_SECONDS):
            await self.predictor.ready.wait()
            readings = []
            for event in events:
                reading = await self.acceptors["flux"].accept(event)
                if reading is not None:
                    readings.append(reading)
            with bind_correlation(readings[-1].correlation_id if readings else None):
                await self.predictor.on_flux(readings, self.publish)
            self.predictor.position.processed_offset = events[-1].message.offset

    async def on_flares(self, stream) -> None:
        async for event in stream.events():
            await self.predictor.ready.wait()
            flare = await self.acceptors["flares"].accept(event)
            if flare is not None:
                self.predictor.on_flare(flare)

    async def on_lifecycle(self, stream) -> None:
        async for event in stream.events():
            await self.predictor.ready.wait()
            message = await self.acceptors["lifecycle"].accept(event)
            if isinstance(message, LIFECYCLE_SIGNALS):
                with bind_correlation(message.correlation_id):
                    await self.predictor.reload_models(f"{message.type} {getattr(message, 'version', None)}")

    async def close(self, *_: object, **__: object) -> None:
        await self.predictor.stop()


def build_app(settings: Settings, endpoints: infra.Endpoints) -> faust.App:
    app = make_app(settings.predictor.app_name, settings, endpoints.kafka_bootstrap_servers)
    worker = PredictorWorker(app, settings, endpoints)
    app.task(worker.start)
    app.agent(worker.flux_topic, name="flux")(worker.on_flux)
    app.agent(worker.flare_topic, name="flares")(worker.on_flares)
    app.agent(worker.lifecycle_topic, name="lifecycle")(worker.on_lifecycle)
    # the API answers once the champion is loaded (or known to be missing), as the stream does
    serve_in_worker(app, build_api(worker.predictor), settings.bind_host, settings.api_port,
                    ready=worker.predictor.ready)
    app.task(BrokerWatch(endpoints.kafka_bootstrap_servers, SERVICE).run)
    app.on_before_shutdown.connect(worker.close)
    return app
