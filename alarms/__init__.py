"""Generate CloudWatch alarms, dashboards and CodeDeploy rollback configuration; replay EMF offline.

```python
from alarms import load_spec, synth, Evaluator, rollback_alarm_names
spec = load_spec("alarms/specs/points-service.yaml")
defs = synth(spec, format="json", profile="rehearsal")
ev = Evaluator(defs)
ev.ingest_line(line); ev.advance(now)
```
"""

from __future__ import annotations

from pathlib import Path

from ._emf import decode_line as decode_emf
from ._evaluator import Evaluation, Evaluator
from ._expr import ExpressionError
from ._format import number_text, value_text
from ._policy import MAX_DEPLOYMENT_ALARMS
from ._rules import decide
from ._spec import Profile, Spec, SpecError, load_spec, parse_spec, read_spec_document
from ._synth import rollback_alarm_names, synth, worker_rollback_alarm_names

#: The points service's own spec (shipped as package data).
POINTS_SERVICE_SPEC = Path(__file__).with_name("specs") / "points-service.yaml"

__all__ = [
    "MAX_DEPLOYMENT_ALARMS",
    "POINTS_SERVICE_SPEC",
    "Evaluation",
    "Evaluator",
    "ExpressionError",
    "Profile",
    "Spec",
    "SpecError",
    "decide",
    "decode_emf",
    "load_spec",
    "number_text",
    "parse_spec",
    "read_spec_document",
    "rollback_alarm_names",
    "synth",
    "value_text",
    "worker_rollback_alarm_names",
]
