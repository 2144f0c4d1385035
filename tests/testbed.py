"""A multi-node test bed on one machine: N test hosts as network namespaces.

Each host of a :class:`Testbed` is

* a network namespace ``oartb<pid>-<name>`` with loopback up and an ``eth0`` veth whose peer
  sits on a bridge of the root namespace, on a private ``10.x.y.0/24`` subnet chosen not to
  overlap any address or route of the machine (the root namespace gets ``.1``, so the test
  process itself reaches every host);
* a dedicated ``sshd -D`` on port 6667, started with ``nsenter --net`` then
  ``unshare --cgroup --uts --mount``: its own hostname (the host's name) and a private mount
  namespace in which the bed's hosts file is bind-mounted on ``/etc/hosts``, so the hosts
  resolve each other by name while the machine's ``/etc/hosts`` is never modified;
* its own cgroup tree: before the ``unshare``, the starting shell enters a cgroup
  ``oartb<pid>-<n>-<name>`` made under the test process's own cgroup of each cgroup v1
  hierarchy, so that this cgroup is the root of the host's cgroup namespace; a fresh tmpfs
  on ``/sys/fs/cgroup`` with each v1 hierarchy mounted again then shows the host only its
  own tree, and every host can have ``/oar/<user>_<jobid>`` at the same time;
* optionally private directories (``private_dirs``): a directory of the host bind-mounted
  on each of these paths (e.g. a runtime directory: the hosts share the filesystem, as
  nodes sharing an NFS ``/`` would, but a node's runtime files are its own).
  ``ip netns exec`` is avoided on purpose: it remounts ``/sys`` (cgroups would vanish).
  Processes logged in over ssh inherit these namespaces, so ``ssh ... hostname`` answers
  the host's name and ``ssh node2`` works from inside ``node1``.

sshd accepts only public-key logins of one account (``AllowUsers``), with its own host key,
configuration, pid file and log in the bed's directory.  The bed writes a known_hosts file
(every host key, by name and address) and an ``ssh_config`` so that callers connect with
strict host key checking.  There is no PID namespace: every host sees every process.

With ``oar_node=True`` each host's sshd runs the node configuration of the Ansible role
(``ansible/roles/oar_node/templates/oar-node-sshd_config.j2``, rendered with the bed's
account as ``oar_user``), preceded by the bed's own paths (pid file, authorized keys, no
strict modes under /tmp), which sshd takes first; the role's sudo rules
(``oar-node-sudoers.j2``) are installed as ``/etc/sudoers.d/<bed prefix>`` for as long as
the bed lives.  Each host's ``oar_conf_dir`` is its directory (an ``oar.conf`` written there
by :meth:`Testbed.write_oar_conf`), ``oar_venv_dir`` a root-owned directory under /run
(sshd refuses an AuthorizedKeysCommand under /tmp) whose ``bin/`` holds small launchers of
this checkout: ``python3``, ``oarsh``, ``oarcp``, ``oarsh_shell``.

Teardown (:meth:`Testbed.close`) ends exactly the sshd processes the bed started (its own
children, by pid), kills what is left in the hosts' cgroups (processes started through
those sshd) and removes the cgroups, then deletes the links and namespaces it created; it runs even when the
start or a test fails, and a session :class:`Registry` closes any bed left open.  Names left
by a crashed run (``oartb<pid>-`` of a pid that no longer exists) are removed by
:func:`sweep_stale`.
"""

from __future__ import annotations

import fcntl
import ipaddress
import itertools
import json
import os
import pwd
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field

