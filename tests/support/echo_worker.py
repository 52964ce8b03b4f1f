"""A faust worker built the way services build theirs: it accepts flux messages and echoes the accepted
ones to `<flux topic>.echo`, so a test can see what the agent took and what it dead-lettered."""

import sys

from shared.settings import get_settings
from shared.streaming import Acceptor, make_app, raw_topic, send
from shared.topics import topic_registry

settings = get_settings()
topics = topic_registry(settings)
app = make_app("echo-test", settings, settings.kafka_bootstrap_servers)
acceptor = Acceptor(app, "echo-test", topics["flux"], topics["dead_letters"])
echo = app.topic(f"{topics['flux'].name}.echo", value_serializer="raw", key_serializer="raw")


@app.agent(raw_topic(app, topics["flux"]))
async def echo_flux(stream):
    async for event in stream.events():
        message = await acceptor.accept(event)
        if message is not None:
            await send(echo, message)


if __name__ == "__main__":
    sys.argv = [sys.argv[0], "worker", "--loglevel", "warn", "--without-web"]
    app.main()
