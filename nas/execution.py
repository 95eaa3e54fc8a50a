"""Where evaluations run: in the driver's process, or on Ray actors (one per core, pinned).

An executor takes jobs (a trial's genotype and folder) up to its ``capacity`` at once and
hands back completions as they finish, in any order; the search loop keeps it full.

- :class:`InProcessExecutor` (the default, ``--workers 1``): evaluates in the driver, one at
  a time, when asked for completions. No extra process, no Ray.
- :class:`RayExecutor` (``--workers K`` with K > 1, or ``--address``): K Ray actors, each a
  fresh Python process holding its own copy of the evaluator. On a machine the actors share,
  each claims a free core (a lock file per core, released by the kernel when the process
  dies) and pins itself to it with ``os.sched_setaffinity`` before JAX starts, so XLA sizes
  its thread pools to one core. A local Ray instance is started on demand (short temp dir,
  no dashboard, small object store) and stopped at the end; ``address`` joins a running
  cluster instead. An actor that dies (killed, out of memory, segfault) is replaced by a
  fresh one and its trial retried, at most ``max_retries`` times; then the trial fails.

An evaluation that raises, or returns NaN metrics, is a failed result in every executor,
never an exception of the search.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
import time
import traceback
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nas.errors import ConfigError
from nas.evaluators.base import EvalResult, Evaluator
from nas.space import Genotype
from nas.storage import pid_alive

log = logging.getLogger(__name__)


def evaluate_safely(evaluator: Evaluator, genotype: Genotype, workdir: Path) -> EvalResult:
    """A failed candidate fails its trial, never the search (exceptions and NaN alike); a
    failed trial's folder always holds ``error.txt`` saying why."""
    t0 = time.perf_counter()
    try:
        result = evaluator.evaluate(genotype, workdir).checked()
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as e:  # noqa: BLE001 - any failure of a candidate is recorded
        line = f"{type(e).__name__}: {e}".splitlines()[0][:500]
        result = EvalResult.failure(line, time.perf_counter() - t0)
        write_error(workdir, result, traceback.format_exc())
        return result
    if not result.ok:  # NaN metrics, or a failure the evaluator returned itself
        write_error(workdir, result)
    return result


def write_error(workdir: Path | None, result: EvalResult, details: str = "") -> None:
    """Write a failed trial's ``error.txt`` (its error line, metrics and ``details``), so that
    "see trials/N/error.txt" is always true; a folder that cannot be written is left alone."""
    if workdir is None:
        return
    text = f"{result.error}\n"
    if result.metrics:
        text += f"metrics: {result.metrics}\n"
    if details:
        text += f"\n{details}"
    with contextlib.suppress(OSError):
        Path(workdir).mkdir(parents=True, exist_ok=True)
        (Path(workdir) / "error.txt").write_text(text)


@dataclass
class Job:
    """One evaluation to run. ``tag`` is the caller's (the search loop keeps its trial there)."""

    genotype: Genotype
    workdir: Path
    tag: Any = None
    attempts: int = 0  # worker deaths so far
    errors: list[str] = field(default_factory=list)


@dataclass
class Completion:
    """A finished job: its result, the worker that produced it, and the retries it took."""

    job: Job
    result: EvalResult
    worker: dict[str, Any] = field(default_factory=dict)

    @property
    def retries(self) -> int:
        return self.job.attempts


