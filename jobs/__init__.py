"""Job modules written by data scientists: each defines ``run(ctx)``."""
