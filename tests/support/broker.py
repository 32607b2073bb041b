"""A private Mosquitto run with the project's deploy/mosquitto.conf, on a free port: anonymous,
or with the password and ACL files ``anxin devices broker-files`` writes."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path
from urllib.parse import quote

from services.devices.broker_files import ACL_FILE, PASSWORD_FILE
from tests.support.procs import ROOT, free_port

PROJECT_CONF = ROOT / "deploy" / "mosquitto.conf"


def project_config(
    port: int, data_dir: Path, autosave_interval: int | None = None, keep_root: bool = False
) -> str:
    """The project's config with only the listener and the data directory changed.

    ``keep_root``: started as root, Mosquitto drops to the ``mosquitto`` user, which cannot
    write its snapshot into pytest's root-only tmp directories ("Error: Permission denied" in
    its log, and a restart finds no sessions). A test that restarts the broker and relies on
    what it persisted keeps it root instead."""
    conf = PROJECT_CONF.read_text()
    if keep_root and os.geteuid() == 0:
        conf += "\nuser root\n"
    conf = re.sub(r"(?m)^listener .*$", f"listener {port} 127.0.0.1", conf)
    conf = re.sub(r"(?m)^persistence_location .*$", f"persistence_location {data_dir}/", conf)
    if autosave_interval is not None:
        conf = re.sub(r"(?m)^autosave_interval .*$", f"autosave_interval {autosave_interval}", conf)
    return conf


def login_config(conf: str, auth_dir: Path | None) -> str:
    """deploy/mosquitto.conf requires logins. Without ``auth_dir`` the broker takes anonymous
    clients, as most tests and the benchmarks want; with it, it reads the ``password_file``
    and ``acl_file`` that ``anxin devices broker-files --out auth_dir`` wrote."""
    conf = re.sub(r"(?m)^(allow_anonymous|password_file|acl_file)\b.*\n?", "", conf)
    if auth_dir is None:
        return conf + "\nallow_anonymous true\n"
    conf += (
        f"\nallow_anonymous false\npassword_file {auth_dir / PASSWORD_FILE}"
        f"\nacl_file {auth_dir / ACL_FILE}\n"
    )
    # Started as root, Mosquitto reads these files (at start and on SIGHUP) after dropping to
    # the mosquitto user, who cannot enter pytest's root-only tmp directories.
    if os.geteuid() == 0 and not re.search(r"(?m)^user ", conf):
        conf += "user root\n"
    return conf


class MosquittoProcess:
    def __init__(
        self,
        workdir: Path,
        port: int | None = None,
        autosave_interval: int | None = None,
        keep_root: bool = False,
        auth_dir: Path | None = None,
    ):
        self.workdir = workdir
        self.port = port or free_port()
        self.data_dir = workdir / "data"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.conf_path = workdir / "mosquitto.conf"
        self.auth_dir = auth_dir
        conf = project_config(self.port, self.data_dir, autosave_interval, keep_root)
        self.conf_path.write_text(login_config(conf, auth_dir))
        self.log_path = workdir / "mosquitto.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def url_for(self, username: str, password: str) -> str:
        return f"mqtt://{quote(username, safe='')}:{quote(password, safe='')}@127.0.0.1:{self.port}"

    def reload(self) -> None:
        """SIGHUP: Mosquitto rereads its password and ACL files and disconnects the clients
        whose login is no longer in them."""
        assert self.proc is not None and self.proc.poll() is None
        self.proc.send_signal(signal.SIGHUP)

    def start(self, timeout: float = 10.0) -> None:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            ["mosquitto", "-c", str(self.conf_path)], stdout=log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited: {self.log_path.read_text()[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("mosquitto did not start listening")

    def kill(self) -> None:
        """SIGKILL: no final save; what was not autosaved is gone."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