class Executor(ABC):
    """Runs up to ``capacity`` jobs at once."""

    capacity: int = 1
    startup_seconds: float = 0.0

    @property
    @abstractmethod
    def running(self) -> int:
        """Jobs submitted and not yet handed back."""

    @abstractmethod
    def submit(self, job: Job) -> None:
        """Start ``job`` (only while ``running < capacity``)."""

    @abstractmethod
    def wait(self, timeout: float | None = None) -> list[Completion]:
        """Completed jobs (at least one unless ``timeout`` passed or none is running)."""

    def worker_pids(self) -> list[int]:
        """Process ids of the workers (the driver's own for in-process evaluation)."""
        return [os.getpid()]

    def close(self) -> None:
        """Release workers (and a Ray instance this executor started)."""
        return None

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class InProcessExecutor(Executor):
    """Evaluates in the driver's process, one job at a time (when :meth:`wait` is called)."""

    def __init__(self, evaluator: Evaluator) -> None:
        self.evaluator = evaluator
        self.capacity = 1
        self._queue: list[Job] = []

    @property
    def running(self) -> int:
        return len(self._queue)

    def submit(self, job: Job) -> None:
        if self._queue:
            raise RuntimeError("the in-process executor runs one job at a time")
        self._queue.append(job)

    def wait(self, timeout: float | None = None) -> list[Completion]:
        out = []
        while self._queue:
            job = self._queue.pop(0)
            job.workdir.mkdir(parents=True, exist_ok=True)
            result = evaluate_safely(self.evaluator, job.genotype, job.workdir)
            out.append(Completion(job, result, {"pid": os.getpid()}))
        return out


# ----------------------------------------------------------------------------- Ray


def _core_lock_dir() -> Path:
    path = Path(tempfile.gettempdir()) / f"nas-cores-{os.getuid()}"
    path.mkdir(exist_ok=True)
    return path


def claim_core() -> tuple[int | None, Any]:
    """Pin this process to a core no other worker on this machine holds.

    Returns the core (``None`` when every allowed core is taken, then nothing is pinned) and
    the open lock file, which must stay open for the process's lifetime.
    """
    import fcntl

    lock_dir = _core_lock_dir()
    for core in sorted(os.sched_getaffinity(0)):
        f = open(lock_dir / f"core{core}.lock", "w")  # noqa: SIM115 - held until exit
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.close()
            continue
        os.sched_setaffinity(0, {core})
        return core, f
    return None, None


class _Worker:
    """A Ray actor: pins itself, then unpickles the evaluator (so JAX starts pinned)."""

    def __init__(self, slot: int, evaluator_bytes: bytes, pin: bool) -> None:
        self.slot = slot
        self.core, self._lock = claim_core() if pin else (None, None)
        self.init_error = ""
        try:
            import cloudpickle

            self.evaluator = cloudpickle.loads(evaluator_bytes)
        except Exception as e:  # noqa: BLE001 - reported with every evaluation
            self.evaluator = None
            self.init_error = f"worker could not load the evaluator: {type(e).__name__}: {e}"

    def info(self) -> dict[str, Any]:
        import socket

        return {"pid": os.getpid(), "core": self.core, "host": socket.gethostname()}

    def evaluate(self, arch: str, workdir: str) -> dict[str, Any]:
        path = Path(workdir)
        path.mkdir(parents=True, exist_ok=True)
        (path / "worker.pid").write_text(str(os.getpid()))
        if self.evaluator is None:
            result = EvalResult.failure(self.init_error.splitlines()[0][:500])
            write_error(path, result, self.init_error)
        else:
            genotype = self.evaluator.space.parse(arch)
            result = evaluate_safely(self.evaluator, genotype, path)
        return {"result": result.to_json(), "worker": self.info()}


def _import_ray():
    try:
        import ray
    except ImportError:
        raise ConfigError(
            "--workers > 1 and --address need Ray: pip install 'nasjax[ray]'"
        ) from None
    return ray


_TMP_PREFIX = "nasray-"


def _driver_gone(folder: Path, session_pid: int | None = None) -> bool:
    """Whether the driver of a Ray temp folder is dead: the pid in its ``driver.pid``, else
    (the folder already removed) the pid that ends Ray's session folder name. Unknown: no."""
    try:
        pid: int | None = int((folder / "driver.pid").read_text())
    except (OSError, ValueError):  # removed, or a driver starting right now
        pid = session_pid
    return pid is not None and not pid_alive(pid)


def _instance_refs(pid: int, base: Path) -> set[tuple[Path, int | None]]:
    """The Ray temp folders (with their session's pid where named) that a process names in
    its command line or holds files of."""
    proc = Path("/proc", str(pid))
    refs = [proc.joinpath("cmdline").read_bytes().decode(errors="replace").replace("\0", " ")]
    refs += [os.readlink(fd) for fd in proc.joinpath("fd").iterdir()]
    prefix = f"{base}/{_TMP_PREFIX}"
    out = set()
    for ref in refs:
        start = ref.find(prefix)
        while start >= 0:
            parts = ref[start + len(str(base)) + 1 :].split()[0].split("/")
            session = parts[1].rsplit("_", 1)[-1] if len(parts) > 1 else ""
            out.add((base / parts[0], int(session) if session.isdigit() else None))
            start = ref.find(prefix, start + 1)
    return out


