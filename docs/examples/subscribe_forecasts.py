"""Print the >=M flare probability of every forecast Flare+ publishes (marking the degraded ones, made without
flux; leaving out a challenger's, made in shadow), and every alert it raises.

Any Kafka client will do; this one uses aiokafka and nothing of Flare+ (the messages are described in
docs/asyncapi.json). Usage: python subscribe_forecasts.py [BOOTSTRAP [FORECASTS_TOPIC ALERTS_TOPIC]]
"""
import asyncio
import json
import sys

from aiokafka import AIOKafkaConsumer


async def main(bootstrap: str = "127.0.0.1:9092", *topics: str) -> None:
    consumer = AIOKafkaConsumer(*(topics or ("forecasts", "alerts")), bootstrap_servers=bootstrap,
                                group_id="forecast-printer", auto_offset_reset="earliest")
    await consumer.start()
    seen = set()  # delivery is at least once: a message may come again, with the same message_id
    try:
        async for record in consumer:
            msg = json.loads(record.value)
            if msg["message_id"] in seen:
                continue
            seen.add(msg["message_id"])
            if msg["type"] == "ForecastIssued" and msg["shadow"]:
                continue  # a challenger's forecast, scored in shadow: not the service's forecast
            if msg["type"] == "ForecastIssued" and msg["status"] == "ok":
                p = msg["survival"]["M"]["probability_within_24h"]
                # degraded: no flux to forecast from, so the flare-history model's forecast
                note = f"  DEGRADED ({msg['reason']})" if msg["degraded"] else ""
                print(f"{msg['event_time']}  P(>=M in 24 h) = {p:.3f}  model {msg['model_version']}{note}", flush=True)
            elif msg["type"] == "ForecastIssued":
                print(f"{msg['event_time']}  no forecast: {msg['reason']}", flush=True)
            elif msg["type"] == "MetricDrift":
                print(f"{msg['event_time']}  ALERT {msg['model_version']}: {msg['metric']} = {msg['value']:.3f} "
                      f"over {msg['window']} (threshold {msg['threshold']})", flush=True)
            elif msg["type"] == "XClassFlareObserved":
                print(f"{msg['event_time']}  ALERT X-class flare {msg['goes_class']} peaked", flush=True)
    finally:
        await consumer.stop()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:]))
