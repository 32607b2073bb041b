"""``mqtt://user:pass@host:port`` → connection parameters, for every MQTT client we run."""

from __future__ import annotations

import time
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion


@dataclass(frozen=True)
class MqttTarget:
    host: str
    port: int
    username: str | None = None
    password: str | None = None
    tls: bool = False

    def redacted(self) -> str:
        """For logs: never the password."""
        user = f"{self.username}@" if self.username else ""
        return f"{'mqtts' if self.tls else 'mqtt'}://{user}{self.host}:{self.port}"

    def client(self, client_id: str, *, manual_ack: bool = False) -> mqtt.Client:
        """An MQTT 5 paho client for this broker, logged in and with TLS as the URL says
        (connecting, callbacks and reconnect delays are the caller's)."""
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=mqtt.MQTTv5,
            manual_ack=manual_ack,
        )
        if self.username:
            client.username_pw_set(self.username, self.password)
        if self.tls:
            client.tls_set()
        return client


def parse_mqtt_url(url: str) -> MqttTarget:
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts", "tcp"):
        raise ValueError(f"MQTT URL must start with mqtt:// or mqtts://, got {parts.scheme!r}")
    tls = parts.scheme == "mqtts"
    return MqttTarget(
        host=parts.hostname or "127.0.0.1",
        port=parts.port or (8883 if tls else 1883),
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        tls=tls,
    )


def note_packets_sent(client: mqtt.Client) -> None:
    """Tell paho that packets (our PUBACKs) are on their way out, so its keep-alive timer
    sees the traffic.

    paho 2.2 refreshes its "last packet out" time only when its write loop stops part-way,
    not when the loop empties its queue (eclipse-paho/paho.mqtt.python#813), so a consumer
    whose only output is PUBACKs sends a PINGREQ every keep-alive interval however busy it
    is. Mosquitto queues the PINGRESP behind every message it holds for that client: with a
    backlog (measured: 44 s behind 110,000 messages) paho then declared the link dead
    ("Keep alive timeout"), reconnected, and the broker redelivered the whole in-flight
    window as duplicates. Called right after ``ack()``, whose PUBACKs the network thread
    writes at once."""
    with client._msgtime_mutex:  # paho's own lock for these two timestamps
        client._last_msg_out = time.monotonic()  # paho's clock (time_func) is monotonic
