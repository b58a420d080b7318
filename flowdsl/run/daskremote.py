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
                load(folder, self.flow_zip).setup_run(worker, self.tag, folder, names, self.claim)

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
                self.claimed = set()
                self.scheduler = None
                self.forgetting = None

            async def start(self, scheduler):
                self.scheduler = scheduler
                scheduler.handlers[self.op] = self.claim

            def claim(self, key=None, worker=None, t=None, done=None):
                for ended, outcome in done or ():  # the worker's attempts that ended since its last claim
                    self.scheduler.log_event(self.topic, {"done": ended, "outcome": outcome})
                if key in self.claimed:
                    return ("the Dask worker running it was lost (Dask then started it on another worker, "
                            "which refused: flow starts an attempt once, and the task's `retry` decides)")
                self.claimed.add(key)
                self.scheduler.log_event(self.topic, {"began": key, "t": t, "worker": worker})
                return True

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
