"""Blue/green deployment with alarm-triggered rollback, rehearsed on one machine.

``python -m rehearsal --scenario regression`` (what ``make demo`` runs); as a library::

    from rehearsal import Options, run
    outcome = run(Options(scenario="regression", out=Path("out/demo")))
    outcome.result["outcome"]  # "rolled_back"
"""

from rehearsal.listener import WeightedListener
from rehearsal.model import Decision, Options, Outcome
from rehearsal.runner import run
from rehearsal.schedule import PREDEFINED, ConfigError, Schedule, Step, build

__all__ = [
    "PREDEFINED",
    "ConfigError",
    "Decision",
    "Options",
    "Outcome",
    "Schedule",
    "Step",
    "WeightedListener",
    "build",
    "run",
]
