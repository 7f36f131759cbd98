"""Validation in a child process with resource limits, so that an artifact which exhausts
memory, spins, hangs or crashes its runtime ends its version `failed` with the reason while the
worker (and the batcher thread serving beside it) carries on.

The worker starts `python -m registry.isolation REQUEST RESULT PARENT_PID` (a fresh interpreter,
never a fork of the worker with its batcher thread and onnxruntime sessions):

1. The child asks the kernel to kill it when the worker dies (PR_SET_PDEATHSIG), then, before it
   imports numpy or a runtime, limits its address space (RLIMIT_AS, the memory limit; not when it
   will use CUDA, whose driver reserves far more address space than it uses) and its CPU time
   (RLIMIT_CPU: SIGXCPU at the limit, SIGKILL two seconds later).
2. It runs `validation.validate_artifact` and writes {"report": ...} or {"error": ...} (with
   "out_of_memory" when an allocation failed) as JSON to RESULT.
3. The worker waits, polling the child's resident memory (the limit where RLIMIT_AS is off), and
   kills its process group at the wall-clock limit.
4. `outcome_of` turns what happened (the result file, the exit status or signal, the CPU time
   used, the child's last output) into a report or one clear reason.

Only stdlib is imported at module level: the child sets its limits before anything heavy loads.
"""

import json
import logging
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent
POLL_SECONDS = 0.1
CPU_HARD_GRACE_SECONDS = 2  # SIGXCPU at the soft limit; SIGKILL this much later if it is ignored
# What runtimes and allocators say when an allocation fails (onnxruntime, torch, glibc, C++).
ALLOCATION_FAILURES = ("bad_alloc", "failed to allocate", "can't allocate memory", "cannot allocate memory",
                       "out of memory", "memoryerror", "memory allocation")
# Each glibc malloc arena reserves 64 MiB of address space, up to 8 per core: two are plenty for a
# smoke test and keep many-core machines under the address-space limit. Torch's and OpenBLAS's
# pools are capped for the same reason (each thread reserves a stack and buffers).
CHILD_ENV_DEFAULTS = {"MALLOC_ARENA_MAX": "2", "OMP_NUM_THREADS": str(min(os.cpu_count() or 1, 16)),
                      "OPENBLAS_NUM_THREADS": str(min(os.cpu_count() or 1, 16))}


@dataclass(frozen=True)
class Limits:
    """What one validation may use: address space in bytes, CPU seconds, wall-clock seconds."""

    memory_bytes: int
    cpu_seconds: int
    wall_seconds: float

    @classmethod
    def from_settings(cls) -> "Limits":
        """The PADDOCK_VALIDATION_MEMORY_BYTES / _CPU_SECONDS / _TIMEOUT_SECONDS settings."""
        from django.conf import settings

        return cls(settings.PADDOCK_VALIDATION_MEMORY_BYTES, settings.PADDOCK_VALIDATION_CPU_SECONDS,
                   settings.PADDOCK_VALIDATION_TIMEOUT_SECONDS)

    def memory_text(self) -> str:
        """The memory limit as people write it: 2 GiB, 512 MiB."""
        for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20)):
            if self.memory_bytes % size == 0:
                return f"{self.memory_bytes // size} {unit}"
        return f"{self.memory_bytes} bytes"

    def memory_reason(self) -> str:
        """The reason a version fails when its validation ran out of memory."""
        return f"validation exceeded {self.memory_text()} of memory"


@dataclass(frozen=True)
class Outcome:
    """A validation's end: the report when it passed, else the reason it failed."""

    report: dict[str, Any] | None
    error: str = ""


@dataclass(frozen=True)
class Exit:
    """What the worker saw of its child: exit status (negative: the signal), the result it wrote,
    the CPU seconds it used, its last output, and whether the worker killed it and why."""

    returncode: int
    result: dict[str, Any] | None
    cpu_seconds: float
    output: str = ""
    killed_for: str = ""  # "wall" or "memory" when the worker killed it


def validate_in_child(path: Path, *, fmt: str, inputs: list[dict[str, Any]], outputs: list[dict[str, Any]],
                      max_batch: int, limits: Limits, device: str = "cpu") -> Outcome:
    """Validate the artifact at `path` in a child process under `limits` (module docstring)."""
    with tempfile.TemporaryDirectory(prefix="paddock-validation-") as scratch:
        folder = Path(scratch)
        request, result, log = folder / "request.json", folder / "result.json", folder / "child.log"
        request.write_text(json.dumps({
            "path": str(path), "format": fmt, "inputs": inputs, "outputs": outputs, "max_batch": max_batch,
            "device": device, "memory_bytes": limits.memory_bytes, "cpu_seconds": limits.cpu_seconds,
        }))
        env = {**CHILD_ENV_DEFAULTS, **os.environ}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        used_before = _children_cpu_seconds()
        with log.open("wb") as out:
            child = subprocess.Popen(
                [sys.executable, "-m", "registry.isolation", str(request), str(result), str(os.getpid())],
                cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: killed with anything it started
            )
        try:
            killed_for = _wait(child, limits)
        except BaseException:  # the worker is stopping (or failed here): the child goes first
            _kill(child)
            raise
        ended = Exit(child.returncode, _read_result(result), _children_cpu_seconds() - used_before,
                     log.read_text(errors="replace")[-4000:], killed_for)
    outcome = outcome_of(ended, limits)
    if outcome.error and ended.result is None:
        logger.warning("validation child of %s ended with %s: %s; its last output:\n%s",
                       path, ended.returncode, outcome.error, ended.output)
    return outcome