SSH_PORT = 6667
#: the account the test hosts' sshd lets in (created once when missing)
DEFAULT_ACCOUNT = "oartb"
SSHD = shutil.which("sshd") or "/usr/sbin/sshd"
PREFIX_RE = re.compile(r"^oartb(\d+)-")
#: serialises subnet choice between test beds of concurrent test sessions
SUBNET_LOCK = "/run/lock/oartb-subnets.lock"
REPOSITORY = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NODE_TEMPLATES = os.path.join(REPOSITORY, "ansible", "roles", "oar_node", "templates")
#: console scripts of the node role, as launchers of this checkout (oar_node beds)
NODE_SCRIPTS = {"oarsh": "oar_appliance.cli.oarsh", "oarcp": "oar_appliance.cli.oarcp",
                "oarsh_shell": "oar_appliance.nodeside.oarsh_login"}
#: numbers the beds and links of this process, so that two open beds never share a name
_counter = itertools.count(1)


def missing_requirements() -> str | None:
    """Why a test bed cannot be built here, or None when it can."""
    if os.geteuid() != 0:
        return "the multi-node test bed needs root (network namespaces, sshd logins)"
    if not os.path.exists(SSHD):
        return "sshd is missing (apt-get install openssh-server)"
    for tool in ("ip", "nsenter", "unshare", "ssh", "ssh-keygen", "useradd"):
        if shutil.which(tool) is None:
            return f"{tool} is missing (apt-get install iproute2 util-linux openssh-client passwd)"
    return None


def run(argv: list[str], check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, check=check, timeout=timeout)


def netns_names() -> set[str]:
    out = run(["ip", "netns", "list"]).stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


def link_names() -> set[str]:
    return {link["ifname"] for link in json.loads(run(["ip", "-j", "link", "show"]).stdout or "[]")}


def ensure_account(name: str = DEFAULT_ACCOUNT) -> str:
    """An account sshd will let in with a key (home ``/``, so logins start without a
    warning): ``*`` as password field, since sshd without
    PAM refuses a locked (``!``) account."""
    try:
        pwd.getpwnam(name)
    except KeyError:
        run(["useradd", "--system", "--shell", "/bin/sh", "--home-dir", "/",
             "--no-create-home", "--password", "*", name])
    else:
        shadow = run(["getent", "shadow", name], check=False).stdout.split(":")
        if len(shadow) > 1 and shadow[1].startswith("!"):
            run(["usermod", "-p", "*", name])
    return name


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_stale() -> list[str]:
    """Delete namespaces and links named by a test bed whose process is gone (a crashed
    run); returns their names.  Processes are never killed here."""
    removed = []
    for link in sorted(link_names()):
        match = re.match(r"^otb(\d+)[bh]", link)
        if match and not pid_alive(int(match.group(1))):
            run(["ip", "link", "del", link], check=False)
            removed.append(link)
    for ns in sorted(netns_names()):
        match = PREFIX_RE.match(ns)
        if match and not pid_alive(int(match.group(1))):
            run(["ip", "netns", "del", ns], check=False)
            removed.append(ns)
    for hierarchy in cgroup_v1_hierarchies():
        parent = os.path.join(hierarchy.mount, hierarchy.own.strip("/"))
        try:
            names = os.listdir(parent)
        except OSError:
            continue
        for name in sorted(names):
            match = PREFIX_RE.match(name)
            if match and not pid_alive(int(match.group(1))):
                remove_cgroup_tree(os.path.join(parent, name))
                removed.append(os.path.join(parent, name))
    # oar_node beds: their sudo rules and launchers
    for directory, remove in (("/etc/sudoers.d", os.unlink), ("/run", shutil.rmtree)):
        for name in sorted(os.listdir(directory)):
            match = PREFIX_RE.match(name)
            if match and not pid_alive(int(match.group(1))):
                remove(os.path.join(directory, name))
                removed.append(os.path.join(directory, name))
    return removed


@dataclass(frozen=True)
class Hierarchy:
    """A cgroup v1 hierarchy of the machine: its mount point, its mount options (the
    controllers) and the test process's own cgroup in it."""

    mount: str
    options: str
    own: str


