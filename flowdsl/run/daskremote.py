"""What a Dask run puts on the cluster: the function that runs an attempt on a worker, the one that signals
them, and the run's two plugins (its files on the workers, its guard on the scheduler). Dask pickles them by
value (they are defined inside a function), so the workers and the scheduler need no flow installed; they
may use only the standard library and `distributed`. See run.dask for what each does in a run."""

from __future__ import annotations


class Remote:
    """The functions and plugins that travel, made once per run: Dask pickles them by value (they are
    defined inside a function), so they may use only the standard library and `distributed`."""

    def __init__(self) -> None:
        from distributed.diagnostics.plugin import SchedulerPlugin, WorkerPlugin

        def load(folder, flow_zip):
            """daskhost from the run's copy of flow, once per worker process and version of flow."""
            import sys

            name = "_flowdsl_daskhost_" + flow_zip[:-4].replace("-", "_").replace(".", "_")
            host = sys.modules.get(name)
            if host is None:
                import os
                import types
                import zipfile

                path = os.path.join(folder, flow_zip)
                with zipfile.ZipFile(path) as z:
                    source = z.read("flowdsl/run/daskhost.py")
                host = types.ModuleType(name)
                host.__file__ = path + "/flowdsl/run/daskhost.py"
                sys.modules[name] = host
                exec(compile(source, host.__file__, "exec"), host.__dict__)
            return host

        def flow_attempt(payload, folder, flow_zip):
            import os

            from distributed import get_worker

            return load(os.path.join(get_worker().local_directory, folder), flow_zip).run_attempt(payload)

        # async: `client.run(..., wait=False)` takes only coroutine functions (they run on the worker's loop)
        async def flow_signal(tag, signum, key, folder, flow_zip, dask_worker):
            import os

            path = os.path.join(dask_worker.local_directory, folder)
            if os.path.isdir(path):  # the run was set up on this worker
                return load(path, flow_zip).signal_attempts(tag, signum, key)
            return 0

        async def forget_run(name, dask_scheduler):
            guard = dask_scheduler.plugins.get(name)
            if guard is not None:
                await guard.forget()

        class Files(WorkerPlugin):
            """The run's upload on a worker (this one, or one that joins later), and its helpers."""

            def __init__(self, tag, folder, files, flow_zip, claim):
                self.tag, self.folder, self.files, self.flow_zip, self.claim = tag, folder, files, flow_zip, claim
                self.host = self.worker = None
                self.suffix = "-" + tag  # the end of the run's Dask keys

            def setup(self, worker):
                import os

                folder = os.path.join(worker.local_directory, self.folder)
                os.makedirs(folder, exist_ok=True)
                for name, data in self.files:
                    part = os.path.join(folder, name + ".part")
                    with open(part, "wb") as f:
                        f.write(data)
                    os.replace(part, os.path.join(folder, name))
                names = [name for name, _ in self.files]
                self.files = [(name, b"") for name in names]  # written: this copy need not keep them in memory
                os.makedirs(os.path.join(folder, "files"), exist_ok=True)  # where attempts run off the runner's disk
                for name in names:
                    if name.startswith("flowdata-"):  # files shipped with the code, as they lay beside the .flow
                        import zipfile

                        with zipfile.ZipFile(os.path.join(folder, name)) as z:
                            z.extractall(os.path.join(folder, "files"))
                self.host = load(folder, self.flow_zip)
                self.host.setup_run(worker, self.tag, folder, names, self.claim)
                self.worker = worker

            def transition(self, key, start, finish, **kwargs):
                """Every task's every change of state on this worker: an attempt of the run queued here asks for
                its claim at once; one that leaves without running forgets it."""
                if self.worker is None or not isinstance(key, str) or not key.endswith(self.suffix):
                    return
                if finish in ("ready", "constrained"):
                    self.host.queued(self.worker, self.tag, key)
                elif finish in ("released", "forgotten") and start != "executing":
                    self.host.unqueued(self.tag, key)

            def teardown(self, worker):
                import os

                folder = os.path.join(worker.local_directory, self.folder)
                if os.path.isdir(folder):
                    load(folder, self.flow_zip).teardown_run(self.tag)

        class Guard(SchedulerPlugin):
            """The run's agent on the scheduler: each attempt starts once; the run hears of the workers; and
            what the run set up goes when its client leaves (the run ended, or died)."""

            def __init__(self, tag, client, topic, name, files, claim):
                self.tag, self.client, self.topic, self.name, self.files, self.op = (
                    tag, client, topic, name, files, claim)
                self.claimed = {}  # dask key -> (address, server id) of the worker that holds its claim
                self.scheduler = None
                self.forgetting = None

            async def start(self, scheduler):
                self.scheduler = scheduler
                scheduler.handlers[self.op] = self.claim

            def claim(self, keys=(), worker=None, server=None):
                """{key: True, or why not} for the attempts queued on a worker: only the worker that holds an
                attempt's claim may start it. A claim passes on only while its holder is alive: Dask moved the
                attempt, queued there, to another worker (it steals only what has not started). When the holder
                died, the attempt ran there, or may have: it is not started again."""
                answers = {}
                for key in keys or ():
                    holder = self.claimed.get(key)
                    if holder is not None and holder != (worker, server):
                        ws = self.scheduler.workers.get(holder[0]) if self.scheduler is not None else None
                        if ws is None or getattr(ws, "server_id", None) != holder[1]:
                            answers[key] = (
                                "the Dask worker it was given to was lost before it ended (Dask then gave it to "
                                "another worker, which did not start it: flow starts an attempt at most once, "
                                "and the task's `retry` decides)")
                            continue
                    self.claimed[key] = (worker, server)
                    answers[key] = True
                return answers

            def tell(self, gone=None):
                s = self.scheduler
                if s is not None:
                    workers = {address: [ws.nthreads, dict(ws.resources or {})]
                               for address, ws in s.workers.items() if address != gone}
                    s.log_event(self.topic, {"workers": workers})

            def add_worker(self, scheduler, worker):
                self.tell()

            def remove_worker(self, scheduler, worker, **kwargs):
                self.tell(gone=worker)

            def remove_client(self, scheduler, client):
                if client == self.client and self.forgetting is None:
                    import asyncio

                    self.forgetting = asyncio.ensure_future(self.forget())

            async def forget(self):
                s = self.scheduler
                if s is None:
                    return
                self.scheduler = None
                s.handlers.pop(self.op, None)
                if self.files in s.worker_plugins:  # teardown on every worker: helpers killed, folder removed
                    try:
                        await s.unregister_worker_plugin(None, self.files)
                    except Exception:
                        pass
                # the topic's last events and its subscribers (Broker is internal: if it changed, they stay)
                topics = getattr(getattr(s, "_broker", None), "_topics", None)
                if isinstance(topics, dict):
                    topics.pop(self.topic, None)
                if s.plugins.get(self.name) is self:
                    s.remove_plugin(self.name)

        self.attempt, self.signal, self.forget_run, self.Files, self.Guard = (
            flow_attempt, flow_signal, forget_run, Files, Guard)
