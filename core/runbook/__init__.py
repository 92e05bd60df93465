"""The runbook room: the tutorial as eight verified steps (steps.py) and the engine that applies them (runbook.py)."""
