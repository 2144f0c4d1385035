"""oar-server: the OAR server (Almighty automaton, launcher, Leon, NodeChangeState,
metascheduler and periodic modules), in the foreground until SIGTERM or SIGINT."""

from __future__ import annotations

import logging
import os
import signal

from .common import Context, make_parser, run_command

#: OAR's LOG_LEVEL: 1 errors, 2 warnings, 3 everything
LOG_LEVELS = {0: logging.ERROR, 1: logging.ERROR, 2: logging.WARNING, 3: logging.DEBUG}


def build_parser():
    return make_parser(
        "oar-server",
        "Run the OAR server in the foreground: it schedules, launches, kills and ends jobs, "
        "and listens on SERVER_PORT for notifications and oarexec's end reports. Logs go to "
        "LOG_FILE at LOG_LEVEL (1 errors, 2 warnings, 3 everything). SIGTERM or SIGINT stops "
        "it cleanly. Administrators only.",
    )


def setup_logging(path: str, level: int) -> None:
    handler: logging.Handler
    try:
        handler = logging.FileHandler(path)
    except OSError:
        handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s [%(threadName)s] %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(LOG_LEVELS.get(level, logging.DEBUG if level > 3 else logging.WARNING))
    for noisy in ("apscheduler", "peewee"):
        logging.getLogger(noisy).setLevel(max(root.level, logging.WARNING))


def run(args, ctx: Context) -> int:
    from ..daemons.server import Server

    ctx.require_admin()
    setup_logging(ctx.config["LOG_FILE"], int(ctx.config["LOG_LEVEL"]))
    server = Server(ctx.config, ctx.db, env=dict(os.environ))

    def stop(signum, frame):
        server.stopping.set()
        server.wake()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    server.initialize()
    try:
        server.serve()
    finally:
        server.shutdown()
    return 0


def main(argv=None) -> int:
    return run_command(build_parser(), run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
