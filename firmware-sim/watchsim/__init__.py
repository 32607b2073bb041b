"""Simulated Anxin watches (``anxin sim`` / ``python -m watchsim``).

Pure logic: ``walk`` (where the wearer is), ``watch`` (one watch's firmware: seq, battery,
offline buffer, alarms), ``alarms`` and ``batches`` (its delivery rules). The MQTT edge:
``link`` (one paho client per watch) and ``fleet`` (one scheduler loop for all of them).
In-process use: ``Fleet(FleetConfig(broker=MqttTarget(host, port), ...)).run()``.
"""