def cgroup_v1_hierarchies() -> list[Hierarchy]:
    """The cgroup v1 hierarchies with controllers (named ones such as systemd's left out)."""
    own: dict[frozenset, str] = {}
    with open("/proc/self/cgroup") as stream:
        for line in stream:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            if controllers:
                own[frozenset(controllers.split(","))] = path
    found = []
    with open("/proc/self/mountinfo") as stream:
        for line in stream:
            left, _, right = line.partition(" - ")
            fields, extra = left.split(), right.split()
            if len(extra) < 3 or extra[0] != "cgroup":
                continue
            controllers = [o for o in extra[2].split(",") if o in own_controllers(own)]
            if not controllers or any(o.startswith("name=") for o in extra[2].split(",")):
                continue
            path = own.get(frozenset(controllers), "/")
            found.append(Hierarchy(fields[4], ",".join(controllers), path))
    return found


def own_controllers(own: dict[frozenset, str]) -> set[str]:
    return {c for names in own for c in names}


def remove_cgroup_tree(path: str, timeout: float = 5) -> None:
    """Kill every task left in the cgroup ``path`` and below (thawed first), then remove
    the directories, deepest first."""
    for directory, subdirs, _ in sorted(os.walk(path), key=lambda entry: -entry[0].count("/")):
        state = os.path.join(directory, "freezer.state")
        if os.path.exists(state):
            try:
                with open(state, "w") as out:
                    out.write("THAWED")
            except OSError:
                pass
        deadline = time.monotonic() + timeout
        while True:
            try:
                with open(os.path.join(directory, "cgroup.procs")) as procs:
                    pids = [int(p) for p in procs.read().split()]
            except OSError:
                pids = []
            if not pids or time.monotonic() > deadline:
                break
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            time.sleep(0.05)
        try:
            os.rmdir(directory)
        except OSError:
            pass


def used_networks() -> list[ipaddress.IPv4Network]:
    """Every IPv4 network of an address or route of the root namespace."""
    nets = []
    for entry in json.loads(run(["ip", "-j", "-4", "addr", "show"]).stdout or "[]"):
        for info in entry.get("addr_info", []):
            nets.append(ipaddress.ip_network(f"{info['local']}/{info['prefixlen']}", strict=False))
    for route in json.loads(run(["ip", "-j", "-4", "route", "show", "table", "all"]).stdout or "[]"):
        dst = route.get("dst", "")
        if dst and dst != "default" and not dst.startswith(("broadcast", "local")):
            try:
                nets.append(ipaddress.ip_network(dst if "/" in dst else dst + "/32", strict=False))
            except ValueError:
                pass
    return nets


def free_subnet(seed: int) -> ipaddress.IPv4Network:
    """A 10.x.y.0/24 overlapping nothing in use; the search starts at a place given by
    ``seed`` so that concurrent beds rarely even compete (the caller holds SUBNET_LOCK)."""
    used = used_networks()
    for step in range(200 * 256):
        index = (seed + step) % (200 * 256)
        candidate = ipaddress.ip_network(f"10.{50 + index // 256}.{index % 256}.0/24")
        if not any(candidate.overlaps(net) for net in used):
            return candidate
    raise RuntimeError("no free 10.x.y.0/24 subnet for the test bed")


def world_runnable(path: str) -> bool:
    """Whether every account can run ``path`` (each directory above it is searchable)."""
    real = os.path.realpath(path)
    parts = real.split("/")
    for end in range(2, len(parts)):
        if not os.stat("/".join(parts[:end])).st_mode & 0o001:
            return False
    return bool(os.stat(real).st_mode & 0o001)


def users_python() -> tuple[str, str]:
    """(interpreter, PYTHONPATH) running this checkout with the test run's packages for
    any account: this interpreter, or, when it is private (a pyenv build under /root), the
    system's python3 of the same version with this run's site-packages."""
    import sysconfig

    if world_runnable(sys.executable):
        return sys.executable, REPOSITORY
    system = "/usr/bin/python3"
    version = run([system, "-c", "import sys; print(sys.version_info[:2])"], check=False).stdout.strip()
    if version != str(tuple(sys.version_info[:2])):
        raise RuntimeError(f"{sys.executable} cannot be run by other accounts and {system} is not "
                           f"Python {sys.version_info[0]}.{sys.version_info[1]}")
    return system, f"{REPOSITORY}:{sysconfig.get_paths()['purelib']}:{sysconfig.get_paths()['platlib']}"


