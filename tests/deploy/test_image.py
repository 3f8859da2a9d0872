"""The image: hadolint, the Dockerfile's promises, its exact CMD run locally, and (where buildah is
installed) a real build whose container answers /healthz."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
import urllib.request
import uuid
from pathlib import Path

import pytest

from tests.deploy._cfn import DEPLOY, ROOT
from tests.support.issuer import ISSUER, bearer, grant_token, jwks_server
from tests.support.processes import child, free_port, wait_http

HADOLINT = Path(sys.executable).with_name("hadolint")
DOCKERFILE = ROOT / "Dockerfile"


def _final_stage() -> dict:
    """ENV, WORKDIR, USER, CMD, HEALTHCHECK, EXPOSE, COPY of the Dockerfile's last stage."""
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
    start = max(i for i, ln in enumerate(lines) if ln.upper().startswith("FROM "))
    stage: dict = {"env": {}, "copy": [], "from": lines[start]}
    for line in lines[start + 1 :]:
        keyword, _, rest = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "ENV":
            for pair in shlex.split(rest):
                key, _, value = pair.partition("=")
                stage["env"][key] = value
        elif keyword in ("CMD", "WORKDIR", "USER", "EXPOSE"):
            stage[keyword.lower()] = json.loads(rest) if keyword == "CMD" else rest.strip()
        elif keyword == "HEALTHCHECK":
            stage["healthcheck"] = json.loads(rest[rest.index("CMD ") + 4 :])
        elif keyword == "COPY":
            stage["copy"].append(rest)
    return stage


# What a task adds for the API (the image carries no issuer): a JWKS URL, as in production. It is
# fetched on the first authenticated request, never at start-up, so nothing needs to answer here.
TASK_AUTH_ENV = {
    "AUTH_ISSUER": "https://issuer.example/",
    "AUTH_AUDIENCE": "points-service",
    "AUTH_JWKS_URL": "http://127.0.0.1:9/.well-known/jwks.json",
}


def _auth_env(jwks_url: str) -> dict[str, str]:
    return {**ISSUER.env(), "AUTH_JWKS_FILE": "", "AUTH_JWKS_URL": jwks_url}


def _local_env(stage: dict, port: int, tmp_path: Path) -> dict[str, str]:
    """The image's environment on this machine: /opt/venv is our .venv, the app listens on
    127.0.0.1 only (in the container it binds 0.0.0.0), SQLite lives in a temporary directory."""
    env = {k: v.replace("$PATH", os.environ["PATH"]) for k, v in stage["env"].items()}
    env["PATH"] = env["PATH"].replace("/opt/venv/bin", str(Path(sys.executable).parent))
    env["BIND"] = f"127.0.0.1:{port}"
    env["PORT"] = str(port)
    env["POINTS_DB_PATH"] = str(tmp_path / "points.db")
    env.update(TASK_AUTH_ENV)
    return env


# -- hadolint ------------------------------------------------------------------------------------


