"""Steps of a central -> site run (placeholder until the reverse mapping lands)."""
STEPS: dict = {}
