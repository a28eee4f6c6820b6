"""The durable sync workflow: steps as plain functions, a runner that checkpoints them."""
