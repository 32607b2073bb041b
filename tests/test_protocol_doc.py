"""docs/protocol.md is part of the contract: every example in it must parse with the models."""

from __future__ import annotations

import json
import re

import pytest

from services.protocol import UPLINK_MODELS, AlarmReceipt, Batch, UplinkKind
from tests.support.procs import ROOT

DOC = (ROOT / "docs" / "protocol.md").read_text()
EXAMPLES = re.findall(r"<!-- example: (\w+) -->\s*```json\n(.*?)```", DOC, re.S)


def test_the_doc_has_an_example_of_every_message() -> None:
    kinds = {k for k, _ in EXAMPLES}
    assert kinds == {k.value for k in UplinkKind} | {"cmd"}


@pytest.mark.parametrize(("kind", "body"), EXAMPLES)
def test_doc_example_parses(kind: str, body: str) -> None:
    raw = json.loads(body)
    if kind == "cmd":
        AlarmReceipt.model_validate(raw)
        return
    model = UPLINK_MODELS[UplinkKind(kind)].model_validate(raw)
    if isinstance(model, Batch):  # batch items are the single-message models
        for item in model.fixes:
            UPLINK_MODELS[UplinkKind.LOC].model_validate(item)
        for item in model.alarms:
            UPLINK_MODELS[UplinkKind.ALARM].model_validate(item)
