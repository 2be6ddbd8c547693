"""Configuration: the guide's ProductionConfig plus the environment it reads."""
