"""Scheduling: slots of cron, every and at; the tick state; one tick; launching runs."""