def orphan_ray_processes(base: Path) -> list[int]:
    """This user's processes left by a Ray instance whose driver was killed (kill -9).

    Ray's agents (``ray::DashboardAgent``, ``ray::RuntimeEnvAgent``) outlive such a driver
    and ignore SIGTERM. They are found by their open files (logs) or command line under the
    instance's temp folder (``nasray-*`` in ``base``), whose driver is known to be dead;
    nothing else is touched.
    """
    if not Path("/proc").is_dir():
        return []
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            if proc.stat().st_uid != os.getuid():
                continue
            refs = _instance_refs(int(proc.name), base)
        except OSError:  # gone meanwhile, or not ours to read
            continue
        if refs and all(_driver_gone(folder, pid) for folder, pid in refs):
            found.append(int(proc.name))
    return found


def _stop(pids: list[int], grace: float = 1.0) -> None:
    """SIGTERM, then SIGKILL for whatever still runs after ``grace`` seconds; returns when
    they are gone (or another ``grace`` seconds passed)."""
    import signal

    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            if _running(pid):
                with contextlib.suppress(OSError):
                    os.kill(pid, sig)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and any(_running(p) for p in pids):
            time.sleep(0.05)


def _running(pid: int) -> bool:
    """Alive and not a zombie (a killed orphan stays a zombie until its parent reaps it)."""
    try:
        return Path("/proc", str(pid), "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


TMP_ENV = "NAS_RAY_TMPDIR"


def ray_temp_base() -> Path:
    """Where local Ray instances keep their folders: ``$NAS_RAY_TMPDIR``, else ``/tmp``
    (short: Ray's unix socket paths must stay under 107 bytes)."""
    if os.environ.get(TMP_ENV):
        return Path(os.environ[TMP_ENV])
    return Path("/tmp" if os.path.isdir("/tmp") else tempfile.gettempdir())


def short_temp_dir(base: Path | None = None) -> str:
    """A fresh directory with a short path under ``base`` (default :func:`ray_temp_base`).

    What drivers killed earlier (kill -9) left behind there goes first: the processes of
    their Ray instances (:func:`orphan_ray_processes`) and their directories (each holds its
    driver's pid in ``driver.pid``).
    """
    base = base or ray_temp_base()
    base.mkdir(parents=True, exist_ok=True)
    orphans = orphan_ray_processes(base)
    if orphans:
        log.warning("stopping %d Ray process(es) left by a killed driver", len(orphans))
        _stop(orphans)
    for old in base.glob(f"{_TMP_PREFIX}*"):
        with contextlib.suppress(OSError):
            if old.stat().st_uid == os.getuid() and _driver_gone(old):
                shutil.rmtree(old, ignore_errors=True)
    path = tempfile.mkdtemp(prefix=_TMP_PREFIX, dir=base)
    Path(path, "driver.pid").write_text(str(os.getpid()))
    return path


class RayExecutor(Executor):
    """Evaluations on Ray actors, one per worker, pinned to cores, with retries on death.

    Args:
        evaluator: pickled once (cloudpickle) and loaded by every actor.
        workers: actors to run; default: the local cores, or the cluster's CPUs.
        address: a running cluster's address (``auto`` or ``host:port``); default: start a
            local instance with ``workers`` CPUs, stopped by :meth:`close`.
        max_retries: times a trial is retried on a fresh actor after its actor died.
        pin: pin each actor to a free core.
        object_store_mb: object store of a local instance (results are small).
    """

    def __init__(
        self,
        evaluator: Evaluator,
        workers: int | None = None,
        *,
        address: str | None = None,
        max_retries: int = 2,
        pin: bool = True,
        object_store_mb: int = 128,
    ) -> None:
        if workers is not None and workers < 1:
            raise ConfigError(f"--workers must be at least 1, got {workers}")
        if max_retries < 0:
            raise ConfigError(f"--max-retries must be at least 0, got {max_retries}")
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
        t0 = time.perf_counter()
        ray = _import_ray()
        self._ray = ray
        self._tmp: str | None = None
        self._own = not ray.is_initialized()
        self.init_seconds = 0.0  # starting or joining Ray (0 when it was already running)
        if self._own:
            quiet: dict[str, Any] = {"logging_level": logging.ERROR, "log_to_driver": False}
            try:
                if address:
                    probe_address(address)
                    with _bounded_join():
                        ray.init(address=address, **quiet)
                else:
                    _warn_oversubscribed(workers)
                    workers = workers or len(os.sched_getaffinity(0))
                    self._tmp = short_temp_dir()
                    ray.init(
                        num_cpus=workers,
                        include_dashboard=False,
                        object_store_memory=object_store_mb * 2**20,
                        _temp_dir=self._tmp,
                        **quiet,
                    )
            except ConfigError:
                raise
            except Exception as e:  # noqa: BLE001 - Ray raises many kinds; all mean "no cluster"
                self._cleanup_tmp()
                where = f"at {address}" if address else "locally"
                raise ConfigError(
                    f"cannot start Ray {where}: {str(e).splitlines()[0][:300]}"
                ) from None
            self.init_seconds = time.perf_counter() - t0
        if workers is None:
            workers = max(1, int(ray.cluster_resources().get("CPU", 1)))
        self.capacity = workers
        self.max_retries = max_retries
        self.pin = pin
        import cloudpickle

        self._payload = ray.put(cloudpickle.dumps(evaluator))
        self._cls = ray.remote(num_cpus=1, max_restarts=0, max_task_retries=0)(_Worker)
        self._actors: list[Any] = [None] * workers
        self._info: list[Any] = [None] * workers
        self._slots: list[Job | None] = [None] * workers
        self._inflight: dict[Any, int] = {}
        self.deaths = 0
        for slot in range(workers):
            self._spawn(slot)
        # Ready when every actor answers (pinned, evaluator loaded).
        try:
            ray.get(list(self._info), timeout=600)
        except Exception as e:  # noqa: BLE001 - any failure here means no usable worker
            self.close()
            raise ConfigError(f"Ray workers did not start: {_one_line(e)}") from None
        self.startup_seconds = time.perf_counter() - t0

    def _spawn(self, slot: int) -> None:
        actor = self._cls.remote(slot, self._payload, self.pin)
        self._actors[slot] = actor
        self._info[slot] = actor.info.remote()

    def _replace(self, slot: int) -> None:
        with contextlib.suppress(Exception):
            self._ray.kill(self._actors[slot], no_restart=True)
        self._spawn(slot)

    @property
    def running(self) -> int:
        return len(self._inflight)

    def _start(self, slot: int, job: Job) -> None:
        self._slots[slot] = job
        ref = self._actors[slot].evaluate.remote(job.genotype.to_str(), str(job.workdir))
        self._inflight[ref] = slot

    def submit(self, job: Job) -> None:
        free = [i for i, j in enumerate(self._slots) if j is None]
        if not free:
            raise RuntimeError("every worker is busy; wait for a completion first")
        self._start(free[0], job)

    def worker_pids(self) -> list[int]:
        return [info["pid"] for info in self._ray.get(list(self._info))]

    def worker_info(self) -> list[dict[str, Any]]:
        return list(self._ray.get(list(self._info)))

    def wait(self, timeout: float | None = None) -> list[Completion]:
        ray = self._ray
        if not self._inflight:
            return []
        refs = list(self._inflight)
        ready, _ = ray.wait(refs, num_returns=1, timeout=timeout)
        if ready:
            ready, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
        out = []
        for ref in ready:
            slot = self._inflight.pop(ref)
            job = self._slots[slot]
            assert job is not None
            worker: dict[str, Any] = {}
            try:
                payload = ray.get(ref)
                result = EvalResult.from_json(payload["result"])
                worker = payload["worker"]
            except (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError) as e:
                self.deaths += 1
                job.attempts += 1
                job.errors.append(_one_line(e))
                self._replace(slot)
                if job.attempts <= self.max_retries:
                    self._start(slot, job)  # the fresh actor takes the trial again
                    continue
                result = EvalResult.failure(
                    f"worker died {job.attempts} time(s) evaluating it: {job.errors[-1]}"
                )
                write_error(job.workdir, result, "\n".join(job.errors))
            except ray.exceptions.RayError as e:
                result = EvalResult.failure(_one_line(e))
                write_error(job.workdir, result)
            self._slots[slot] = None
            out.append(Completion(job, result, worker))
        return out

    def close(self) -> None:
        ray = self._ray
        for actor in self._actors:
            with contextlib.suppress(Exception):
                ray.kill(actor, no_restart=True)
        self._actors = []
        self._inflight = {}
        if self._own:
            with contextlib.suppress(Exception):
                ray.shutdown()
            self._own = False
        self._cleanup_tmp()

    def _cleanup_tmp(self) -> None:
        if self._tmp:
            # Ray's processes stop asynchronously and may still write their sockets and logs.
            for _ in range(20):
                shutil.rmtree(self._tmp, ignore_errors=True)
                if not os.path.exists(self._tmp):
                    break
                time.sleep(0.1)
            self._tmp = None


PROBE_SECONDS = 3.0
_HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"


def probe_address(address: str, timeout: float = PROBE_SECONDS) -> None:
    """Refuse a cluster address where no Ray head answers, within about ``timeout`` seconds.

    ``ray.init(address=...)`` retries an unreachable address for many minutes. Here a TCP
    connect must succeed, and the peer must speak HTTP/2 (Ray's GCS is a gRPC server: it
    answers the client preface with a SETTINGS frame). ``auto`` is left to Ray, which looks
    for a local cluster and fails at once when there is none.

    Raises:
        ConfigError: a malformed address, or nothing (or not Ray) listening there.
    """
    import socket

    if address == "auto":
        return
    hostport = address.split("://", 1)[-1].rstrip("/")
    host, _, port_text = hostport.rpartition(":")
    host = host.strip("[]")
    if not host or not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise ConfigError(f"--address {address!r} is not auto or host:port")
    where = f"a Ray cluster at {host}:{port_text}"
    try:
        with socket.create_connection((host, int(port_text)), timeout=timeout) as sock:
            sock.settimeout(timeout)
            sock.sendall(_HTTP2_PREFACE)
            reply = sock.recv(9)  # a frame header: length (3), type (1), flags, stream id
    except OSError as e:
        reason = "timed out" if isinstance(e, TimeoutError) else (e.strerror or str(e))
        raise ConfigError(f"cannot reach {where}: {reason}") from None
    if len(reply) < 4 or reply[3] != 0x4:  # a SETTINGS frame
        raise ConfigError(f"cannot reach {where}: the service there is not a Ray head node")


@contextlib.contextmanager
def _bounded_join():
    """While joining a cluster, Ray tries its head once (~40 s at most) instead of its
    default 20 times; a user's own ``RAY_gcs_server_port_wait_time_s`` is kept."""
    key = "RAY_gcs_server_port_wait_time_s"
    before = os.environ.get(key)
    os.environ.setdefault(key, "1")
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(key, None)


def _warn_oversubscribed(workers: int | None) -> None:
    """One warning when more workers than this process's cores are asked for."""
    cores = len(os.sched_getaffinity(0))
    if workers is not None and workers > cores:
        log.warning(
            "--workers %d is more than the %d core(s) available here: workers will share "
            "cores (and run unpinned), which is slower per evaluation",
            workers,
            cores,
        )


def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    first = next((line for line in text if line.strip()), type(e).__name__)
    return f"{type(e).__name__}: {first}"[:300]


def make_executor(
    evaluator: Evaluator,
    workers: int | None = 1,
    address: str | None = None,
    max_retries: int = 2,
) -> Executor:
    """In-process for one worker without a cluster; Ray otherwise (``workers=None``: all cores)."""
    if address is None and workers == 1:
        return InProcessExecutor(evaluator)
    return RayExecutor(evaluator, workers, address=address, max_retries=max_retries)