def _wait(child: subprocess.Popen[bytes], limits: Limits) -> str:
    """Wait for the child; kill it at the wall-clock limit or above the memory limit (resident).
    Returns why it was killed, "" when it ended by itself."""
    deadline = time.monotonic() + limits.wall_seconds
    while True:
        try:
            child.wait(timeout=POLL_SECONDS)
            return ""
        except subprocess.TimeoutExpired:
            pass
        reason = "wall" if time.monotonic() >= deadline else ""
        if not reason and _resident_bytes(child.pid) > limits.memory_bytes:
            reason = "memory"
        if reason:
            _kill(child)
            return reason


def _kill(child: subprocess.Popen[bytes]) -> None:
    """SIGKILL the child's process group and reap it."""
    try:
        os.killpg(child.pid, signal.SIGKILL)
    except ProcessLookupError:  # it ended meanwhile
        pass
    child.wait()


def outcome_of(ended: Exit, limits: Limits) -> Outcome:
    """The report, or the one reason a person reads on the version (module docstring, step 4).
    A result the child wrote counts even if it crashed afterwards (a runtime's teardown)."""
    if ended.killed_for == "wall":
        return Outcome(None, f"validation took longer than {limits.wall_seconds:g} s")
    if ended.killed_for == "memory":
        return Outcome(None, limits.memory_reason())
    if ended.result is not None:
        if ended.result.get("out_of_memory"):
            return Outcome(None, limits.memory_reason())
        if "report" in ended.result:
            return Outcome(ended.result["report"])
        return Outcome(None, str(ended.result.get("error") or "validation failed without a reason"))
    signum = -ended.returncode
    cpu_spent = ended.cpu_seconds >= limits.cpu_seconds
    if signum == signal.SIGXCPU or (signum == signal.SIGKILL and cpu_spent):
        return Outcome(None, f"validation exceeded {limits.cpu_seconds} s of CPU time")
    if out_of_memory_text(ended.output):
        return Outcome(None, limits.memory_reason())
    if signum == signal.SIGKILL:  # not the worker's doing: most likely the kernel's OOM killer
        return Outcome(None, "validation was killed (signal SIGKILL), most likely for lack of memory")
    if signum > 0:
        return Outcome(None, f"validation crashed the runtime (signal {_signal_name(signum)})")
    last = ended.output.strip().splitlines()[-1:] or ["no output"]
    return Outcome(None, f"validation crashed the runtime (exit status {ended.returncode}): {last[0][:300]}")


def out_of_memory_text(text: str) -> bool:
    """Whether a runtime's message says an allocation failed."""
    lowered = text.lower()
    return any(phrase in lowered for phrase in ALLOCATION_FAILURES)


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return str(signum)


def _children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _resident_bytes(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, IndexError, ValueError):  # gone, or not Linux: RLIMIT_AS still holds
        return 0


def _read_result(path: Path) -> dict[str, Any] | None:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


# The child's side.


def limit_resources(*, memory_bytes: int | None, cpu_seconds: int) -> None:
    """Cap this process's address space (unless None) and CPU time; no core dumps."""
    if memory_bytes is not None:
        resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds + CPU_HARD_GRACE_SECONDS))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def _die_with_parent(parent: int) -> None:
    """Ask Linux to SIGKILL this process when the worker dies: no orphan keeps validating."""
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)
    if os.getppid() != parent:  # it died before the request above
        os._exit(1)


def run_request(request: dict[str, Any]) -> dict[str, Any]:
    """Validate as the request says; the result to write (a report, or an error)."""
    from django.conf import settings

    if not settings.configured:  # the runtimes read PADDOCK_DEVICE, nothing else
        settings.configure(PADDOCK_DEVICE=request["device"])
    try:
        from registry.validation import validate_artifact

        report = validate_artifact(Path(request["path"]), fmt=request["format"], inputs=request["inputs"],
                                   outputs=request["outputs"], max_batch=request["max_batch"])
    except MemoryError:
        return {"error": "out of memory", "out_of_memory": True}
    except Exception as exc:  # noqa: BLE001 - the runtime's own message is the reason
        chain = [exc, exc.__cause__, exc.__context__]
        if any(isinstance(e, MemoryError) for e in chain) or out_of_memory_text(str(exc)):
            return {"error": str(exc), "out_of_memory": True}
        from registry.validation import ValidationFailed

        return {"error": str(exc) if isinstance(exc, ValidationFailed)
                else f"validation crashed: {type(exc).__name__}: {exc}"}
    return {"report": report}


def main(argv: list[str]) -> int:
    """The child: die with the worker, limit itself, validate, write the result."""
    request_path, result_path, parent = argv[1], argv[2], int(argv[3])
    _die_with_parent(parent)
    request = json.loads(Path(request_path).read_text())
    cuda = request["device"] == "cuda" or (request["device"] == "auto" and _gpu_present())
    limit_resources(memory_bytes=None if cuda else request["memory_bytes"], cpu_seconds=request["cpu_seconds"])
    result = run_request(request)
    Path(result_path).write_text(json.dumps(result))
    return 0


def _gpu_present() -> bool:
    # workers.runtimes.cuda_wanted's test for "auto", without importing Django settings yet.
    return os.path.exists("/dev/nvidiactl") or os.path.exists("/dev/nvidia0")


if __name__ == "__main__":
    sys.exit(main(sys.argv))
