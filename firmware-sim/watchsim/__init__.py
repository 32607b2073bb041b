"""Simulated Anxin watches (``anxin sim`` / ``python -m watchsim``).

Pure logic: ``walk`` (where the wearer is), ``watch`` (one watch's firmware: seq, battery,
offline buffer, alarms), ``alarms`` and ``batches`` (its delivery rules), ``scenarios``
(scripted wearers: wander off, stay put) and ``clock`` (device time: may start in the past
and run fast, never ahead of the real clock). The MQTT edge:
``link`` (one paho client per watch) and ``fleet`` (one scheduler loop for all of them).
In-process use: ``Fleet(FleetConfig(broker=MqttTarget(host, port), ...)).run()``.
"""