@dataclass
class Host:
    """One test host: its name (hostname and hosts-file name), address and namespace."""

    name: str
    address: str
    netns: str
    veth: str  # the root-namespace end of its link
    directory: str
    proc: subprocess.Popen | None = None
    #: the host's own cgroup in each v1 hierarchy (the root of its cgroup namespace)
    cgroups: list[str] = field(default_factory=list)

    @property
    def sshd_pid(self) -> int | None:
        return self.proc.pid if self.proc else None


class Registry:
    """Every bed of a test session, so that none outlives the session."""

    def __init__(self):
        self.beds: list[Testbed] = []

    def add(self, bed: Testbed) -> None:
        if bed not in self.beds:
            self.beds.append(bed)

    def discard(self, bed: Testbed) -> None:
        if bed in self.beds:
            self.beds.remove(bed)

    def close_all(self) -> None:
        for bed in reversed(list(self.beds)):
            bed.close()
        self.beds.clear()


@dataclass
class Testbed:
    """N test hosts reachable with ssh on port 6667; use as a context manager or call
    :meth:`start` and :meth:`close` (close is idempotent and never raises)."""

    __test__ = False  # not a pytest test class

    size: int = 3
    account: str = DEFAULT_ACCOUNT
    registry: Registry | None = None
    names: list[str] | None = None
    #: paths that each host sees as a directory of its own (bind mounts)
    private_dirs: list[str] = field(default_factory=list)
    #: bytes of memory each host's cgroup tree may use (None: the machine's)
    memory_limit: int | None = None
    hosts: list[Host] = field(default_factory=list)
    hierarchies: list[Hierarchy] = field(default_factory=list)
    directory: str = ""
    bridge: str = ""
    subnet: ipaddress.IPv4Network | None = None
    created_netns: list[str] = field(default_factory=list)
    created_links: list[str] = field(default_factory=list)
    closed: bool = False
    #: run the oar_node role's sshd configuration and sudo rules (see the module's doc)
    oar_node: bool = False
    venv_dir: str = ""
    sudoers_file: str = ""

    def __post_init__(self):
        self.number = next(_counter)
        self.prefix = f"oartb{os.getpid()}-{self.number}-"
        self.link_prefix = f"otb{os.getpid()}"  # interface names are at most 15 characters
        self.names = list(self.names or [f"node{i}" for i in range(1, self.size + 1)])
        self.size = len(self.names)

    # -- paths callers use -------------------------------------------------------------

    @property
    def key(self) -> str:
        """The client private key (owned by the account, so it also works on the hosts)."""
        return os.path.join(self.directory, "client_key")

    @property
    def known_hosts(self) -> str:
        return os.path.join(self.directory, "known_hosts")

    @property
    def ssh_config(self) -> str:
        """An ssh client configuration (port, key, user, known hosts): ``ssh -F``."""
        return os.path.join(self.directory, "ssh_config")

    @property
    def hosts_file(self) -> str:
        return os.path.join(self.directory, "hosts")

    @property
    def gateway(self) -> str:
        """The root namespace's address on the bed's subnet."""
        return str(self.subnet.network_address + 1)

    def conf_path(self, name: str) -> str:
        """The ``oar.conf`` of host ``name`` (``oar_node`` beds)."""
        return os.path.join(self.host(name).directory, "oar.conf")

    def host(self, name: str) -> Host:
        return next(host for host in self.hosts if host.name == name)

    def private_dir(self, name: str, path: str) -> str:
        """Where the root namespace sees host ``name``'s own ``path`` (of ``private_dirs``)."""
        return os.path.join(self.host(name).directory, f"private{self.private_dirs.index(path)}")

    def host_cgroup(self, name: str, controller: str) -> str:
        """Host ``name``'s own cgroup of ``controller`` as the root namespace sees it (its
        ``/sys/fs/cgroup/<controller>`` inside)."""
        for hierarchy, path in zip(self.hierarchies, self.host(name).cgroups):
            if controller in hierarchy.options.split(","):
                return path
        raise KeyError(controller)

    def ssh_argv(self, target: str, command: list[str] | str, *, config: bool = False) -> list[str]:
        """argv of an ssh from here to ``target`` (a host name, resolved by the bed, or an
        address) running ``command``."""
        address = next((h.address for h in self.hosts if h.name == target), target)
        line = command if isinstance(command, str) else " ".join(command)
        if config:
            return ["ssh", "-F", self.ssh_config, target, line]
        return ["ssh", "-p", str(SSH_PORT), "-i", self.key, "-o", f"UserKnownHostsFile={self.known_hosts}",
                "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-o", "ConnectTimeout=5",
                "-o", "KexAlgorithms=curve25519-sha256", "-o", "LogLevel=ERROR",
                f"{self.account}@{address}", line]

    def ssh(self, target: str, command: list[str] | str, timeout: float = 20) -> subprocess.CompletedProcess:
        return run(self.ssh_argv(target, command), check=False, timeout=timeout)

    def in_view(self, argv: list[str]) -> list[str]:
        """argv running ``argv`` in the root network namespace but with the bed's hosts
        file as /etc/hosts (a private mount namespace): how a server process started by a
        test resolves the hosts by name."""
        return ["unshare", "--mount", "--", "sh", "-c",
                f'mount --bind "$0" /etc/hosts && exec "$@"', self.hosts_file, *argv]

    # -- life cycle ----------------------------------------------------------------------

    def __enter__(self) -> Testbed:
        return self if self.hosts else self.start()

    def __exit__(self, *exc_info) -> None:
        self.close()

    def start(self, timeout: float = 20) -> Testbed:
        if self.closed or self.hosts:
            raise RuntimeError("a test bed starts once")
        if self.registry is not None:
            self.registry.add(self)
        try:
            self.directory = tempfile.mkdtemp(prefix=self.prefix)
            # sshd reads authorized keys as the account: the directory must be traversable
            os.chmod(self.directory, 0o755)
            ensure_account(self.account)
            self._keys()
            self._network()
            if self.oar_node:
                self._node_role()
            self._files()
            self.hierarchies = cgroup_v1_hierarchies()
            for host in self.hosts:
                self._make_cgroups(host)
                self._start_sshd(host)
            self._wait_ready(timeout)
        except BaseException:
            self.close()
            raise
        return self

    def _keys(self) -> None:
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "oartb-client", "-f", self.key])
        account = pwd.getpwnam(self.account)
        os.chown(self.key, account.pw_uid, account.pw_gid)
        with open(self.key + ".pub") as pub, open(os.path.join(self.directory, "authorized_keys"), "w") as out:
            out.write(pub.read())

    def _network(self) -> None:
        os.makedirs(os.path.dirname(SUBNET_LOCK), exist_ok=True)
        with open(SUBNET_LOCK, "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            self.subnet = free_subnet(os.getpid() * 7 + id(self) % 97)
            self.bridge = f"{self.link_prefix}b{next(_counter)}"
            run(["ip", "link", "add", self.bridge, "type", "bridge"])
            self.created_links.append(self.bridge)
            # the address claims the subnet for the other beds' used_networks()
            run(["ip", "addr", "add", f"{self.gateway}/{self.subnet.prefixlen}", "dev", self.bridge])
        run(["ip", "link", "set", self.bridge, "up"])
        for index, name in enumerate(self.names, start=1):
            netns, veth = f"{self.prefix}{name}", f"{self.link_prefix}h{next(_counter)}"
            address = str(self.subnet.network_address + 10 + index)
            directory = os.path.join(self.directory, name)
            os.mkdir(directory)
            os.chmod(directory, 0o755)
            for number in range(len(self.private_dirs)):
                os.mkdir(os.path.join(directory, f"private{number}"), 0o755)
            run(["ip", "netns", "add", netns])
            self.created_netns.append(netns)
            run(["ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", netns])
            self.created_links.append(veth)
            run(["ip", "link", "set", veth, "master", self.bridge, "up"])
            for argv in (["ip", "link", "set", "lo", "up"],
                         ["ip", "addr", "add", f"{address}/{self.subnet.prefixlen}", "dev", "eth0"],
                         ["ip", "link", "set", "eth0", "up"]):
                run(["ip", "-n", netns, *argv[1:]])
            self.hosts.append(Host(name, address, netns, veth, directory))

    def _files(self) -> None:
        lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback",
                 f"{self.gateway}\t{self.prefix}gateway"]
        lines += [f"{host.address}\t{host.name}" for host in self.hosts]
        with open(self.hosts_file, "w") as out:
            out.write("\n".join(lines) + "\n")
        known = []
        for host in self.hosts:
            # an oar_node bed's key is where the role's configuration names it
            key = os.path.join(host.directory, "oar_node_ssh_host_ed25519_key" if self.oar_node else "host_key")
            run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", host.name, "-f", key])
            with open(key + ".pub") as pub:
                keytype, blob = pub.read().split()[:2]
            known.append(f"[{host.name}]:{SSH_PORT},[{host.address}]:{SSH_PORT} {keytype} {blob}")
            with open(os.path.join(host.directory, "sshd_config"), "w") as out:
                if self.oar_node:
                    out.write(self._node_sshd_config(host))
                    continue
                out.write(
                    f"Port {SSH_PORT}\nListenAddress 0.0.0.0\nHostKey {key}\n"
                    f"PidFile {host.directory}/sshd.pid\n"
                    f"AuthorizedKeysFile {self.directory}/authorized_keys\n"
                    f"AllowUsers {self.account}\n"
                    "PubkeyAuthentication yes\nPasswordAuthentication no\n"
                    "KbdInteractiveAuthentication no\nPermitRootLogin no\nUsePAM no\n"
                    # the keys live under /tmp, whose mode sshd's strict checks refuse
                    "StrictModes no\nKexAlgorithms curve25519-sha256\nUseDNS no\n"
                    "PrintMotd no\nX11Forwarding no\n")
        with open(self.known_hosts, "w") as out:
            out.write("\n".join(known) + "\n")
        with open(self.ssh_config, "w") as out:
            # names map to addresses here too, so that clients outside the bed's mount
            # namespace (the test process, a server) reach the hosts by name
            out.writelines(f"Host {host.name}\n  HostName {host.address}\n" for host in self.hosts)
            out.write(f"Host *\n  Port {SSH_PORT}\n  User {self.account}\n  IdentityFile {self.key}\n"
                      f"  IdentitiesOnly yes\n  UserKnownHostsFile {self.known_hosts}\n"
                      "  StrictHostKeyChecking yes\n  BatchMode yes\n  ConnectTimeout 5\n"
                      "  KexAlgorithms curve25519-sha256\n  LogLevel ERROR\n")

    def _make_cgroups(self, host: Host) -> None:
        """The host's own cgroup in each v1 hierarchy, under the test process's cgroup."""
        for hierarchy in self.hierarchies:
            parent = os.path.join(hierarchy.mount, hierarchy.own.strip("/"))
            path = os.path.join(parent, self.prefix + host.name)
            os.makedirs(path, exist_ok=True)
            host.cgroups.append(path)
            if "cpuset" in hierarchy.options.split(","):  # an empty cpuset accepts no task
                for name in ("cpuset.cpus", "cpuset.mems"):
                    with open(os.path.join(parent, name)) as src, open(os.path.join(path, name), "w") as dst:
                        dst.write(src.read().strip() or "\n")
            if "memory" in hierarchy.options.split(",") and self.memory_limit:
                with open(os.path.join(path, "memory.limit_in_bytes"), "w") as out:
                    out.write(str(int(self.memory_limit)))
    # -- oar_node beds -------------------------------------------------------------------

    def _render(self, template: str, host: Host) -> str:
        import jinja2

        environment = jinja2.Environment(loader=jinja2.FileSystemLoader(NODE_TEMPLATES),
                                         undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
        return environment.get_template(template).render(
            oar_user=self.account, oar_group=self.account, oar_venv_dir=self.venv_dir,
            oar_conf_dir=host.directory, oar_node_sshd_port=SSH_PORT)

    def _node_role(self) -> None:
        """The launchers, a default oar.conf per host and the sudo rules."""
        self.venv_dir = tempfile.mkdtemp(prefix=self.prefix + "venv-", dir="/run")
        os.chmod(self.venv_dir, 0o755)
        bin_dir = os.path.join(self.venv_dir, "bin")
        os.mkdir(bin_dir, 0o755)
        python, path = users_python()
        scripts = {"python3": f'PYTHONPATH={path} exec {python} "$@"\n'}
        for name, module in NODE_SCRIPTS.items():
            scripts[name] = (f"PYTHONPATH={path} exec {python} -c 'import sys; "
                             f"from {module} import main; sys.argv[0] = \"{bin_dir}/{name}\"; "
                             f"sys.exit(main())' \"$@\"\n")
        for name, body in scripts.items():
            with open(os.path.join(bin_dir, name), "w") as out:
                out.write("#!/bin/sh\n" + body)
            os.chmod(os.path.join(bin_dir, name), 0o755)
        for host in self.hosts:
            self.write_oar_conf(host.name)
        rules = "".join(self._render("oar-node-sudoers.j2", host) for host in self.hosts)
        candidate = os.path.join(self.directory, "sudoers")
        with open(candidate, "w") as out:
            out.write(rules)
        run(["visudo", "-cqf", candidate])
        self.sudoers_file = os.path.join("/etc/sudoers.d", self.prefix.rstrip("-"))
        shutil.copyfile(candidate, self.sudoers_file + ".tmp")
        os.chmod(self.sudoers_file + ".tmp", 0o440)
        os.replace(self.sudoers_file + ".tmp", self.sudoers_file)

    def write_oar_conf(self, name: str, **settings: str) -> str:
        """Write host ``name``'s oar.conf: the node side's defaults in the bed (its own
        runtime directory, ssh through the bed's client configuration), then ``settings``."""
        host = self.host(name)
        values = {"OAR_RUNTIME_DIRECTORY": os.path.join(host.directory, "runtime"),
                  "OPENSSH_CMD": f"ssh -F {self.ssh_config}", "NODE_SSH_USER": self.account,
                  "NODE_PYTHON": os.path.join(self.venv_dir, "bin", "python3"),
                  "NODE_COMMAND_PREFIX": "sudo -n", **settings}
        path = self.conf_path(name)
        with open(path, "w") as out:
            out.writelines(f'{key}="{value}"\n' for key, value in values.items())
        os.chmod(path, 0o644)
        return path

    def _node_sshd_config(self, host: Host) -> str:
        """The role's sshd configuration, after the bed's paths (sshd keeps the first value)."""
        return (f"# the test bed's paths first\nListenAddress 0.0.0.0\n"
                f"PidFile {host.directory}/sshd.pid\nAuthorizedKeysFile {self.directory}/authorized_keys\n"
                "StrictModes no\nKexAlgorithms curve25519-sha256\n\n"
                + self._render("oar-node-sshd_config.j2", host))

    def _start_sshd(self, host: Host) -> None:
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # privilege separation directory
        # the shell enters the host's cgroups, then unshare makes them the root of a new
        # cgroup namespace; nsenter, unshare and the shells exec: the Popen pid is sshd's
        enter = "".join(f"echo $$ > {shlex.quote(path)}/cgroup.procs && " for path in host.cgroups)
        inner = ['hostname "$0"', 'mount --bind "$1" /etc/hosts',
                 "mount -t tmpfs -o mode=755 oartb-cgroup /sys/fs/cgroup"]
        for hierarchy in self.hierarchies:
            point = shlex.quote(hierarchy.mount)
            inner += [f"mkdir -p {point}", f"mount -t cgroup -o {hierarchy.options} cgroup {point}"]
        for number, path in enumerate(self.private_dirs):
            inner.append(f"mount --bind {shlex.quote(os.path.join(host.directory, f'private{number}'))} "
                         f"{shlex.quote(path)}")
        inner_script = " && ".join(inner) + ' && shift && exec "$@"'
        script = (enter + "exec unshare --cgroup --uts --mount -- sh -c " + shlex.quote(inner_script)
                  + ' "$0" "$@"')
        argv = ["nsenter", f"--net=/run/netns/{host.netns}", "sh", "-c", script, host.name, self.hosts_file,
                SSHD, "-D", "-e", "-f", os.path.join(host.directory, "sshd_config")]
        with open(os.path.join(host.directory, "sshd.log"), "ab") as log:
            host.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                         stderr=log, start_new_session=True)

    def stop_sshd(self, name: str) -> None:
        """Stop host ``name``'s sshd (a node becoming unreachable); its cgroups stay."""
        host = self.host(name)
        if host.proc is not None and host.proc.poll() is None:
            host.proc.terminate()
            try:
                host.proc.wait(5)
            except subprocess.TimeoutExpired:
                host.proc.kill()
                host.proc.wait(5)

    def start_sshd(self, name: str, timeout: float = 20) -> None:
        """Start host ``name``'s sshd again after :meth:`stop_sshd` (same cgroups)."""
        host = self.host(name)
        if host.proc is not None and host.proc.poll() is None:
            return
        self._start_sshd(host)
        self._wait_ready(timeout, [host])

    def _wait_ready(self, timeout: float, hosts: list[Host] | None = None) -> None:
        deadline = time.monotonic() + timeout
        for host in hosts or self.hosts:
            while True:
                try:
                    socket.create_connection((host.address, SSH_PORT), timeout=1).close()
                    break
                except OSError:
                    if host.proc.poll() is not None or time.monotonic() > deadline:
                        with open(os.path.join(host.directory, "sshd.log")) as log:
                            raise RuntimeError(f"sshd of {host.name} did not start: {log.read()}")
                    time.sleep(0.05)

    def close(self) -> None:
        """End the sshd processes this bed started, delete its links and namespaces and
        its directory.  Idempotent; errors are collected, never raised midway."""
        if self.registry is not None:
            self.registry.discard(self)
        if self.closed:
            return
        self.closed = True
        for host in self.hosts:
            if host.proc is not None and host.proc.poll() is None:
                host.proc.terminate()  # Popen signals only its own, unreaped child
        for host in self.hosts:
            if host.proc is not None:
                try:
                    host.proc.wait(5)
                except subprocess.TimeoutExpired:
                    host.proc.kill()
                    host.proc.wait(5)
        for host in self.hosts:
            for path in host.cgroups:
                remove_cgroup_tree(path)
        # veths first: a namespace whose link is still up may linger after `netns del`
        for link in reversed(self.created_links):
            run(["ip", "link", "del", link], check=False)
        for netns in reversed(self.created_netns):
            run(["ip", "netns", "del", netns], check=False)
        if self.sudoers_file:
            for path in (self.sudoers_file, self.sudoers_file + ".tmp"):
                if os.path.exists(path):
                    os.unlink(path)
        if self.directory:
            shutil.rmtree(self.directory, ignore_errors=True)
        if self.venv_dir:
            shutil.rmtree(self.venv_dir, ignore_errors=True)
