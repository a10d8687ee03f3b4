"""Where tasks run: in this process, in a local process pool, or on Ray; all give the same numbers.

Every engine gives each worker the same :class:`~edgesal.eval.tasks.Job` and yields
``(task key, result)`` as tasks finish. The local engine is a process pool (spawned, not forked,
so no onnxruntime state is shared) whose workers each hold one set of sessions; the Ray engine
runs the same :class:`~edgesal.eval.tasks.Worker` inside actors, one per CPU slot, on a local Ray
instance or a cluster (``--address``). :func:`run_tasks` adds the progress bar and the resumable
store around any engine.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool

from tqdm import tqdm

from edgesal.errors import EdgesalError, InputError
from edgesal.eval.store import ResultStore
from edgesal.eval.tasks import Job, Result, Worker

ENGINES = ("local", "ray")


class EngineError(EdgesalError):
    """The engine lost a worker; finished results are kept in the store."""


Done = Iterator[tuple[str, Result]]


class SerialEngine:
    """Runs every task in this process (``--workers 0``): for debugging and small audits."""

    name = "serial"

    def map(self, job: Job, tasks: Sequence) -> Done:
        worker = Worker(job)
        for task in tasks:
            yield task.key, worker.run(task)


_WORKER: Worker | None = None


def _start_worker(job: Job) -> None:
    global _WORKER
    _WORKER = Worker(job)


def _run_task(task) -> tuple[str, Result]:
    assert _WORKER is not None, "worker process was not initialized"
    return task.key, _WORKER.run(task)


class LocalEngine:
    """A pool of ``workers`` processes, one session set each, fed one task at a time."""

    name = "local"

    def __init__(self, workers: int | None = None):
        self.workers = workers or os.cpu_count() or 1

    def map(self, job: Job, tasks: Sequence) -> Done:
        if not tasks:
            return
        pool = ProcessPoolExecutor(
            max_workers=min(self.workers, len(tasks)),
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_start_worker,
            initargs=(job,),
        )
        try:
            pending = {pool.submit(_run_task, task) for task in tasks}
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    yield future.result()
        except BrokenProcessPool as exc:
            raise EngineError(
                "a worker process died (killed, out of memory, or a script without an "
                "'if __name__ == \"__main__\":' guard, which spawned workers need); finished "
                "tasks are kept, run again to resume"
            ) from exc
        finally:
            pool.shutdown(wait=True, cancel_futures=True)


class _RayWorker:
    """The body of a Ray actor: one :class:`Worker` (one session set) per actor."""

    def __init__(self, job: Job):
        self.worker = Worker(job)

    def run(self, task) -> tuple[str, Result]:
        return task.key, self.worker.run(task)


class RayEngine:
    """Actors on Ray, each holding a session set; tasks are handed to whichever actor is free.

    Connects to ``address`` (``auto``: a running cluster) or, when Ray is not initialized and no
    address is given, starts a local instance. An already initialized Ray is used as it is.
    """

    name = "ray"

    def __init__(self, address: str | None = None, workers: int | None = None):
        self.address, self.workers = address, workers

    def map(self, job: Job, tasks: Sequence) -> Done:
        if not tasks:
            return
        ray = _import_ray()
        from ray.util import ActorPool

        if not ray.is_initialized():
            ray.init(address=self.address, log_to_driver=False, include_dashboard=False)
        slots = int(ray.available_resources().get("CPU", 1) // job.options.threads) or 1
        count = min(self.workers or slots, len(tasks))
        actor = ray.remote(num_cpus=job.options.threads)(_RayWorker)
        job_ref = ray.put(job)
        actors = [actor.remote(job_ref) for _ in range(count)]
        try:
            pool = ActorPool(actors)
            yield from pool.map_unordered(lambda a, task: a.run.remote(task), list(tasks))
        finally:
            for handle in actors:
                ray.kill(handle)


def _import_ray():
    try:
        import ray
    except ImportError:
        raise InputError(
            "--engine ray needs Ray: pip install 'edgesal[ray]' (or use --engine local)"
        ) from None
    return ray


def make_engine(name: str, workers: int | None = None, address: str | None = None):
    """The engine called ``name``; ``workers`` 0 with the local engine runs in this process."""
    if name == "local":
        return SerialEngine() if workers == 0 else LocalEngine(workers)
    if name == "ray":
        return RayEngine(address, workers)
    raise InputError(f"--engine {name}: choose one of {', '.join(ENGINES)}")


def run_tasks(
    engine, job: Job, tasks: Sequence, store: ResultStore | None, progress: bool, what: str
) -> tuple[dict[str, Result], dict]:
    """Results of every task: stored ones loaded, the rest computed (and stored as they finish).

    Returns ``(results by key, {"tasks", "computed", "resumed"})``.
    """
    results: dict[str, Result] = {}
    todo = []
    for task in tasks:
        stored = store.load(task.key) if store is not None else None
        if stored is None:
            todo.append(task)
        else:
            results[task.key] = stored
    with tqdm(total=len(todo), desc=what, unit="task", disable=not progress) as bar:
        for key, (numbers, arrays) in engine.map(job, todo):
            if store is not None:
                store.save(key, numbers, arrays)
            results[key] = (numbers, arrays)
            bar.update()
    stats = {"tasks": len(tasks), "computed": len(todo), "resumed": len(tasks) - len(todo)}
    return results, stats
