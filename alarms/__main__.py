"""``python -m alarms synth|apply|replay``."""

from alarms._cli import main

if __name__ == "__main__":
    raise SystemExit(main())
