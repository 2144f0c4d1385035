"""The scheduler: a pure Gantt core and the metascheduler adapter."""
