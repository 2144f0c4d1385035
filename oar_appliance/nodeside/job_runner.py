"""The detached part of oarexec: prologue, command, epilogue, signals, end report.

Signals are handled in one loop: the handlers only queue the signal and wake the loop
through :func:`signal.set_wakeup_fd`, and the loop acts on it between two waits.

* ``SIGTERM`` kills the job: TERM to its processes, KILL to what is left after
  ``kill_grace`` seconds (job data, default 5); the code becomes 3.
* ``SIGUSR2`` sends ``checkpoint_signal`` to the command's process group (40), or
  records that it could not (41: no command running, unknown signal).
* ``SIGURG`` sends the signal named in ``job_<jobid>.signal`` (42 when sent).

The final code: 3 (killed) > 1 (prologue) > 7/12 (command could not start) > 2 (epilogue)
> 41 > 40 > 42 > 0.
"""

from __future__ import annotations

import fcntl
import logging
import os
import select
import signal
import subprocess
import time
from typing import Callable

from oar_appliance.nodeside.oarexec import HANDLED_SIGNALS, Codes, PreparedJob
from oar_appliance.nodeside.report import end_report, send_until_acknowledged
from oar_appliance.nodeside.runtime import job_processes, remove_files, signal_number
from oar_appliance.nodeside.terminal import default_signal_dispositions

log = logging.getLogger("oar_appliance.oarexec")

__all__ = ["JobRunner"]

#: how often the loop looks again when nothing woke it (interactive status file)
POLL_INTERVAL = 0.25


