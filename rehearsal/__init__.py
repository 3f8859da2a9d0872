"""Blue/green deployment with alarm-triggered rollback, rehearsed on one machine.

``python -m rehearsal --scenario regression`` (what ``make demo`` runs); as a library::

    from rehearsal import Options, run
    outcome = run(Options(scenario="regression", out=Path("out/demo")))
    outcome.result["outcome"]  # "rolled_back"
"""

from rehearsal.listener import WeightedListener
from rehearsal.runner import Options, Outcome, run
from rehearsal.schedule import PREDEFINED, ConfigError, Schedule, Step, build

__all__ = [
    "PREDEFINED",
    "ConfigError",
    "Options",
    "Outcome",
    "Schedule",
    "Step",
    "WeightedListener",
    "build",
    "run",
]