def test_hadolint_passes() -> None:
    proc = subprocess.run(
        [str(HADOLINT), str(DOCKERFILE)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_hadolint_does_flag_a_bad_dockerfile(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get install curl\nCMD gunicorn app\n")
    proc = subprocess.run([str(HADOLINT), str(bad)], capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert "DL3007" in proc.stdout  # the :latest tag


# -- what the Dockerfile promises ----------------------------------------------------------------


def test_dockerfile_contract() -> None:
    text = DOCKERFILE.read_text()
    stage = _final_stage()
    assert "ARG PYTHON_IMAGE=python:3.12-slim" in text
    assert text.count("FROM ${PYTHON_IMAGE}") == 2  # multi-stage, both from the build argument
    # dependencies come from the project's metadata, and those extras exist
    assert 'pip install ".[api,worker]"' in text
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    assert {"api", "worker"} <= set(extras)
    assert stage["user"].split(":")[0] not in ("", "0", "root")
    assert stage["env"]["PYTHONUNBUFFERED"] == "1"
    assert stage["cmd"][:3] == ["gunicorn", "--config", "sample_api/gunicorn.conf.py"]
    assert stage["cmd"][stage["cmd"].index("--worker-tmp-dir") + 1] == "/dev/shm"
    assert stage["healthcheck"][0] == "python" and "curl" not in " ".join(stage["healthcheck"])
    assert stage["expose"] == "8080"
    # the config path the CMD names is copied to the same place under WORKDIR
    assert any("sample_api/gunicorn.conf.py" in c for c in stage["copy"])
    assert (ROOT / stage["cmd"][2]).is_file()


def test_dockerignore_keeps_the_context_small() -> None:
    rules = [
        ln.strip()
        for ln in (ROOT / ".dockerignore").read_text().splitlines()
        if ln.strip() and not ln.startswith("#")
    ]
    assert rules[0] == "*"  # deny by default, then allow what the build copies
    allowed = {r[1:].rstrip("/") for r in rules if r.startswith("!")}
    copied = set()
    for line in DOCKERFILE.read_text().splitlines():
        if line.startswith("COPY ") and "--from" not in line:
            copied.update(p.rstrip("*").split("/")[0] for p in line.split()[1:-1])
    assert copied <= allowed, copied - allowed
    assert not allowed & {".venv", ".git", "tests", "out", "deploy"}


# -- the image's exact CMD, run here -------------------------------------------------------------


@pytest.mark.slow
def test_image_cmd_serves_healthz_and_the_healthcheck_agrees(tmp_path: Path) -> None:
    stage = _final_stage()
    port = free_port()
    env = _local_env(stage, port, tmp_path)
    base = f"http://127.0.0.1:{port}"
    healthcheck = [sys.executable, *stage["healthcheck"][1:]]
    # The checkout has the same layout as WORKDIR /app (sample_api/gunicorn.conf.py).
    with child(stage["cmd"], env=env, ready_url=base + "/healthz") as proc:
        with urllib.request.urlopen(base + "/healthz", timeout=5) as resp:
            assert resp.status == 200
        ok = subprocess.run(healthcheck, env={**os.environ, **env}, timeout=30)
        assert ok.returncode == 0
        assert proc.poll() is None
    down = subprocess.run(healthcheck, env={**os.environ, **env}, capture_output=True, timeout=30)
    assert down.returncode != 0  # nothing listens any more: the check must fail


def test_same_image_runs_the_worker_command(tmp_path: Path) -> None:
    """The worker's task command (``python -m worker``) with the image's environment: without
    QUEUE_URL it must stop with one clear line and exit status 2, not a traceback."""
    stage = _final_stage()
    env = {**os.environ, **_local_env(stage, free_port(), tmp_path)}
    env.pop("QUEUE_URL", None)
    proc = subprocess.run(
        [sys.executable, "-m", "worker"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "QUEUE_URL" in proc.stderr and "Traceback" not in proc.stderr


# -- a real image, built without a Docker daemon -------------------------------------------------


def _buildah(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["buildah", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=check,
        env={**os.environ, "BUILDAH_ISOLATION": "chroot"},
    )


# A read-only root like ECS's readonlyRootFilesystem: the image's rootfs bind-mounted read-only in
# a private mount namespace, a tmpfs on /dev/shm (Docker and Fargate provide one), then chroot as
# the image's user. Host network, so the test still talks to 127.0.0.1 only.
_READ_ONLY_ROOT = (
    'set -e; M="$1"; shift; mount --make-rprivate /; mount --bind "$M" "$M"; '
    'mount -o remount,bind,ro "$M"; mount -t tmpfs -o mode=1777 tmpfs "$M/dev/shm"; '
    'mount -t proc proc "$M/proc"; exec "$@"'
)


def _read_only(rootfs: str, config: dict, env: dict[str, str], args: list[str]) -> list[str]:
    image_env = dict(e.split("=", 1) for e in config["Env"])
    pairs = [f"{k}={v}" for k, v in {**image_env, **env}.items()]
    inner = ["/usr/bin/env", "-i", *pairs, "sh", "-c", 'cd "$0" && exec "$@"']
    chroot = ["chroot", f"--userspec={config['User']}", rootfs, *inner, config["WorkingDir"]]
    return [
        "unshare",
        "--mount",
        "--fork",
        "bash",
        "-c",
        _READ_ONLY_ROOT,
        "_",
        rootfs,
        *chroot,
        *args,
    ]


@pytest.mark.slow
@pytest.mark.skipif(
    shutil.which("buildah") is None or shutil.which("debootstrap") is None,
    reason="needs buildah and debootstrap (apt-get install -y buildah debootstrap)",
)
@pytest.mark.timeout(900)
def test_built_image_answers_healthz_on_a_read_only_root() -> None:
    tag = "localhost/points-service:test"
    before = _buildah(
        "inspect", "--type", "image", "--format", "{{.FromImageID}}", tag, check=False
    )
    # Its own process group: on a timeout the whole build (buildah, debootstrap, pip) is stopped,
    # not only the shell, so nothing keeps running or holding buildah's storage lock.
    with child(
        ["bash", str(DEPLOY / "build-local-image.sh"), tag],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    ) as build:
        try:
            _, err = build.communicate(timeout=840)
        except subprocess.TimeoutExpired:
            pytest.fail("the image build did not finish within 840 s")
    assert build.returncode == 0, err.decode(errors="replace")[-3000:]
    old_id = before.stdout.strip() if before.returncode == 0 else ""
    new_id = _buildah("inspect", "--type", "image", "--format", "{{.FromImageID}}", tag).stdout
    if old_id and old_id != new_id.strip():
        # The previous build's image lost its tag: remove it so repeated runs do not pile up
        # untagged images (fails harmlessly if another run still uses it).
        _buildah("rmi", old_id, check=False)
    config = json.loads(_buildah("inspect", "--type", "image", tag).stdout)["Docker"]["config"]
    assert config["User"] == "10001:10001" and config["WorkingDir"] == "/app"
    name = f"points-test-{uuid.uuid4().hex[:8]}"
    _buildah("from", "--name", name, tag)
    try:
        rootfs = _buildah("mount", name).stdout.strip()
        port = free_port()
        # SQLite on the tmpfs, as a task would put it on a mounted volume.
        env = {"BIND": f"127.0.0.1:{port}", "PORT": str(port), "POINTS_DB_PATH": "/dev/shm/p.db"}
        touch = subprocess.run(
            _read_only(rootfs, config, env, ["touch", "/app/probe"]),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert touch.returncode != 0 and "Read-only file system" in touch.stderr
        # Exactly the image's CMD, trusting the tests' issuer through a JWKS URL (as on AWS).
        with (
            jwks_server() as jwks,
            child(
                _read_only(rootfs, config, {**env, **_auth_env(jwks.url)}, config["Cmd"])
            ) as server,
        ):
            base = f"http://127.0.0.1:{port}"
            wait_http(base + "/healthz", timeout_s=60, proc=server)
            with urllib.request.urlopen(base + "/healthz", timeout=5) as resp:
                assert resp.status == 200
            body = json.dumps({"user_id": "u1", "order_id": "o1", "amount_jpy": 1000}).encode()
            request = urllib.request.Request(
                base + "/v1/points/grants",
                data=body,
                headers={"Content-Type": "application/json", **bearer(grant_token())},
                method="POST",
            )
            with urllib.request.urlopen(request, timeout=10) as resp:
                assert resp.status == 201
            # The image's HEALTHCHECK, run in the container while the server is up.
            health = config["Healthcheck"]["Test"]
            assert health[0] == "CMD"
            run = ["run", "--user", config["User"], "-e", f"PORT={port}"]
            probe = _buildah(*run, name, "--", *health[1:], check=False)
            assert probe.returncode == 0, probe.stderr
        worker = _buildah(*run, name, "--", "python", "-m", "worker", check=False)
        assert worker.returncode == 2 and "QUEUE_URL" in worker.stderr
    finally:
        _buildah("umount", name, check=False)
        _buildah("rm", name, check=False)


# -- temporary files on a read-only root ---------------------------------------------------------


def _image_dir_mode(path: str) -> int | None:
    """The mode the Dockerfile's final stage gives ``path`` when it declares it a VOLUME (what
    Fargate copies onto the bind mount), else None."""
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    final = text[text.rindex("\nFROM ") :]
    volumes = [json.loads(m) for m in re.findall(r"^VOLUME (\[.*\])$", final, re.M)]
    if not any(path in v for v in volumes):
        return None
    modes = re.findall(rf"chmod ([0-7]{{3,4}}) {re.escape(path)}(?:\s|$)", final)
    return int(modes[-1], 8) if modes else None


#: Fargate mounts a task volume owned by root; the container's user (10001) is "other" to it.
#: Here the roles are played by another owner (nobody) and this process with the capabilities
#: that bypass file permissions dropped, so the kernel applies the same "other" mode bits.
_MOUNT_OWNER = 65534
_AS_OTHER_USER = ["setpriv", "--bounding-set=-dac_override,-dac_read_search,-fowner"]


# The task's view: the volume mounted at its containerPath, and the other places Python's tempfile
# tries (/tmp, /var/tmp, /usr/tmp, the working directory) read-only as on a read-only root; in a
# private mount namespace, so nothing changes outside the test. The containerPath is /tmp in the
# task definition; here the volume is mounted at a stand-in directory (created beforehand, under
# the read-only /tmp) and TMPDIR points at it: mounting over the host's own /tmp would hide the
# checkout and its virtual environment wherever they live under /tmp.
_TASK_MOUNTS = (
    'set -e; V="$1"; P="$2"; shift 2; mount --make-rprivate /; '
    "for d in /tmp /var/tmp /usr/tmp; do if [ -d $d ]; then mount --bind $d $d; "
    "mount -o remount,bind,ro $d; fi; done; "
    'mount --bind "$V" "$P"; mount -o remount,bind,rw "$P"; exec "$@"'
)


def _in_task(volume: Path, container_path: str, args: list[str]) -> list[str]:
    return [
        "unshare", "--mount", "--fork", "bash", "-c", _TASK_MOUNTS, "_", str(volume),
        container_path, *_AS_OTHER_USER, *args,
    ]  # fmt: skip


def _fargate_bind_mount(base: Path, image_mode: int | None) -> Path:
    """An empty task volume as Fargate mounts it (ECS developer guide, bind mounts): owned by
    root with mode 0755, unless the image declares the path a VOLUME, whose mode is copied."""
    mount = base / f"volume-{uuid.uuid4().hex[:8]}"
    mount.mkdir()
    os.chown(mount, _MOUNT_OWNER, _MOUNT_OWNER)
    mount.chmod(image_mode if image_mode is not None else 0o755)
    return mount


_TEMPFILE_PROBE = (
    "import tempfile; d = tempfile.gettempdir()\n"
    "with tempfile.NamedTemporaryFile() as f: f.write(b'x')\n"
    "print(d)"
)


@pytest.mark.skipif(
    os.geteuid() != 0 or not (shutil.which("setpriv") and shutil.which("unshare")),
    reason="needs root (mount namespace, the mount's owner) and setpriv/unshare (util-linux)",
)
def test_tmpdir_is_writable_on_fargate_bind_mount_semantics(tmp_path: Path) -> None:
    """The task definitions' TMPDIR on a volume mounted the way Fargate mounts it, used by the
    image's user: Python's tempfile works, and the API's exact CMD serves with it. Without the
    image's VOLUME declaration (a root-owned 0755 mount) tempfile fails: the reported fault."""
    stage = _final_stage()
    taskdef = json.loads((DEPLOY / "taskdef.json").read_text())
    app = taskdef["containerDefinitions"][0]
    tmpdir = {e["name"]: e["value"] for e in app["environment"]}["TMPDIR"]
    assert tmpdir in {m["containerPath"] for m in app["mountPoints"]}
    assert stage["env"]["TMPDIR"] == tmpdir
    base = tmp_path / "fargate"
    base.mkdir()
    workdir = tmp_path / "app"  # the image's WORKDIR is read-only too
    workdir.mkdir()
    workdir.chmod(0o555)
    port = free_port()
    # The task's TMPDIR (/tmp) at a stand-in path: see _TASK_MOUNTS.
    task_tmp = tmp_path / "task-tmp"
    task_tmp.mkdir()
    env = {**os.environ, **_local_env(stage, port, tmp_path)}
    env.update({"TMPDIR": str(task_tmp), "POINTS_DB_PATH": ":memory:"})  # SQLite in memory

    def probe(volume: Path) -> subprocess.CompletedProcess:
        args = _in_task(volume, str(task_tmp), [sys.executable, "-c", _TEMPFILE_PROBE])
        return subprocess.run(
            args, env=env, cwd=workdir, capture_output=True, text=True, timeout=60
        )

    # The fault: no VOLUME in the image -> root-owned 0755 mount -> no usable temporary directory.
    proc = probe(_fargate_bind_mount(base, None))
    assert proc.returncode != 0 and "No usable temporary directory" in proc.stderr

    mode = _image_dir_mode(tmpdir)
    assert mode is not None, f"the Dockerfile must declare {tmpdir} a VOLUME and set its mode"
    mount = _fargate_bind_mount(base, mode)
    proc = probe(mount)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(task_tmp)
    assert [p.name for p in mount.iterdir()] == []  # the temporary file went there and is gone
    # The image's exact CMD (from the checkout: it reads sample_api/gunicorn.conf.py), same task.
    args = _in_task(mount, str(task_tmp), stage["cmd"])
    with child(args, env=env, ready_url=f"http://127.0.0.1:{port}/healthz") as server:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as resp:
            assert resp.status == 200
        assert server.poll() is None