class JobRunner:
    """Runs a :class:`PreparedJob` in the detached oarexec."""

    def __init__(self, job: PreparedJob):
        self.job = job
        self.data = job.data
        self.pending: list[int] = []
        self.killed = False
        self.kill_deadline: float | None = None
        self.kill_grace = float(self.data.get("kill_grace", 5))
        self.checkpointed = False
        self.checkpoint_failed = False
        self.user_signalled = False
        self.command_pid: int | None = None
        self.processes = job_processes(job.files, exclude={os.getpid()})
        self._wake_r, self._wake_w = os.pipe()
        for fd in (self._wake_r, self._wake_w):
            flags = fcntl.fcntl(fd, fcntl.F_GETFL)
            fcntl.fcntl(fd, fcntl.F_SETFL, flags | os.O_NONBLOCK)

    # ---------------------------------------------------------------- signals and waiting

    def _on_signal(self, signum: int, frame: object) -> None:
        self.pending.append(signum)

    def _install_handlers(self) -> None:
        signal.set_wakeup_fd(self._wake_w)
        for sig in HANDLED_SIGNALS:
            signal.signal(sig, self._on_signal)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, HANDLED_SIGNALS)

    def _wait(self, done: Callable[[], bool], deadline: float | None = None) -> bool:
        """Handle signals until ``done()``; False if ``deadline`` passed first."""
        while True:
            self._handle_pending()
            if done():
                return True
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                return False
            timeout = POLL_INTERVAL
            if deadline is not None:
                timeout = min(timeout, deadline - now)
            if self.kill_deadline is not None:
                timeout = max(0.0, min(timeout, self.kill_deadline - now))
            select.select([self._wake_r], [], [], timeout)
            try:
                while os.read(self._wake_r, 512):
                    pass
            except BlockingIOError:
                pass
            if self.kill_deadline is not None and time.monotonic() >= self.kill_deadline:
                log.info("grace time over: KILL to the job's processes")
                self.processes.signal(signal.SIGKILL)
                self.kill_deadline = None

    def _handle_pending(self) -> None:
        while self.pending:
            signum = self.pending.pop(0)
            if signum == signal.SIGTERM:
                self._kill()
            elif signum == signal.SIGUSR2:
                self._checkpoint()
            elif signum == signal.SIGURG:
                self._user_signal()

    def _kill(self) -> None:
        if self.killed:
            return
        log.info("kill requested")
        self.killed = True
        self.processes.signal(signal.SIGTERM)
        self.processes.resume()  # a suspended (frozen, stopped) job must run to die
        self.kill_deadline = time.monotonic() + self.kill_grace

    def _send_to_command(self, sig: int) -> bool:
        if self.command_pid is None or self.killed:
            return False
        try:
            os.killpg(self.command_pid, sig)
            return True
        except OSError as exc:
            log.warning("cannot send signal %d to the job: %s", sig, exc)
            return False

    def _checkpoint(self) -> None:
        try:
            sig = signal_number(self.data.get("checkpoint_signal") or "SIGUSR2")
        except ValueError as exc:
            log.warning("checkpoint: %s", exc)
            self.checkpoint_failed = True
            return
        if self._send_to_command(sig):
            log.info("checkpoint signal %d sent", sig)
            self.checkpointed = True
        else:
            self.checkpoint_failed = True

    def _user_signal(self) -> None:
        path = self.job.files.signal
        try:
            with open(path, encoding="utf-8") as stream:
                name = stream.read().strip()
            os.unlink(path)
        except OSError as exc:
            log.warning("user signal: cannot read %s: %s", path, exc)
            return
        try:
            sig = signal_number(name)
        except ValueError as exc:
            log.warning("user signal: %s", exc)
            return
        if self._send_to_command(sig):
            log.info("user signal %d sent", sig)
            self.user_signalled = True

    # ---------------------------------------------------------------- phases

    def run(self) -> int:
        """Run the job to its end and report; returns the reported code."""
        self._install_handlers()
        self._write_pgid("-")
        self.processes = job_processes(self.job.files, exclude={os.getpid()})
        try:
            code, user_status = self._run_job()
        except Exception:  # a failure of oarexec itself: the server must still hear of it
            log.exception("oarexec failed while running the job")
            self.processes.kill_all(self.kill_grace)
            code, user_status = Codes.INTERNAL, None
        job = self.job
        report = end_report(job.job_id, str(self.data["challenge"]), code, user_status, job.host)
        log.info("end of job: code %d, user status %s", code, user_status)
        server = self.data["server"]
        send_until_acknowledged(
            str(server["host"]), int(server["port"]), report,
            try_timeout=float(self.data.get("report_try_timeout", 5.0)),
            max_backoff=float(self.data.get("report_max_backoff", 30.0)),
        )
        remove_files([job.files.pid])
        return code

    def _run_job(self) -> tuple[int, int | None]:
        job = self.job
        prologue = self.data.get("prologue")
        script_timeout = float(self.data.get("prologue_timeout") or 60)
        if prologue and not self._run_script(prologue, script_timeout, "prologue"):
            return (Codes.KILLED if self.killed else Codes.PROLOGUE), None
        if self.killed:
            return Codes.KILLED, None
        if job.interactive:
            user_status, start_code = self._wait_interactive(), Codes.OK
        else:
            start_code, user_status = self._run_command()
        epilogue_ok = True
        epilogue = self.data.get("epilogue")
        if epilogue:
            epilogue_ok = self._run_script(epilogue, script_timeout, "epilogue")
        if self.killed:
            return Codes.KILLED, user_status
        if start_code:
            return start_code, user_status
        if not epilogue_ok:
            return Codes.EPILOGUE, user_status
        if self.checkpoint_failed:
            return Codes.CHECKPOINT_ERROR, user_status
        if self.checkpointed:
            return Codes.CHECKPOINT, user_status
        if self.user_signalled:
            return Codes.USER_SIGNAL, user_status
        return Codes.OK, user_status

    def _run_script(self, path: str, timeout: float, what: str) -> bool:
        """Run a node prologue/epilogue (as oarexec's account) with job id, user and node file."""
        job = self.job
        argv = [path, str(job.job_id), job.user.pw_name, job.files.nodefile]
        try:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, env=job.env, cwd="/",
                                    start_new_session=True)
        except OSError as exc:
            log.error("cannot run the %s %s: %s", what, path, exc)
            return False
        finished = self._wait(lambda: proc.poll() is not None, time.monotonic() + timeout)
        if not finished:
            log.error("the %s %s timed out after %g s", what, path, timeout)
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except OSError:
                pass
            proc.wait()
            return False
        if proc.returncode != 0:
            log.error("the %s %s exited with %d", what, path, proc.returncode)
        return proc.returncode == 0

    def _write_pgid(self, pgid: str) -> None:
        """Tell jobctl where the job's processes are: process group and session."""
        path = self.job.files.pgid
        try:
            with open(path + ".new", "w", encoding="ascii") as stream:
                stream.write(f"{pgid} {os.getsid(0)}\n")
            os.replace(path + ".new", path)
        except OSError as exc:
            log.warning("cannot write %s: %s", path, exc)

    def _run_command(self) -> tuple[int, int | None]:
        """Start the command in its own process group, wait for it; (code, wait status)."""
        job = self.job
        err_r, err_w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(err_r)
            self._exec_command(err_w)  # never returns
        os.close(err_w)
        try:
            os.setpgid(pid, pid)  # also done in the child: whichever runs first
        except OSError:
            pass
        failure = b""
        while True:
            chunk = os.read(err_r, 4096)
            if not chunk:
                break
            failure += chunk
        os.close(err_r)
        self.command_pid = pid
        if failure:
            _, status = os.waitpid(pid, 0)
            code_text, _, message = failure.decode(errors="replace").partition(" ")
            log.error("the command could not start: %s", message)
            self.command_pid = None
            return int(code_text), None
        self._write_pgid(str(pid))
        self.processes = job_processes(job.files, exclude={os.getpid()})
        for fd in {job.stdout_fd, job.stderr_fd}:
            if fd is not None:
                os.close(fd)
        result: list[int] = []

        def reaped() -> bool:
            if not result:
                done, status = os.waitpid(pid, os.WNOHANG)
                if done:
                    result.append(status)
            return bool(result)

        self._wait(reaped)
        self.command_pid = None
        if self.killed:
            # what survived the shell: wait for the end of the grace time, then KILL
            if self.kill_deadline is not None:
                self._wait(lambda: not self.processes.pids(), self.kill_deadline)
            self.processes.kill_all(0)
        return Codes.OK, result[0]

    def _exec_command(self, err_w: int) -> None:
        """In the forked child: become the job's user and exec its shell with the command."""
        job = self.job
        code = Codes.USER_SHELL
        try:
            signal.set_wakeup_fd(-1)
            default_signal_dispositions()
            os.setpgid(0, 0)
            if job.manager is not None:
                # into the job's cgroup before anything of the user runs (still as root);
                # every process it starts, setsid or not, stays there
                code = Codes.INTERNAL
                job.manager.attach(os.getpid())
                code = Codes.USER_SHELL
            user = job.user
            if job.as_root:
                os.setgroups(os.getgrouplist(user.pw_name, user.pw_gid))
                os.setgid(user.pw_gid)
                os.setuid(user.pw_uid)
            code = Codes.WORKDIR_ACCESS
            os.chdir(self.data["launching_directory"])
            code = Codes.USER_SHELL
            null = os.open(os.devnull, os.O_RDONLY)
            os.dup2(null, 0)
            os.dup2(job.stdout_fd, 1)
            os.dup2(job.stderr_fd, 2)
            # not a login shell unless asked: the profile of an account may do slow or
            # blocking things (and a job killed in the middle of them leaves their locks)
            argv0 = os.path.basename(job.shell)
            if self.data.get("login_shell"):
                argv0 = "-" + argv0
            os.execve(job.shell, [argv0, "-c", str(self.data["command"])], job.env)
        except BaseException as exc:
            try:
                os.write(err_w, f"{code} {exc}".encode())
            finally:
                os._exit(127)

    def _wait_interactive(self) -> int | None:
        """Wait until oarsh_shell writes the exit status of the job's shell (or a kill);
        the status as a wait status (exit status << 8)."""
        path = self.job.files.shell_status
        self._wait(lambda: self.killed or os.path.exists(path))
        if self.killed:
            return None
        # the writer may still be writing: the status is one integer
        deadline = time.monotonic() + 2
        while True:
            try:
                with open(path, encoding="ascii") as stream:
                    exit_status = int(stream.read().split()[0])
                # the file holds the shell's exit status (as $? gives it); the report
                # carries a wait status, as for a batch command
                return (exit_status & 0xFF) << 8
            except (OSError, ValueError, IndexError):
                if time.monotonic() > deadline:
                    log.warning("unreadable %s", path)
                    return None
                time.sleep(0.05)
